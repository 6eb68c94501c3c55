"""A provisioned map corpus on disk: its manifest, integrity checks and read access for retrieval and matching.

A corpus directory is written once by `core.corpus_build.provision` and read by every node: north-up map
tiles on a regular ENU grid with one global descriptor each (`descriptors.npy`, `index.faiss`), SIFT
features of the whole map in ENU metres (`features.npz`), the model that made the descriptors
(`model.pt`), a preview of the map (`map.png`, alpha = valid data) and `tiles.json`. `manifest.json`
records the origin, geometry, model id and the sha256 of every file (its schema and checks live in
`core.corpus_manifest`); `Corpus.load` refuses anything that does not verify, naming the file and the
problem, because a silently stale or truncated corpus produces confident wrong fixes. SIFT features are stored once per grid cell of `stride_m` (a tile is a block of
cells), so overlapping tiles and ENU windows share keypoints without duplicates. The descriptors and the
index are memory-mapped (`core.tile_index`): a corpus of a million tiles does not have to sit in memory.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import faiss
import numpy as np

from .corpus_manifest import CORPUS_FILES, CorpusError, Manifest, MapGeometry, read_manifest
from .terrain import TerrainGrid
from .tile_index import TileSearch, load_index

if TYPE_CHECKING:
    from .netvlad import NetVLADModel

__all__ = ["CORPUS_FILES", "Corpus", "CorpusError", "Manifest", "MapGeometry", "Tile", "file_sha256"]


@dataclass(frozen=True)
class Tile:
    """One corpus tile, as listed in tiles.json (bounds in the corpus ENU frame)."""

    tile_id: str  # "r<row>c<col>" on the provisioning grid
    index: int  # row of the descriptors and of the FAISS index
    row: int  # grid row, north to south
    col: int  # grid column, west to east
    east_min_m: float
    north_min_m: float
    east_max_m: float
    north_max_m: float
    centre_enu_m: tuple[float, float]
    centre_lat_deg: float
    centre_lon_deg: float
    valid_fraction: float  # share of the tile with map data
    cells: tuple[int, ...]  # SIFT storage cells that make up the tile


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_files(directory: Path, manifest: Manifest) -> None:
    for name in CORPUS_FILES:
        if name not in manifest.files:
            raise CorpusError(directory / "manifest.json", f"lists no checksum for {name}")
    for name, record in manifest.files.items():
        path = directory / name
        if not path.is_file():
            raise CorpusError(path, "missing")
        size = path.stat().st_size
        if size != record["bytes"]:
            raise CorpusError(path, f"has {size} bytes, the manifest says {record['bytes']} (truncated or replaced)")
        digest = file_sha256(path)
        if digest != record["sha256"]:
            raise CorpusError(path, f"sha256 {digest[:12]}... does not match the manifest's {record['sha256'][:12]}...")


class Corpus:
    """A verified corpus, loaded read-only. Build one with `Corpus.load(directory)`.

    Attributes: tile_ids [N] str; tile_bounds_enu_m [N x 4] (east_min, north_min, east_max, north_max);
    tile_centres_enu_m [N x 2]; tile_latlon_deg [N x 2]; descriptors [N x D] float32 (memory-mapped); index
    (FAISS inner-product index over the descriptors, row i = tile i; flat or IVF by corpus size, see
    manifest.index); index_note (why the index is not memory-mapped, "" when it is); tile_search (what
    `retrieval.search` takes for exact prior-narrowed search: index, descriptors and a geo grid);
    model_path; frame (the ENU origin);
    cell_bounds_enu_m [C x 4] and cell_offsets [C + 1]: the SIFT storage cells and their keypoint ranges.
    """

    def __init__(self, directory: Path, manifest: Manifest, tiles: list[Tile], descriptors: np.ndarray,
                 index: faiss.Index, features: dict, terrain: TerrainGrid, index_note: str = ""):
        self.directory, self.manifest, self.frame = directory, manifest, manifest.origin
        self.terrain = terrain
        self.tiles = tiles
        self.tile_ids = [t.tile_id for t in tiles]
        self.tile_bounds_enu_m = np.array([[t.east_min_m, t.north_min_m, t.east_max_m, t.north_max_m]
                                           for t in tiles], dtype=float).reshape(-1, 4)
        self.tile_centres_enu_m = np.array([t.centre_enu_m for t in tiles], dtype=float).reshape(-1, 2)
        self.tile_latlon_deg = np.array([[t.centre_lat_deg, t.centre_lon_deg] for t in tiles]).reshape(-1, 2)
        self.descriptors, self.index, self.index_note = descriptors, index, index_note
        self.tile_search = TileSearch(index, descriptors, self.tile_centres_enu_m)
        self.model_path = directory / "model.pt"
        self._kp_enu_m = features["keypoints_enu_m"]
        self._desc = features["descriptors"]
        self.cell_offsets = features["cell_offsets"]
        self.cell_bounds_enu_m = features["cell_bounds_enu_m"]

    @classmethod
    def load(cls, directory) -> Corpus:
        """Read and verify a corpus; raises CorpusError naming the offending file."""
        directory = Path(directory)
        manifest = read_manifest(directory)
        _verify_files(directory, manifest)
        try:
            tiles = [Tile(**{**t, "centre_enu_m": tuple(t["centre_enu_m"]), "cells": tuple(t["cells"])})
                     for t in json.loads((directory / "tiles.json").read_text())["tiles"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise CorpusError(directory / "tiles.json", f"malformed ({exc})") from exc
        if len(tiles) != manifest.num_tiles:
            raise CorpusError(directory / "tiles.json", f"{len(tiles)} tiles, the manifest says {manifest.num_tiles}")
        try:
            descriptors = np.load(directory / "descriptors.npy", mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise CorpusError(directory / "descriptors.npy", f"unreadable ({exc})") from exc
        if (descriptors.shape != (manifest.num_tiles, manifest.descriptor_dim) or descriptors.dtype != np.float32
                or not descriptors.flags.c_contiguous):
            raise CorpusError(directory / "descriptors.npy", f"{descriptors.dtype} {descriptors.shape}, expected "
                                                             f"float32 {(manifest.num_tiles, manifest.descriptor_dim)}")
        index, _, index_note = load_index(directory / "index.faiss", manifest.index)
        if index.ntotal != manifest.num_tiles or index.d != manifest.descriptor_dim:
            raise CorpusError(directory / "index.faiss", f"holds {index.ntotal} x {index.d}-d vectors, expected "
                                                         f"{manifest.num_tiles} x {manifest.descriptor_dim}")
        features = _load_features(directory / "features.npz", manifest)
        try:
            terrain = TerrainGrid.load(directory / "terrain.npz")
        except (ValueError, KeyError, OSError) as exc:
            raise CorpusError(directory / "terrain.npz", f"unreadable ({exc})") from exc
        return cls(directory, manifest, tiles, descriptors, index, features, terrain, index_note)

    num_tiles = property(lambda self: self.manifest.num_tiles)
    model_id = property(lambda self: self.manifest.model_id)
    descriptor_dim = property(lambda self: self.manifest.descriptor_dim)
    tile_size_m = property(lambda self: self.manifest.tile_size_m)
    tile_px = property(lambda self: self.manifest.tile_px)
    ground_alt_m = property(lambda self: self.manifest.ground_alt_m)

    @property
    def ground_up_m(self) -> float:
        """Mean height of the ground in the corpus ENU frame (where no position is known yet)."""
        return self.manifest.ground_alt_m - self.frame.origin_alt_m

    def ground_up_at(self, east_m, north_m) -> float:
        """Height of the ground (terrain.npz, bilinear) in the corpus ENU frame at a point of it: the plane
        the rectifier projects to under that point."""
        return float(self.terrain.height_at(east_m, north_m)) - self.frame.origin_alt_m

    def terrain_up_m(self, east_m: np.ndarray, north_m: np.ndarray) -> np.ndarray:
        """Ground heights [N] (m) in the corpus ENU frame under points east_m, north_m [N] (for the matcher)."""
        return self.terrain.height_at(east_m, north_m) - self.frame.origin_alt_m

    def load_model(self) -> NetVLADModel:
        """The checkpoint that made the descriptors; CorpusError if it is not the manifest's model."""
        # torch only here: retrieval and matching read corpora without ever running the model
        from .netvlad import CheckpointError, compute_model_id, load_checkpoint

        try:
            model, _ = load_checkpoint(self.model_path)
        except CheckpointError as exc:
            raise CorpusError(self.model_path, exc.reason) from exc
        if compute_model_id(model) != self.manifest.model_id:
            raise CorpusError(self.model_path, f"is {compute_model_id(model)}, the manifest says "
                                               f"{self.manifest.model_id}")
        return model

    def tile_features(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Tile ``index`` -> (kp_enu_m [M x 2] float32, desc [M x 128] float32), its cells concatenated."""
        cells = self.tiles[index].cells
        return self._gather(np.asarray(cells, dtype=np.int64))

    def features_in_window(self, centre_enu_m, half_width_m: float) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints with |east - centre_e| and |north - centre_n| <= half_width_m.

        Returns (kp_enu_m [M x 2] float32, desc [M x 128] float32), each keypoint once.
        """
        ce, cn = float(centre_enu_m[0]), float(centre_enu_m[1])
        b = self.cell_bounds_enu_m
        cells = np.flatnonzero((b[:, 0] <= ce + half_width_m) & (b[:, 2] >= ce - half_width_m)
                               & (b[:, 1] <= cn + half_width_m) & (b[:, 3] >= cn - half_width_m))
        kp, desc = self._gather(cells)
        inside = np.all(np.abs(kp - np.array([ce, cn], np.float32)) <= half_width_m, axis=1)
        return kp[inside], desc[inside]

    def _gather(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ranges = [np.arange(self.cell_offsets[c], self.cell_offsets[c + 1]) for c in cells]
        rows = np.concatenate(ranges) if ranges else np.zeros(0, np.int64)
        return self._kp_enu_m[rows], self._desc[rows]

    def map_preview(self) -> tuple[np.ndarray, np.ndarray, MapGeometry]:
        """(image_rgb [h x w x 3] uint8, valid [h x w] bool, geometry of the preview grid) from map.png."""
        bgra = cv2.imread(str(self.directory / "map.png"), cv2.IMREAD_UNCHANGED)
        if bgra is None or bgra.ndim != 3 or bgra.shape[2] != 4:
            raise CorpusError(self.directory / "map.png", "not an RGBA PNG")
        return cv2.cvtColor(bgra[:, :, :3], cv2.COLOR_BGR2RGB), bgra[:, :, 3] > 0, self.manifest.preview_geometry


def _load_features(path: Path, manifest: Manifest) -> dict:
    names = ("keypoints_enu_m", "descriptors", "cell_offsets", "cell_bounds_enu_m")
    try:
        with np.load(path, allow_pickle=False) as npz:
            features = {name: npz[name] for name in names}
    except (ValueError, KeyError, OSError) as exc:
        raise CorpusError(path, f"unreadable or incomplete ({exc})") from exc
    kp, desc, offsets = features["keypoints_enu_m"], features["descriptors"], features["cell_offsets"]
    consistent = (kp.shape == (manifest.num_features, 2) and desc.shape == (manifest.num_features, 128)
                  and len(offsets) == len(features["cell_bounds_enu_m"]) + 1 and offsets[0] == 0
                  and offsets[-1] == manifest.num_features and np.all(np.diff(offsets) >= 0))
    if not consistent:
        raise CorpusError(path, f"inconsistent arrays (keypoints {kp.shape}, descriptors {desc.shape}, "
                                f"{len(offsets)} offsets) for {manifest.num_features} features")
    return features

