"""The corpus manifest (manifest.json): its dataclasses and the check of every field when it is read.

A manifest comes from disk, so it is checked like any outside input: every field present, of the right JSON
type and in a sane range, or a CorpusError naming the file and the field. Without this a missing ``bytes``
surfaced as a KeyError (which no node catches at configure) and ``tile_size_m`` 0 or NaN was accepted and
turned into a query ground sampling distance of 0 or NaN.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .geodesy import LocalTangentPlane

CORPUS_FORMAT = "gps_denied_nav.corpus"
# 2: terrain.npz and terrain_datum (the ground is not at 0 m); 3: the terrain's and the map's own error
CORPUS_FORMAT_VERSION = 3
CORPUS_FILES = ("tiles.json", "descriptors.npy", "index.faiss", "features.npz", "map.png", "model.pt", "terrain.npz")
MAX_EXTENT_M = 2.0e7  # half the Earth's circumference: no local tangent plane reaches further
MAX_RASTER_SIDE_PX = 10_000_000  # 1000 km at 0.1 m/px
MAX_TILE_PX = 4096  # descriptor input side; larger would not fit an inference batch in memory
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Manifest.index kinds (core.tile_index builds and loads them). A manifest without the field predates the
# choice by corpus size and describes a flat index: it still reads, so the format version did not change.
INDEX_FLAT, INDEX_IVF_FLAT = "flat", "ivf_flat"
FLAT_INDEX = {"kind": INDEX_FLAT}


class CorpusError(ValueError):
    """A corpus that cannot be used; the message names the file and the problem.

    A ValueError so that a node's configure (which catches ValueError and OSError) fails cleanly with it.
    """

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


@dataclass(frozen=True)
class MapGeometry:
    """North-up raster grid in the corpus ENU frame (pixel centre at east_min_m + (col + 0.5) * gsd_m)."""

    east_min_m: float
    north_max_m: float
    gsd_m: float
    width_px: int
    height_px: int


@dataclass(frozen=True)
class Manifest:
    """Contents of manifest.json."""

    origin: LocalTangentPlane  # ENU origin of every coordinate in the corpus
    source: str  # the map the corpus was cut from
    map_geometry: MapGeometry  # full-resolution map grid (tiles and features were cut from it)
    preview_geometry: MapGeometry  # grid of map.png
    tile_size_m: float
    tile_stride_m: float
    tile_px: int
    model_id: str  # model card name + weights hash of model.pt
    descriptor_dim: int
    num_tiles: int
    num_features: int  # SIFT keypoints in features.npz
    root_sift: bool  # descriptor flavour of features.npz (the matcher must use the same)
    ground_alt_m: float  # mean WGS84 ellipsoidal height of the ground under the map (terrain.npz has it all)
    terrain_datum: str  # what terrain.npz heights are (core.terrain.ELLIPSOID_DATUM)
    terrain_sigma_m: float  # vertical 1-sigma of terrain.npz against the real ground (DEM accuracy)
    map_registration_sigma_m: float  # horizontal 1-sigma of the map's georegistration (absolute accuracy)
    provision_config: dict  # every ProvisionConfig field, for the record
    files: dict  # file name -> {"sha256": hex, "bytes": int}
    format_version: int = CORPUS_FORMAT_VERSION
    index: dict = field(default_factory=lambda: dict(FLAT_INDEX))  # index.faiss: kind and parameters (tile_index)

    def to_json(self) -> dict:
        return {"format": CORPUS_FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict, path="manifest.json") -> Manifest:
        """Checked Manifest from parsed JSON; CorpusError(path, naming the field) for anything not sane."""
        if not isinstance(data, dict) or data.get("format") != CORPUS_FORMAT:
            raise CorpusError(path, f"not a {CORPUS_FORMAT} manifest")
        version = data.get("format_version")
        if type(version) is not int or version != CORPUS_FORMAT_VERSION:
            raise CorpusError(path, f"format version {version!r} is not the supported {CORPUS_FORMAT_VERSION}; "
                                    f"provision the corpus again")
        fields = _checked(path, "", {"index": FLAT_INDEX, **{k: v for k, v in data.items() if k != "format"}},
                          _MANIFEST)
        fields["index"] = _checked_index(path, fields["index"])
        fields["origin"] = LocalTangentPlane(**_checked(path, "origin.", fields["origin"], _ORIGIN))
        for name in ("map_geometry", "preview_geometry"):
            fields[name] = MapGeometry(**_checked(path, name + ".", fields[name], _GEOMETRY))
        if fields["tile_stride_m"] > fields["tile_size_m"]:
            raise CorpusError(path, f"field 'tile_stride_m' {fields['tile_stride_m']} exceeds 'tile_size_m' "
                                    f"{fields['tile_size_m']} (tiles would leave gaps)")
        for name, record in fields["files"].items():
            if not isinstance(name, str) or name in ("", ".", "..") or any(c in name for c in "/\\\0"):
                raise CorpusError(path, f"field 'files' lists {name!r}, not a plain file name in the corpus")
            _checked(path, f"files.{name}.", record, _FILE_RECORD)
        return cls(**fields)


def read_manifest(directory: Path) -> Manifest:
    """``directory``/manifest.json, parsed and checked; CorpusError naming the file and the problem."""
    path = directory / "manifest.json"
    if not path.is_file():
        raise CorpusError(path, "missing (not a provisioned corpus directory?)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: bad JSON, or a number too long
        raise CorpusError(path, f"not valid JSON ({exc})") from exc
    return Manifest.from_json(data, path)


def _number(lo: float, hi: float, lo_open: bool = False):
    """A real-number field within [lo, hi] (or (lo, hi]); JSON integers count, booleans do not."""
    def ok(v) -> bool:
        if type(v) not in (int, float) or (type(v) is float and not math.isfinite(v)):
            return False
        return (lo < v if lo_open else lo <= v) and v <= hi
    return ok, f"a finite number in {'(' if lo_open else '['}{lo:g}, {hi:g}]", float


def _integer(lo: int, hi: float = math.inf, multiple_of: int = 1):
    def ok(v) -> bool:
        return type(v) is int and lo <= v <= hi and v % multiple_of == 0
    what = f"an integer >= {lo}" + (f" and <= {hi}" if hi < math.inf else "")
    return ok, what + (f", a multiple of {multiple_of}" if multiple_of > 1 else ""), int


def _of_type(kind: type, what: str, extra=lambda v: True):
    return (lambda v: type(v) is kind and extra(v)), what, kind


# field -> (predicate on the JSON value, what it must be, type stored in the dataclass)
_MANIFEST = {
    "origin": _of_type(dict, "an object"),
    "source": _of_type(str, "a string"),
    "map_geometry": _of_type(dict, "an object"),
    "preview_geometry": _of_type(dict, "an object"),
    "tile_size_m": _number(0.0, 1.0e5, lo_open=True),
    "tile_stride_m": _number(0.0, 1.0e5, lo_open=True),
    "tile_px": _integer(32, MAX_TILE_PX, multiple_of=32),  # the backbone's stride (DescriptorExtractor)
    "model_id": _of_type(str, "a non-empty string", lambda v: bool(v)),
    "descriptor_dim": _integer(1),
    "num_tiles": _integer(1),
    "num_features": _integer(0),
    "root_sift": _of_type(bool, "true or false"),
    "ground_alt_m": _number(-1.0e3, 2.0e4),  # below the Dead Sea to above Everest, with margin
    "terrain_datum": _of_type(str, "a non-empty string", lambda v: bool(v)),
    "terrain_sigma_m": _number(0.0, 1.0e3),
    "map_registration_sigma_m": _number(0.0, 1.0e4),
    "provision_config": _of_type(dict, "an object"),
    "files": _of_type(dict, "an object"),
    "format_version": _integer(CORPUS_FORMAT_VERSION, CORPUS_FORMAT_VERSION),
    "index": _of_type(dict, "an object"),
}
_INDEX_KINDS = {
    INDEX_FLAT: {"kind": _of_type(str, "a kind")},
    INDEX_IVF_FLAT: {"kind": _of_type(str, "a kind"), "nlist": _integer(1, 1 << 24), "nprobe": _integer(1, 1 << 24),
                     "train_size": _integer(1), "seed": _integer(0)},
}
_ORIGIN = {"origin_lat_deg": _number(-90.0, 90.0), "origin_lon_deg": _number(-180.0, 180.0),
           "origin_alt_m": _number(-1.0e3, 2.0e4)}
_GEOMETRY = {"east_min_m": _number(-MAX_EXTENT_M, MAX_EXTENT_M), "north_max_m": _number(-MAX_EXTENT_M, MAX_EXTENT_M),
             "gsd_m": _number(0.0, 1.0e3, lo_open=True), "width_px": _integer(1, MAX_RASTER_SIDE_PX),
             "height_px": _integer(1, MAX_RASTER_SIDE_PX)}
_FILE_RECORD = {"sha256": _of_type(str, "64 lowercase hex digits", lambda v: bool(_SHA256.fullmatch(v))),
                "bytes": _integer(0)}


def _checked_index(path, data: dict) -> dict:
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in _INDEX_KINDS:
        raise CorpusError(path, f"field 'index.kind' is {_show(kind)}, expected one of {', '.join(_INDEX_KINDS)}")
    index = _checked(path, "index.", data, _INDEX_KINDS[kind])
    if kind == INDEX_IVF_FLAT and index["nprobe"] > index["nlist"]:
        raise CorpusError(path, f"field 'index.nprobe' {index['nprobe']} exceeds 'index.nlist' {index['nlist']}")
    return index


def _checked(path, prefix: str, data, schema: dict) -> dict:
    """``data`` with every schema field present and valid (converted to its stored type), nothing else."""
    if not isinstance(data, dict):
        raise CorpusError(path, f"field '{prefix.rstrip('.')}' is {_show(data)}, expected an object")
    unexpected = sorted(str(k) for k in data if k not in schema)
    if unexpected:
        raise CorpusError(path, f"unexpected field '{prefix}{unexpected[0]}'")
    out = {}
    for name, (ok, what, kind) in schema.items():
        if name not in data:
            raise CorpusError(path, f"field '{prefix}{name}' is missing")
        if not ok(data[name]):
            raise CorpusError(path, f"field '{prefix}{name}' is {_show(data[name])}, expected {what}")
        out[name] = kind(data[name])
    return out


def _show(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
