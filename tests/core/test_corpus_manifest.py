"""A corpus whose manifest.json has a field missing, of the wrong type or not sane is refused with a CorpusError
naming manifest.json and the field; random damage to the manifest never raises anything else."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gps_denied_nav.core.corpus import Corpus, CorpusError

DELETE = object()  # a mutation that removes the key instead of setting it


@pytest.fixture(scope="module")
def original(small_corpus) -> dict:
    return json.loads((small_corpus / "manifest.json").read_text())


@pytest.fixture(scope="module")
def corpus_dir(small_corpus, tmp_path_factory):
    """The real corpus with its own manifest.json: data files are linked, since only the manifest is rewritten."""
    target = tmp_path_factory.mktemp("manifest") / "corpus"
    target.mkdir()
    for path in small_corpus.iterdir():
        if path.name != "manifest.json":
            (target / path.name).symlink_to(path)
    return target


def _mutated(data: dict, path: tuple, value) -> dict:
    data = json.loads(json.dumps(data))  # a deep copy
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


def _load(corpus_dir, data: dict) -> Corpus:
    (corpus_dir / "manifest.json").write_text(json.dumps(data))
    return Corpus.load(corpus_dir)


def test_the_unchanged_manifest_loads(corpus_dir, original):
    corpus = _load(corpus_dir, original)
    assert corpus.num_tiles == original["num_tiles"] and isinstance(corpus.tile_size_m, float)
    assert corpus.manifest.to_json() == original


@pytest.mark.parametrize("path, value, field", [
    (("files", "model.pt", "bytes"), DELETE, "'files.model.pt.bytes' is missing"),
    (("files", "model.pt", "bytes"), -1, "'files.model.pt.bytes' is -1"),
    (("files", "model.pt", "bytes"), "12", "'files.model.pt.bytes' is \"12\""),
    (("files", "index.faiss", "sha256"), "abc", "'files.index.faiss.sha256' is \"abc\""),
    (("files", "index.faiss", "sha256"), "A" * 64, "'files.index.faiss.sha256'"),
    (("files", "index.faiss"), DELETE, "lists no checksum for index.faiss"),
    (("files", "../../etc/passwd"), {"sha256": "0" * 64, "bytes": 0}, "not a plain file name"),
    (("files",), [], "'files' is \\[\\]"),
    (("tile_size_m",), 0, "'tile_size_m' is 0"),
    (("tile_size_m",), -150.0, "'tile_size_m' is -150.0"),
    (("tile_size_m",), math.nan, "'tile_size_m' is nan"),
    (("tile_size_m",), math.inf, "'tile_size_m' is inf"),
    (("tile_size_m",), "150", "'tile_size_m' is \"150\""),
    (("tile_size_m",), DELETE, "'tile_size_m' is missing"),
    (("tile_stride_m",), 1.0e4, "'tile_stride_m' 10000.0 exceeds 'tile_size_m'"),
    (("tile_px",), 100, "'tile_px' is 100, expected .* multiple of 32"),
    (("map_geometry", "gsd_m"), 0.0, "'map_geometry.gsd_m' is 0.0"),
    (("map_geometry", "east_min_m"), None, "'map_geometry.east_min_m' is null"),
    (("preview_geometry", "width_px"), 0, "'preview_geometry.width_px' is 0"),
    (("preview_geometry", "height_px"), 12.5, "'preview_geometry.height_px' is 12.5"),
    (("preview_geometry",), "map.png", "'preview_geometry' is \"map.png\""),
    (("num_tiles",), 0, "'num_tiles' is 0"),
    (("num_tiles",), True, "'num_tiles' is true"),
    (("num_features",), -3, "'num_features' is -3"),
    (("descriptor_dim",), 3.5, "'descriptor_dim' is 3.5"),
    (("origin", "origin_lat_deg"), 91.0, "'origin.origin_lat_deg' is 91.0"),
    (("origin", "origin_lon_deg"), DELETE, "'origin.origin_lon_deg' is missing"),
    (("origin",), DELETE, "'origin' is missing"),
    (("ground_alt_m",), -math.inf, "'ground_alt_m' is -inf"),
    (("model_id",), "", "'model_id' is \"\""),
    (("root_sift",), "yes", "'root_sift' is \"yes\""),
    (("provision_config",), None, "'provision_config' is null"),
    (("source",), 3, "'source' is 3"),
    (("surprise",), 1, "unexpected field 'surprise'"),
    (("format_version",), True, "format version True"),
    (("format",), "something.else", "not a gps_denied_nav.corpus manifest"),
])
def test_a_broken_field_is_named(corpus_dir, original, path, value, field):
    with pytest.raises(CorpusError, match=r"manifest\.json: .*" + field):
        _load(corpus_dir, _mutated(original, path, value))


def _paths(node, prefix=()):
    """Every key path into the manifest (objects and lists), the root excluded."""
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield prefix + (key,)
        yield from _paths(child, prefix + (key,))


_json_scalars = (st.none() | st.booleans() | st.integers(-2**64, 2**64) | st.floats(allow_nan=True)
                 | st.text(max_size=12) | st.sampled_from([0, -1, 1, 32, 0.0, -0.0, 1e-300, 1e300, "0" * 64]))
_json_values = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_damage_is_a_corpus_error_or_nothing(corpus_dir, original, data):
    manifest = original
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        path = data.draw(st.sampled_from(sorted(_paths(manifest), key=repr)), label="path")
        value = data.draw(st.just(DELETE) | _json_values, label="value")
        manifest = _mutated(manifest, path, value)
    try:
        _load(corpus_dir, manifest)
    except CorpusError:
        pass
