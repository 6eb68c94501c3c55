"""Index choice by corpus size, memory-mapped loading, the manifest's index record, and exact prior-narrowed
search through the geo grid (equal to brute force over the tiles within the radius, for any index type)."""
from __future__ import annotations

import dataclasses
import json
import math

import cv2
import faiss
import numpy as np
import pytest

from gps_denied_nav.core.corpus import Corpus, CorpusError, Tile, file_sha256
from gps_denied_nav.core.corpus_manifest import CORPUS_FILES, Manifest, MapGeometry
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.retrieval import MODE_GLOBAL, MODE_PRIOR, MODE_PRIOR_EMPTY_GLOBAL, search, tiles_within
from gps_denied_nav.core.terrain import ELLIPSOID_DATUM, flat_terrain
from gps_denied_nav.core.tile_index import (GeoGrid, IndexConfig, TileSearch, build_index, index_params, load_index,
                                            save_index)

SMALL_IVF = IndexConfig(flat_max_tiles=1000, nlist=32)  # IVF on a few thousand tiles, quickly


def clustered_tiles(rows=50, cols=60, dim=32, seed=0, stride_m=50.0):
    """rows x cols tiles every stride_m: 8 look-alike classes over 500 m regions, a smooth field and noise."""
    rng = np.random.default_rng(seed)
    r, c = np.divmod(np.arange(rows * cols), cols)
    centres = np.column_stack([c * stride_m - 400.0, -r * stride_m + 300.0])  # negative ENU coordinates too
    regions = (r * stride_m // 500).astype(int) * 100 + (c * stride_m // 500).astype(int)
    classes = rng.integers(0, 8, regions.max() + 1)[regions]
    prototypes = rng.normal(size=(8, dim))
    waves = rng.normal(size=(2, 6)) / 400.0
    smooth = np.cos(centres @ waves) @ rng.normal(size=(6, dim)) / 3.0
    vectors = prototypes[classes] + smooth + 0.5 * rng.normal(size=(rows * cols, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32), centres


def noisy(descriptors, rows, rng, sigma=0.3):
    queries = descriptors[rows] + sigma * rng.normal(size=(len(rows), descriptors.shape[1])).astype(np.float32)
    return (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def tiles():
    return clustered_tiles()


def flat_of(descriptors):
    index = faiss.IndexFlatIP(descriptors.shape[1])
    index.add(descriptors)
    return index


def test_index_choice_by_size(tiles):
    assert index_params(50_000) == {"kind": "flat"}
    assert index_params(50_001) == {"kind": "ivf_flat", "nlist": 1024, "nprobe": 32, "train_size": 50_001,
                                    "seed": 0}
    assert index_params(1_000_000) == {"kind": "ivf_flat", "nlist": 4096, "nprobe": 128, "train_size": 204_800,
                                       "seed": 0}
    descriptors, _ = tiles
    flat, params = build_index(descriptors)
    assert isinstance(flat, faiss.IndexFlatIP) and params == {"kind": "flat"} and flat.ntotal == len(descriptors)
    ivf, params = build_index(descriptors, SMALL_IVF)
    assert isinstance(ivf, faiss.IndexIVFFlat) and ivf.nlist == 32 and ivf.nprobe == params["nprobe"] == 8
    assert params["train_size"] == 1600 and ivf.ntotal == len(descriptors)
    # deterministic: the seeded sample and k-means give the same index byte for byte
    again, _ = build_index(descriptors, SMALL_IVF)
    assert np.array_equal(faiss.serialize_index(ivf), faiss.serialize_index(again))
    queries = noisy(descriptors, np.random.default_rng(1).choice(len(descriptors), 100, replace=False),
                    np.random.default_rng(2))
    exact = search(flat, queries, 10).indices
    approx = search(ivf, queries, 10)
    assert approx.mode == MODE_GLOBAL and approx.indices.shape == (100, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx.indices, exact)]) >= 0.95
    with pytest.raises(ValueError, match="nlist"):
        index_params(5000, IndexConfig(flat_max_tiles=10, nlist=64, train_size=10))
    with pytest.raises(ValueError, match="nprobe"):
        IndexConfig(nprobe=0)


def test_geo_grid_prior_search_equals_brute_force_within_the_radius(tiles):
    descriptors, centres = tiles
    rng = np.random.default_rng(3)
    for index in (flat_of(descriptors), build_index(descriptors, SMALL_IVF)[0]):
        tile_search = TileSearch(index, descriptors, centres, cell_m=250.0)
        for trial in range(60):
            prior = rng.uniform(centres.min(axis=0) - 300.0, centres.max(axis=0) + 300.0)
            radius_m = [rng.uniform(20.0, 800.0), 1.0e5, 50.0 * math.sqrt(2)][trial % 3]
            inside = tiles_within(centres, prior, radius_m)
            assert np.array_equal(tile_search.grid.within(prior, radius_m), inside)
            query = noisy(descriptors, rng.integers(0, len(descriptors), 1), rng)[0]
            result = tile_search.search(query, 10, prior, radius_m)
            if not len(inside):
                assert result.mode == MODE_PRIOR_EMPTY_GLOBAL
                continue
            brute = descriptors[inside] @ query
            order = np.argsort(-brute)[:10]
            assert result.mode == MODE_PRIOR and result.candidates == len(inside) and not result.global_search
            np.testing.assert_array_equal(result.indices, inside[order])
            np.testing.assert_allclose(result.scores, brute[order], atol=1e-5)
            assert np.all(np.linalg.norm(centres[result.indices] - prior, axis=1) <= radius_m)
        # a batch of queries around one prior, through retrieval.search (which takes the TileSearch)
        queries = noisy(descriptors, np.arange(0, 3000, 300), rng)
        batch = search(tile_search, queries, 5, prior_enu_m=centres[1234], prior_radius_m=400.0)
        inside = tiles_within(centres, centres[1234], 400.0)
        brute = queries @ descriptors[inside].T
        np.testing.assert_array_equal(batch.indices, inside[np.argsort(-brute, axis=1)[:, :5]])


def test_prior_empty_falls_back_to_global_and_a_prior_needs_both_parts(tiles):
    descriptors, centres = tiles
    tile_search = TileSearch(build_index(descriptors, SMALL_IVF)[0], descriptors, centres)
    query = descriptors[77]
    fallback = tile_search.search(query, 4, np.array([5.0e4, 5.0e4]), 300.0)
    plain = tile_search.search(query, 4)
    assert fallback.mode == MODE_PRIOR_EMPTY_GLOBAL and fallback.global_search and plain.mode == MODE_GLOBAL
    np.testing.assert_array_equal(fallback.indices, plain.indices)
    assert fallback.indices[0] == 77 and fallback.candidates == len(descriptors)
    with pytest.raises(ValueError, match="together"):
        tile_search.search(query, 4, centres[0], None)
    # A bare IVF index with a prior would see only its probed cells: refused, not silently incomplete.
    with pytest.raises(ValueError, match="tile_search"):
        search(tile_search.index, query, 4, centres, centres[0], 300.0)
    assert len(GeoGrid(centres).within(centres[0], float("nan"))) == 0


def test_mmap_round_trip_and_the_fallback_reason(tiles, tmp_path):
    descriptors, _ = tiles
    queries = noisy(descriptors, np.arange(0, 3000, 97), np.random.default_rng(4))
    for config in (IndexConfig(), SMALL_IVF):
        built, params = build_index(descriptors, config)
        path = tmp_path / f"{params['kind']}.faiss"
        save_index(built, path)
        loaded = load_index(path, {**params, "nprobe": 5} if "nprobe" in params else params)
        assert loaded.mmapped and loaded.note == "" and type(loaded.index) is type(built)
        if "nprobe" in params:
            assert loaded.index.nprobe == 5  # the search-time parameter comes from the manifest's record
            loaded.index.nprobe = built.nprobe
        for a, b in zip(built.search(queries, 10), loaded.index.search(queries, 10)):
            np.testing.assert_array_equal(a, b)
        in_memory = load_index(path, params, mmap=False)
        assert not in_memory.mmapped and "not asked" in in_memory.note
    hnsw = faiss.IndexHNSWFlat(descriptors.shape[1], 8, faiss.METRIC_INNER_PRODUCT)
    hnsw.add(descriptors)
    save_index(hnsw, tmp_path / "hnsw.faiss")
    other = load_index(tmp_path / "hnsw.faiss")
    assert not other.mmapped and "IndexHNSWFlat" in other.note and other.index.ntotal == len(descriptors)
    with pytest.raises(CorpusError, match=r"hnsw\.faiss: is an IndexHNSWFlat, the manifest's index kind is 'flat'"):
        load_index(tmp_path / "hnsw.faiss", {"kind": "flat"})
    with pytest.raises(CorpusError, match=r"ivf_flat\.faiss: has 32 IVF cells, the manifest says 64"):
        load_index(tmp_path / "ivf_flat.faiss", {"kind": "ivf_flat", "nlist": 64, "nprobe": 8})
    (tmp_path / "junk.faiss").write_bytes(b"XXXX" * 10)
    with pytest.raises(CorpusError, match=r"junk\.faiss: unreadable \(Index type .* not recognized\)"):
        load_index(tmp_path / "junk.faiss")


def _manifest(num_tiles: int, dim: int, files: dict, index: dict) -> Manifest:
    geometry = MapGeometry(-500.0, 400.0, 1.0, 4000, 3000)
    return Manifest(origin=LocalTangentPlane(60.40, 22.46, 0.0), source="synthetic", map_geometry=geometry,
                    preview_geometry=geometry, tile_size_m=150.0, tile_stride_m=50.0, tile_px=128,
                    model_id="synthetic@0", descriptor_dim=dim, num_tiles=num_tiles, num_features=0, root_sift=True,
                    ground_alt_m=10.0, terrain_datum=ELLIPSOID_DATUM, terrain_sigma_m=1.0,
                    map_registration_sigma_m=1.0, provision_config={}, files=files, index=index)


def write_corpus(directory, descriptors, centres, config: IndexConfig) -> Manifest:
    """A corpus Corpus.load accepts, without a map or a model: tiles, descriptors, index, manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    tiles = [Tile(tile_id=f"t{i}", index=i, row=0, col=i, east_min_m=e - 75.0, north_min_m=n - 75.0,
                  east_max_m=e + 75.0, north_max_m=n + 75.0, centre_enu_m=(e, n), centre_lat_deg=60.4,
                  centre_lon_deg=22.46, valid_fraction=1.0, cells=()) for i, (e, n) in enumerate(centres.tolist())]
    (directory / "tiles.json").write_text(json.dumps({"tiles": [dataclasses.asdict(t) for t in tiles]}))
    np.savez(directory / "features.npz", keypoints_enu_m=np.zeros((0, 2), np.float32),
             descriptors=np.zeros((0, 128), np.float32), cell_offsets=np.zeros(1, np.int64),
             cell_bounds_enu_m=np.zeros((0, 4)))
    cv2.imwrite(str(directory / "map.png"), np.zeros((4, 4, 4), np.uint8))
    (directory / "model.pt").write_bytes(b"no model: only its checksum is read by Corpus.load")
    flat_terrain(-500.0, 400.0, 4000.0, 3000.0, 10.0).save(directory / "terrain.npz")
    return rewrite_descriptors(directory, descriptors, config)


def rewrite_descriptors(directory, descriptors, config: IndexConfig, manifest: Manifest | None = None) -> Manifest:
    """What a re-training does to a corpus: new descriptors and index (renamed into place), manifest last."""
    np.save(directory / "descriptors.new.npy", descriptors)
    (directory / "descriptors.new.npy").replace(directory / "descriptors.npy")
    index, record = build_index(descriptors, config)
    save_index(index, directory / "index.faiss")
    files = {name: {"sha256": file_sha256(directory / name), "bytes": (directory / name).stat().st_size}
             for name in CORPUS_FILES}
    manifest = (_manifest(len(descriptors), descriptors.shape[1], files, record) if manifest is None
                else dataclasses.replace(manifest, files=files, index=record, descriptor_dim=descriptors.shape[1]))
    (directory / "manifest.json").write_text(json.dumps(manifest.to_json()))
    return manifest


def test_manifest_index_record_round_trip(tiles, tmp_path):
    descriptors, centres = tiles
    manifest = write_corpus(tmp_path / "corpus", descriptors, centres, SMALL_IVF)
    data = manifest.to_json()
    assert data["index"] == {"kind": "ivf_flat", "nlist": 32, "nprobe": 8, "train_size": 1600, "seed": 0}
    assert Manifest.from_json(json.loads(json.dumps(data))) == manifest
    older = {k: v for k, v in data.items() if k != "index"}  # written before the choice by size: a flat index
    assert Manifest.from_json(older).index == {"kind": "flat"}
    for value, message in (({"kind": "hnsw"}, "field 'index.kind' is \"hnsw\", expected one of flat, ivf_flat"),
                           ({**data["index"], "nprobe": 33}, "field 'index.nprobe' 33 exceeds 'index.nlist' 32"),
                           ({"kind": "ivf_flat", "nprobe": 8}, "field 'index.nlist' is missing"),
                           ({"kind": "flat", "nlist": 8}, "unexpected field 'index.nlist'"),
                           ({**data["index"], "seed": -1}, "field 'index.seed' is -1"),
                           ([], "field 'index' is \\[\\]"), ({"kind": ["flat"]}, "field 'index.kind' is \\[")):
        with pytest.raises(CorpusError, match=r"manifest\.json: " + message):
            Manifest.from_json({**data, "index": value}, "manifest.json")


def test_corpus_loads_memory_mapped_survives_a_rebuild_and_names_a_corrupt_index(tiles, tmp_path):
    descriptors, centres = tiles
    directory = tmp_path / "corpus"
    manifest = write_corpus(directory, descriptors, centres, IndexConfig())
    corpus = Corpus.load(directory)
    assert isinstance(corpus.descriptors, np.memmap) and corpus.index_note == ""
    assert corpus.manifest.index == {"kind": "flat"} and isinstance(corpus.index, faiss.IndexFlatIP)
    before = search(corpus.tile_search, descriptors[100], 5, prior_enu_m=centres[100], prior_radius_m=300.0)
    assert before.mode == MODE_PRIOR and before.indices[0] == 100
    # Re-trained descriptors (another dimension) and an IVF index, renamed into place as gdn train-vpr does:
    # the corpus loaded before still reads its own (mapped) files, a fresh load reads the new ones.
    retrained, _ = clustered_tiles(dim=24, seed=9)
    manifest = rewrite_descriptors(directory, retrained, SMALL_IVF, manifest)
    again = search(corpus.tile_search, descriptors[100], 5, prior_enu_m=centres[100], prior_radius_m=300.0)
    np.testing.assert_array_equal(again.indices, before.indices)
    rebuilt = Corpus.load(directory)
    assert isinstance(rebuilt.index, faiss.IndexIVFFlat) and rebuilt.index.nprobe == 8 and rebuilt.descriptor_dim == 24
    assert rebuilt.manifest.index["kind"] == "ivf_flat" and rebuilt.index_note == ""
    assert search(rebuilt.tile_search, retrained[2000], 3).indices[0] == 2000
    result = search(rebuilt.tile_search, retrained[2000], 3, prior_enu_m=centres[2000], prior_radius_m=200.0)
    assert result.mode == MODE_PRIOR and result.indices[0] == 2000

    # A corrupt index whose checksum was recorded (a rebuild gone wrong): named, not a crash.
    data = (directory / "index.faiss").read_bytes()
    (directory / "index.faiss").write_bytes(data[: len(data) // 3])
    files = {**manifest.files, "index.faiss": {"sha256": file_sha256(directory / "index.faiss"),
                                               "bytes": len(data) // 3}}
    (directory / "manifest.json").write_text(json.dumps(dataclasses.replace(manifest, files=files).to_json()))
    with pytest.raises(CorpusError, match=r"index\.faiss: unreadable"):
        Corpus.load(directory)
    # An index the manifest does not describe (a flat index written by hand after an IVF build).
    index = faiss.IndexFlatIP(24)
    index.add(retrained)
    save_index(index, directory / "index.faiss")
    files = {**manifest.files, "index.faiss": {"sha256": file_sha256(directory / "index.faiss"),
                                               "bytes": (directory / "index.faiss").stat().st_size}}
    (directory / "manifest.json").write_text(json.dumps(dataclasses.replace(manifest, files=files).to_json()))
    with pytest.raises(CorpusError, match=r"index\.faiss: is an IndexFlatIP, the manifest's index kind is 'ivf_flat'"):
        Corpus.load(directory)
