"""Adding a neighbouring map to an existing corpus without recomputing anything it already holds.

A mission area grows (a longer corridor, the next valley): `add_map` cuts the new map on the corpus's own
tile grid (same ENU origin, pixel size, anchor and stride), describes only the grid positions the corpus
does not have yet with the corpus's model as it is (the adapted head is not re-fitted: that would change
every stored descriptor), detects SIFT only in grid cells it does not have, rebuilds the FAISS index from
old + new descriptors and writes a new manifest. Existing tile ids, descriptor rows and feature cells are
unchanged; new ones are appended. The grown corpus is written beside the old one and swapped in by renames,
so an add that fails leaves the old corpus as it was.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .corpus import Corpus, Manifest, MapGeometry
from .corpus_build import (ProgressCallback, ProvisionConfig, cell_pixels, detect_cell_features, error_sigmas_m,
                           features_per_cell, terrain_for, tile_grid, tile_image)
from .corpus_union import grid_aligned, union_box, union_preview, union_terrain
from .corpus_write import file_records, tile_records, write_features, write_manifest, write_png_rgba, write_tiles
from .descriptor import DescriptorExtractor
from .map_raster import MapRaster, load_geotiff
from .tile_index import IndexConfig, build_index, save_index
from ..maps.record import read_sidecar

# ProvisionConfig fields an add takes from the corpus: they define its grid, its tiles and its features.
_GRID_FIELDS = ("tile_size_m", "stride_m", "tile_px", "min_valid_fraction", "sift_features_per_tile", "sift_margin_px",
                "root_sift", "preview_max_px", "terrain_step_m", "batch_size", "seed")
# and the ones that say where the terrain comes from, which an add may give anew for the new map
TERRAIN_FIELDS = ("dem_path", "ground_alt_m", "assume_sea_level", "geoid_offset_m", "terrain_sigma_m",
                  "map_registration_sigma_m")


@dataclass(frozen=True)
class AddResult:
    manifest: Manifest
    new_tile_ids: list[str]  # appended after the corpus's own tiles, in this order
    new_cells: int  # SIFT cells detected on the new map
    reused_cells: int  # cells of new tiles the corpus already had


def add_map(map_source: str | Path | MapRaster, corpus_dir, terrain: dict | None = None, device: str = "auto",
            progress: ProgressCallback | None = None) -> AddResult:
    """Add the tiles of ``map_source`` that ``corpus_dir`` lacks. terrain: TERRAIN_FIELDS for the new map
    (default: the corpus's recorded source, which must then cover the new map too)."""
    report = progress or (lambda stage, done, total: None)
    corpus_dir = Path(corpus_dir)
    corpus = Corpus.load(corpus_dir)  # verifies every checksum before anything is built on it
    old = corpus.manifest
    recorded = old.provision_config
    config = dataclasses.replace(ProvisionConfig(), device=device, index=IndexConfig(**recorded["index"]),
                                 **{k: recorded[k] for k in _GRID_FIELDS + TERRAIN_FIELDS})
    if terrain:
        config = dataclasses.replace(config, **{"dem_path": None, "ground_alt_m": None, "assume_sea_level": False,
                                                "geoid_offset_m": 0.0, **terrain})
    gsd_m = old.map_geometry.gsd_m
    if isinstance(map_source, MapRaster):
        raster = map_source
        if raster.frame != old.origin or abs(raster.gsd_m - gsd_m) > 1e-9:
            raise ValueError(f"the map must be on the corpus's ENU frame and {gsd_m} m grid")
    else:
        raster = load_geotiff(map_source, gsd_m=gsd_m, frame=old.origin)
    anchor = tuple(recorded.get("grid_anchor_enu_m") or (old.map_geometry.east_min_m, old.map_geometry.north_max_m))
    crop, row0, col0 = grid_aligned(raster, anchor, config.stride_m)

    have = set(corpus.tile_ids)
    tiles = []
    for tile in tile_grid(crop, config):  # rows and columns of the crop's grid -> of the corpus's grid
        row, col = tile["row"] + row0, tile["col"] + col0
        east_min, north_max = anchor[0] + col * config.stride_m, anchor[1] - row * config.stride_m
        tile.update(tile_id=f"r{row:03d}c{col:03d}", row=row, col=col, east_min_m=east_min,
                    north_min_m=north_max - config.tile_size_m, east_max_m=east_min + config.tile_size_m,
                    north_max_m=north_max)
        if tile["tile_id"] not in have:
            tiles.append(tile)
    if not tiles:
        raise ValueError(f"the map adds no tile to {corpus_dir}: every tile of it with >= "
                         f"{config.min_valid_fraction:.0%} valid data is in the corpus already")

    runtime = DescriptorExtractor(corpus.load_model(), config.device, config.tile_px, config.batch_size)
    new_descriptors = np.zeros((len(tiles), old.descriptor_dim), np.float32)
    for start in range(0, len(tiles), config.batch_size):
        batch = tiles[start:start + config.batch_size]
        new_descriptors[start:start + len(batch)] = runtime.describe(
            [tile_image(crop, t["pixels"], config.tile_px) for t in batch])
        report("descriptors", start + len(batch), len(tiles))

    stride = config.stride_m
    old_cells = {(round((anchor[1] - b[3]) / stride), round((b[0] - anchor[0]) / stride)): i
                 for i, b in enumerate(corpus.cell_bounds_enu_m)}
    m = round(config.tile_size_m / stride)
    needed = sorted({(t["row"] + dr, t["col"] + dc) for t in tiles for dr in range(m) for dc in range(m)})
    new_cells = [cell for cell in needed if cell not in old_cells]
    found, per_cell = _old_cell_features(corpus_dir / "features.npz"), features_per_cell(config)
    for i, (row, col) in enumerate(new_cells):
        found.append(detect_cell_features(crop, cell_pixels(crop, (row - row0, col - col0), config), per_cell,
                                          config.sift_margin_px, config.root_sift))
        report("sift", i + 1, len(new_cells))
    bounds = [*corpus.cell_bounds_enu_m.tolist(),
              *([anchor[0] + c * stride, anchor[1] - (r + 1) * stride, anchor[0] + (c + 1) * stride, anchor[1] - r * stride]
                for r, c in new_cells)]
    cell_of = {**old_cells, **{cell: len(old_cells) + i for i, cell in enumerate(new_cells)}}

    work = corpus_dir.with_name(corpus_dir.name + ".adding")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    shutil.copy2(corpus_dir / "model.pt", work / "model.pt")
    descriptors = np.concatenate([np.asarray(corpus.descriptors), new_descriptors])
    np.save(work / "descriptors.npy", descriptors)
    index, index_record = build_index(descriptors, config.index)
    save_index(index, work / "index.faiss")
    num_features = write_features(work / "features.npz", found, bounds)
    rgb, valid, old_preview = corpus.map_preview()
    preview_rgb, preview_alpha, preview_geometry = union_preview(rgb, valid, old_preview, crop, config.preview_max_px)
    write_png_rgba(work / "map.png", preview_rgb, preview_alpha)
    grown_terrain = union_terrain(corpus.terrain, (crop.east_min_m, crop.north_min_m, crop.east_max_m,
                                                   crop.north_max_m),
                                  lambda box: terrain_for(SimpleNamespace(**vars(box), frame=old.origin), config))
    grown_terrain.save(work / "terrain.npz")
    write_tiles(work / "tiles.json", list(corpus.tiles) + tile_records(old.origin, tiles, cell_of, config,
                                                                         first_index=len(corpus.tiles)))

    g = old.map_geometry
    box = union_box([[g.east_min_m, g.north_max_m - g.height_px * gsd_m, g.east_min_m + g.width_px * gsd_m,
                      g.north_max_m], [crop.east_min_m, crop.north_min_m, crop.east_max_m, crop.north_max_m]])
    terrain_sigma_m, registration_sigma_m = error_sigmas_m(raster, config)
    added = {"source": str(raster.source), "num_tiles": len(tiles), "new_cells": len(new_cells),
             "created_unix_s": time.time(), **{k: getattr(config, k) for k in TERRAIN_FIELDS},
             "map_source": None if isinstance(map_source, MapRaster) else read_sidecar(map_source)}
    manifest = dataclasses.replace(
        old, source=f"{old.source} + {raster.source}",
        map_geometry=MapGeometry(box[0], box[3], gsd_m, round((box[2] - box[0]) / gsd_m),
                                 round((box[3] - box[1]) / gsd_m)),
        preview_geometry=preview_geometry, num_tiles=len(corpus.tiles) + len(tiles), num_features=num_features,
        ground_alt_m=float(np.mean(grown_terrain.heights_m)),
        # one sigma for the whole corpus: the worse of the two maps' (a fix does not know which map it matched)
        terrain_sigma_m=max(old.terrain_sigma_m, terrain_sigma_m),
        map_registration_sigma_m=max(old.map_registration_sigma_m, registration_sigma_m),
        provision_config={**recorded, "grid_anchor_enu_m": list(anchor), "added": [*recorded.get("added", []), added]},
        files=file_records(work), index=index_record)
    write_manifest(work, manifest)
    del corpus, index  # the old descriptors are memory-mapped from the directory about to move
    _swap(corpus_dir, work)
    report("write", 1, 1)
    return AddResult(manifest, [t["tile_id"] for t in tiles], len(new_cells), len(needed) - len(new_cells))


def _old_cell_features(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The corpus's cells as (kp_enu_m [M x 2], desc [M x 128]), in features.npz order."""
    with np.load(path, allow_pickle=False) as npz:
        kp, desc, offsets = npz["keypoints_enu_m"], npz["descriptors"], npz["cell_offsets"]
    return [(kp[offsets[i]:offsets[i + 1]], desc[offsets[i]:offsets[i + 1]]) for i in range(len(offsets) - 1)]


def _swap(corpus_dir: Path, work: Path) -> None:
    """corpus_dir <- work by two renames; between them both complete corpora exist (old one as .replaced)."""
    replaced = corpus_dir.with_name(corpus_dir.name + ".replaced")
    shutil.rmtree(replaced, ignore_errors=True)
    corpus_dir.rename(replaced)
    work.rename(corpus_dir)
    shutil.rmtree(replaced)
