"""Writing a corpus directory from computed parts: descriptors, index, SIFT cells, preview, terrain, tiles, manifest.

Shared by every way of computing those parts: the one-process `core.corpus_build.provision`, the Ray
cluster's `core.provision_ray` and the incremental `core.corpus_add`, so that they write the same files
with the same checksums. The manifest is written last and through a rename: a directory either holds a
complete, verifiable corpus or no manifest at all (`Corpus.load` refuses it).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .corpus import CORPUS_FILES, Manifest, MapGeometry, Tile, file_sha256
from .map_raster import MapRaster
from .terrain import TerrainGrid
from .tile_index import build_index, save_index
from ..maps.record import read_sidecar

if TYPE_CHECKING:
    from .corpus_build import ProgressCallback, ProvisionConfig


def write_corpus(out_dir: Path, raster: MapRaster, map_source, config: ProvisionConfig, tiles: list[dict],
                 model_id: str, alpha: float | None, descriptors: np.ndarray, cells: list[tuple[int, int]],
                 found: list[tuple[np.ndarray, np.ndarray]], terrain: TerrainGrid, sigmas_m: tuple[float, float],
                 report: ProgressCallback) -> Manifest:
    """Every file but model.pt (already written), the manifest last with the checksums of all of them.

    descriptors [N x D] float32, row i = tiles[i]; found[k] = (kp_enu_m [M x 2], desc [M x 128]) of cells[k];
    sigmas_m: (terrain_sigma_m, map_registration_sigma_m).
    """
    np.save(out_dir / "descriptors.npy", descriptors)
    index, index_record = build_index(descriptors, config.index)
    save_index(index, out_dir / "index.faiss")
    features = write_features(out_dir / "features.npz", found,
                              [cell_bounds_enu_m(raster, cell, config.stride_m) for cell in cells])
    cell_of = {key: i for i, key in enumerate(cells)}
    preview_geometry = write_preview(raster, config.preview_max_px, out_dir / "map.png")
    terrain.save(out_dir / "terrain.npz")
    write_tiles(out_dir / "tiles.json", tile_records(raster.frame, tiles, cell_of, config))

    height_px, width_px = raster.valid.shape
    manifest = Manifest(
        origin=raster.frame, source=str(raster.source),
        map_geometry=MapGeometry(raster.east_min_m, raster.north_max_m, raster.gsd_m, width_px, height_px),
        preview_geometry=preview_geometry, tile_size_m=config.tile_size_m, tile_stride_m=config.stride_m,
        tile_px=config.tile_px, model_id=model_id, descriptor_dim=int(descriptors.shape[1]),
        num_tiles=len(tiles), num_features=features, root_sift=config.root_sift,
        ground_alt_m=float(np.mean(terrain.heights_m)), terrain_datum=terrain.datum,
        terrain_sigma_m=sigmas_m[0], map_registration_sigma_m=sigmas_m[1],
        provision_config={**asdict(config), "netvlad_alpha": alpha, "created_unix_s": time.time(),
                          # where a fetched map / DEM came from (gdn fetch-map's sidecar: source, attribution)
                          "map_source": None if isinstance(map_source, MapRaster) else read_sidecar(map_source),
                          "dem_source": read_sidecar(config.dem_path) if config.dem_path else None},
        files=file_records(out_dir), index=index_record)
    write_manifest(out_dir, manifest)
    report("write", 1, 1)
    return manifest


def cell_bounds_enu_m(raster: MapRaster, cell: tuple[int, int], stride_m: float) -> list[float]:
    """[east_min, north_min, east_max, north_max] of stride cell (row, col) of the raster's grid."""
    row, col = cell
    east_min, north_max = raster.east_min_m + col * stride_m, raster.north_max_m - row * stride_m
    return [east_min, north_max - stride_m, east_min + stride_m, north_max]


def tile_records(frame, tiles: list[dict], cell_of: dict, config: ProvisionConfig, first_index: int = 0) -> list[Tile]:
    """tiles.json entries of grid tiles (dicts of ``tile_grid``); cell_of: (row, col) -> features.npz cell."""
    m = round(config.tile_size_m / config.stride_m)
    records = []
    for i, tile in enumerate(tiles):
        centre = (0.5 * (tile["east_min_m"] + tile["east_max_m"]), 0.5 * (tile["north_min_m"] + tile["north_max_m"]))
        lat, lon, _ = frame.to_geodetic(np.array([centre[0], centre[1], 0.0]))
        cells = tuple(cell_of[(tile["row"] + dr, tile["col"] + dc)] for dr in range(m) for dc in range(m))
        fields = {k: v for k, v in tile.items() if k != "pixels"}
        records.append(Tile(index=first_index + i, centre_enu_m=centre, centre_lat_deg=float(lat),
                            centre_lon_deg=float(lon), cells=cells, **fields))
    return records


def write_tiles(path: Path, records: list[Tile]) -> None:
    path.write_text(json.dumps({"tiles": [asdict(t) for t in records]}, indent=1))


def write_features(path: Path, found: list[tuple[np.ndarray, np.ndarray]], cell_bounds: list) -> int:
    """features.npz of per-cell (kp_enu_m [M x 2], desc [M x 128]) in cell order; returns the keypoint count."""
    offsets = [0]
    for kp, _ in found:
        offsets.append(offsets[-1] + len(kp))
    np.savez(path, keypoints_enu_m=np.concatenate([kp for kp, _ in found]).reshape(-1, 2).astype(np.float32),
             descriptors=np.concatenate([desc for _, desc in found]).reshape(-1, 128).astype(np.float32),
             cell_offsets=np.asarray(offsets, np.int64), cell_bounds_enu_m=np.asarray(cell_bounds, np.float64))
    return offsets[-1]


def write_preview(raster: MapRaster, max_px: int, path: Path) -> MapGeometry:
    """map.png: RGBA (alpha = valid) downsampled by an integer factor so its grid stays exact."""
    height_px, width_px = raster.valid.shape
    factor = max(1, math.ceil(max(height_px, width_px) / max_px))
    h, w = height_px // factor, width_px // factor
    rgb = raster.image_rgb[:h * factor, :w * factor]
    valid = raster.valid[:h * factor, :w * factor].astype(np.float32)
    small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    alpha = (cv2.resize(valid, (w, h), interpolation=cv2.INTER_AREA) >= 0.5).astype(np.uint8) * 255
    write_png_rgba(path, small, alpha)
    return MapGeometry(raster.east_min_m, raster.north_max_m, raster.gsd_m * factor, w, h)


def write_png_rgba(path: Path, rgb: np.ndarray, alpha: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), alpha])):
        raise OSError(f"{path}: could not write the map preview")


def file_records(out_dir: Path) -> dict:
    """The manifest's ``files``: sha256 and size of every corpus file."""
    return {name: {"sha256": file_sha256(out_dir / name), "bytes": (out_dir / name).stat().st_size}
            for name in CORPUS_FILES}


def write_manifest(out_dir: Path, manifest: Manifest) -> None:
    """manifest.json through a temporary name and a rename: a reader sees the whole manifest or none."""
    partial = out_dir / "manifest.json.partial"
    partial.write_text(json.dumps(manifest.to_json(), indent=1))
    partial.replace(out_dir / "manifest.json")
