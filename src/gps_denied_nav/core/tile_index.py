"""Index choice by corpus size, memory-mapped loading, and exact prior-narrowed search through a geo grid.

Why: a flat inner-product index is exact and costs N x D multiply-adds per query: fine for the 10^3-10^4 tiles
of a town-sized map, 36 ms per query at 1M 256-d tiles on one core of the reference machine, and a 4096-d
corpus scans 16x the bytes (docs/INDEX_SCALE.md). Above `IndexConfig.flat_max_tiles` a corpus gets an IVF-Flat
index: k-means cells over the descriptors, exact inner products inside the `nprobe` cells nearest the query,
so recall is lost only to the cells not probed. Measured while choosing, on the benchmark's descriptors at
100k tiles: HNSW (M 32) reached recall@10 0.956 at efSearch 128 in the time IVF-Flat reached 1.000 at
nprobe 32 (0.2 ms), and IVF-PQ (32 bytes) needed a refinement pass (0.64 without) and 2 minutes of codebook
training. The parameters go into the manifest (`Manifest.index`); the
search-time one (nprobe) is applied from it when the index is loaded.

A position prior does not go through the ANN index: tile centres are bucketed in a regular ENU grid
(`GeoGrid`), the cells overlapping the prior's disc give the candidates, and their descriptors
(descriptors.npy, memory-mapped) are scored exactly. The result is brute force over the tiles within the
radius at a cost set by the radius, not by N; an ID selector would only see an IVF index's probed cells, and
on a flat index it still walks all N.

Loading memory-maps the index where FAISS maps it in place (IO_FLAG_MMAP_IFC: the codes of an IndexFlat and
the inverted lists of an IndexIVFFlat, measured with faiss 1.15), so a large index costs page cache, shared
between the processes that read the corpus, rather than private memory. A mapped file must be replaced by a
rename (`save_index` does), never rewritten in place: the pages of a truncated file fault (SIGBUS) in every
process that maps it.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import faiss
import numpy as np

from .corpus_manifest import FLAT_INDEX, INDEX_FLAT, INDEX_IVF_FLAT, CorpusError
from .retrieval import MODE_PRIOR, MODE_PRIOR_EMPTY_GLOBAL, RetrievalResult, search, tiles_within

__all__ = ["DEFAULT_GRID_CELL_M", "FLAT_INDEX", "INDEX_FLAT", "INDEX_IVF_FLAT", "GeoGrid", "IndexConfig",
           "LoadedIndex", "TileSearch", "build_index", "index_params", "load_index", "save_index"]

DEFAULT_GRID_CELL_M = 250.0  # 5 tiles at the default 50 m stride: a 500 m prior touches ~5 x 5 cells
_ADD_CHUNK = 65536  # vectors per add(): a memory-mapped descriptors.npy is never copied whole
_KEY_OFFSET = 1 << 31  # cell coordinates are shifted positive and packed as (ix << 32) | iy
_MAPPED_IN_PLACE = (faiss.IndexFlat, faiss.IndexIVFFlat)  # what IO_FLAG_MMAP_IFC was measured to map


@dataclass(frozen=True)
class IndexConfig:
    """How `build_index` chooses and sizes the index (the defaults are the benchmarked ones)."""

    flat_max_tiles: int = 50_000  # an exact flat index up to this many tiles, IVF-Flat above
    nlist: int | None = None  # IVF cells; None: the power of two nearest 4 sqrt(N) (4096 at 1M tiles)
    nprobe: int | None = None  # cells searched per query; None: nlist / 32, at least 8 (128 at 1M tiles)
    train_size: int | None = None  # k-means sample; None: 50 descriptors per cell (FAISS asks for >= 39)
    seed: int = 0  # of the training sample and of k-means: the same descriptors give the same index

    def __post_init__(self):
        for name in ("nlist", "nprobe", "train_size"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 1):
                raise ValueError(f"IndexConfig.{name} must be a positive integer or None, got {value!r}")
        if type(self.flat_max_tiles) is not int or self.flat_max_tiles < 0:
            raise ValueError(f"IndexConfig.flat_max_tiles must be an integer >= 0, got {self.flat_max_tiles!r}")
        if type(self.seed) is not int or self.seed < 0:
            raise ValueError(f"IndexConfig.seed must be an integer >= 0, got {self.seed!r}")


def index_params(num_tiles: int, config: IndexConfig = IndexConfig()) -> dict:
    """The index a corpus of ``num_tiles`` gets: the manifest's ``index`` record (kind and parameters)."""
    if num_tiles <= config.flat_max_tiles:
        return dict(FLAT_INDEX)
    nlist = min(config.nlist or 2 ** round(math.log2(4.0 * math.sqrt(num_tiles))), num_tiles)
    nprobe = min(config.nprobe or max(8, nlist // 32), nlist)
    train_size = min(config.train_size or 50 * nlist, num_tiles)
    if train_size < nlist:
        raise ValueError(f"IndexConfig.train_size {train_size} is below nlist {nlist}: k-means needs a sample "
                         "per cell at least")
    return {"kind": INDEX_IVF_FLAT, "nlist": int(nlist), "nprobe": int(nprobe), "train_size": int(train_size),
            "seed": config.seed}


def build_index(descriptors: np.ndarray, config: IndexConfig = IndexConfig()) -> tuple[faiss.Index, dict]:
    """An inner-product index over descriptors [N x D] (unit float32; row i = tile i) and its manifest record.

    Deterministic: the IVF training sample and the k-means seed come from ``config.seed``. ``descriptors`` may
    be memory-mapped: it is read in chunks.
    """
    num_tiles, dim = descriptors.shape
    params = index_params(num_tiles, config)
    if params["kind"] == INDEX_FLAT:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.index_factory(dim, f"IVF{params['nlist']},Flat", faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed = params["seed"]
        rows = np.sort(np.random.default_rng(params["seed"]).choice(num_tiles, params["train_size"], replace=False))
        index.train(np.ascontiguousarray(descriptors[rows], dtype=np.float32))
        ivf.nprobe = params["nprobe"]
    for start in range(0, num_tiles, _ADD_CHUNK):
        index.add(np.ascontiguousarray(descriptors[start:start + _ADD_CHUNK], dtype=np.float32))
    return index, params


def save_index(index: faiss.Index, path) -> None:
    """Write ``index`` to ``path`` through a temporary file and a rename: a process that has the old file
    memory-mapped keeps reading the old one, and an interrupted write leaves no half file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(index, str(tmp))
    os.replace(tmp, path)


class LoadedIndex(NamedTuple):
    index: faiss.Index
    mmapped: bool  # read with IO_FLAG_MMAP_IFC as a type FAISS maps in place
    note: str  # why it is not memory-mapped ("" when it is)


def load_index(path, params: dict | None = None, mmap: bool = True) -> LoadedIndex:
    """Read an index written by `build_index`/`save_index`, memory-mapped where FAISS maps that type in place.

    ``params`` (the manifest's ``index`` record) are checked against the file (kind, metric, nlist) and their
    search-time part (nprobe) applied. CorpusError(path, ...) for an unreadable file or a disagreement.
    """
    path = Path(path)
    index, note = None, "" if mmap else "not asked to memory-map it"
    if mmap:
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
        except RuntimeError as exc:
            note = f"FAISS could not memory-map it ({_first_line(exc)})"
        if index is not None and not isinstance(index, _MAPPED_IN_PLACE):
            note = (f"an {type(index).__name__} is not a type whose in-place mapping was verified here "
                    "(IndexFlat, IndexIVFFlat): read into memory")
            index = None
    if index is None:
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise CorpusError(path, f"unreadable ({_first_line(exc)})") from exc
    if params is not None:
        _check_and_apply(path, index, params)
    return LoadedIndex(index, not note, note)


def _check_and_apply(path: Path, index: faiss.Index, params: dict) -> None:
    kind = params.get("kind")
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise CorpusError(path, f"is an {type(index).__name__} that does not rank by inner product")
    if kind == INDEX_FLAT and isinstance(index, faiss.IndexFlat):
        return
    if kind == INDEX_IVF_FLAT and isinstance(index, faiss.IndexIVFFlat):
        if index.nlist != params["nlist"]:
            raise CorpusError(path, f"has {index.nlist} IVF cells, the manifest says {params['nlist']}")
        index.nprobe = min(int(params["nprobe"]), index.nlist)
        return
    raise CorpusError(path, f"is an {type(index).__name__}, the manifest's index kind is {kind!r}")


def _first_line(exc: Exception) -> str:
    """FAISS' reason without its C++ location ("Error in <signature> at <file>:<line>: Error: <reason>")."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return re.sub(r"^Error in .*? at \S+:\d+: (Error: )?", "", line)[:200]


class GeoGrid:
    """Tile indices bucketed in a regular grid of ``cell_m`` squares of the corpus' ENU frame.

    `within` gathers the tiles of the cells a disc overlaps and keeps those whose centre is inside it: the same
    set as `retrieval.tiles_within` over every tile, touching only the tiles near the disc.
    """

    def __init__(self, tile_centres_enu_m: np.ndarray, cell_m: float = DEFAULT_GRID_CELL_M):
        if not (isinstance(cell_m, (int, float)) and math.isfinite(cell_m) and cell_m >= 1.0):
            raise ValueError(f"geo grid cell must be a finite number of metres >= 1, got {cell_m!r}")
        self.cell_m = float(cell_m)
        self.centres_enu_m = np.asarray(tile_centres_enu_m, dtype=float).reshape(-1, 2)
        if not np.all(np.isfinite(self.centres_enu_m)):
            raise ValueError("tile centres must be finite")
        cells = np.floor(self.centres_enu_m / self.cell_m).astype(np.int64)
        keys = _cell_keys(cells[:, 0], cells[:, 1])
        self._order = np.argsort(keys, kind="stable")  # tiles grouped by cell, ascending inside a cell
        self._keys, self._starts = np.unique(keys[self._order], return_index=True)
        self._counts = np.diff(np.append(self._starts, len(keys)))
        self._cells = cells[self._order[self._starts]]  # [C x 2] east, north cell of each occupied cell

    @property
    def num_cells(self) -> int:
        """Occupied cells."""
        return len(self._keys)

    def within(self, prior_enu_m, prior_radius_m: float) -> np.ndarray:
        """Indices [M] int64 (ascending) of tiles whose centre lies within prior_radius_m of prior_enu_m [2]."""
        centre = np.asarray(prior_enu_m, dtype=float)[:2]
        radius_m = abs(float(prior_radius_m))  # tiles_within compares squared distances: its sign never counted
        if not np.all(np.isfinite(centre)) or math.isnan(radius_m):
            return np.zeros(0, np.int64)
        lo = np.floor((centre - radius_m) / self.cell_m)
        hi = np.floor((centre + radius_m) / self.cell_m)
        if np.prod(hi - lo + 1.0) > self.num_cells:  # a disc wider than the map: filter the occupied cells
            chosen = np.flatnonzero(np.all((self._cells >= lo) & (self._cells <= hi), axis=1))
        else:
            east, north = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
            wanted = _cell_keys(east.ravel().astype(np.int64), north.ravel().astype(np.int64))
            at = np.minimum(np.searchsorted(self._keys, wanted), self.num_cells - 1)  # >= 1 cell: prod >= 1
            chosen = at[self._keys[at] == wanted]
        counts = self._counts[chosen]
        offsets = np.repeat(self._starts[chosen] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        candidates = np.sort(self._order[offsets])
        return candidates[tiles_within(self.centres_enu_m[candidates], centre, radius_m)]


def _cell_keys(east_cell: np.ndarray, north_cell: np.ndarray) -> np.ndarray:
    return ((east_cell + _KEY_OFFSET) << 32) | (north_cell + _KEY_OFFSET)


class TileSearch:
    """A corpus' retrieval: global top-k through its FAISS index; with a prior, exact top-k over the tiles within
    the radius (geo grid + descriptors), falling back to global when the radius holds no tile.

    Built by `Corpus.load` as ``corpus.tile_search``; `retrieval.search` takes it in place of an index.
    """

    def __init__(self, index: faiss.Index, descriptors: np.ndarray, tile_centres_enu_m: np.ndarray,
                 cell_m: float = DEFAULT_GRID_CELL_M):
        self.index, self.descriptors = index, descriptors
        self.grid = GeoGrid(tile_centres_enu_m, cell_m)
        if not (index.ntotal == len(descriptors) == len(self.grid.centres_enu_m)):
            raise ValueError(f"index ({index.ntotal}), descriptors ({len(descriptors)}) and tile centres "
                             f"({len(self.grid.centres_enu_m)}) must have one row per tile")

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def search(self, query: np.ndarray, k: int, prior_enu_m: np.ndarray | None = None,
               prior_radius_m: float | None = None) -> RetrievalResult:
        """Top-k tiles for query descriptors [D] or [B x D] (unit L2, float32), as `retrieval.search`."""
        if (prior_enu_m is None) != (prior_radius_m is None):
            raise ValueError("a prior needs prior_enu_m and prior_radius_m together")
        if prior_enu_m is None:
            return search(self.index, query, k)
        selected = self.grid.within(prior_enu_m, prior_radius_m)
        if not len(selected):
            return search(self.index, query, k)._replace(mode=MODE_PRIOR_EMPTY_GLOBAL)
        single = np.ndim(query) == 1
        queries = np.ascontiguousarray(np.atleast_2d(query), dtype=np.float32)
        # Fancy indexing of a memory-mapped descriptors.npy reads these rows only (ascending: near-sequential).
        scores = queries @ np.asarray(self.descriptors[selected], dtype=np.float32).T  # [B x M]
        k = min(int(k), len(selected))
        if k <= 0:
            empty = np.zeros((len(queries), 0))
            return RetrievalResult(empty.astype(np.int64)[0] if single else empty.astype(np.int64),
                                   empty.astype(np.float32)[0] if single else empty.astype(np.float32),
                                   MODE_PRIOR, len(selected))
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable"), 1)
        indices, top_scores = selected[top], np.take_along_axis(scores, top, 1).astype(np.float32)
        if single:
            indices, top_scores = indices[0], top_scores[0]
        return RetrievalResult(indices.astype(np.int64), top_scores, MODE_PRIOR, len(selected))
