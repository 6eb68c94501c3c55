"""The parts of a grown corpus that span old and new map: its tile grid anchor, terrain and preview.

`core.corpus_add` puts a neighbouring map into an existing corpus. The corpus keeps no full-resolution
map, only its preview and terrain grid, so these are merged on the lattices the corpus already has: the
tile grid stays anchored where the first map put it (tile ids never change), the old terrain heights and
preview pixels are kept where they exist and the new map fills the rest.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import cv2
import numpy as np
from scipy import ndimage

from .corpus import MapGeometry
from .map_raster import MapRaster
from .terrain import TerrainGrid


def grid_aligned(raster: MapRaster, anchor_enu_m: tuple[float, float], stride_m: float) -> tuple[MapRaster, int, int]:
    """(crop, row0, col0): ``raster`` cropped or padded so its north-west corner is the grid node (row0, col0)
    of the grid anchored at ``anchor_enu_m`` (east_min, north_max) with step ``stride_m``."""
    east0, north0 = anchor_enu_m
    col0 = math.floor((raster.east_min_m - east0) / stride_m + 1e-9)
    row0 = math.floor((north0 - raster.north_max_m) / stride_m + 1e-9)
    crop = raster.crop_enu(east0 + col0 * stride_m, raster.north_min_m, raster.east_max_m, north0 - row0 * stride_m)
    if abs(crop.east_min_m - (east0 + col0 * stride_m)) > 1e-6 or abs(crop.north_max_m - (north0 - row0 * stride_m)) > 1e-6:
        raise ValueError(f"the map's {raster.gsd_m} m pixels do not fall on the corpus's {stride_m} m grid "
                         "(the stride must be a whole number of pixels)")
    return crop, row0, col0


def union_box(boxes) -> tuple[float, float, float, float]:
    """(east_min, north_min, east_max, north_max) around boxes of the same form."""
    boxes = np.asarray(boxes, float)
    return float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max())


def union_terrain(old: TerrainGrid, new_box: tuple, new_terrain_for) -> TerrainGrid:
    """Terrain over the old grid and ``new_box`` (east_min, north_min, east_max, north_max) on the old grid's
    lattice: the old heights where it has them, the new source's (``new_terrain_for(box_like)``, asked only
    for the new map's box) elsewhere, and the nearest of them at nodes neither covers."""
    step, (old_rows, old_cols) = old.step_m, old.heights_m.shape
    old_box = (old.east_min_m, old.north_max_m - (old_rows - 1) * step, old.east_min_m + (old_cols - 1) * step,
               old.north_max_m)
    box = union_box([old_box, new_box])
    east_min = old.east_min_m - math.ceil((old.east_min_m - box[0]) / step - 1e-9) * step
    north_max = old.north_max_m + math.ceil((box[3] - old.north_max_m) / step - 1e-9) * step
    cols = math.ceil((box[2] - east_min) / step - 1e-9) + 1
    rows = math.ceil((north_max - box[1]) / step - 1e-9) + 1
    heights = np.full((rows, cols), np.nan)
    c0 = math.floor((new_box[0] - east_min) / step + 1e-9)
    r0 = math.floor((north_max - new_box[3]) / step + 1e-9)
    new = new_terrain_for(SimpleNamespace(east_min_m=east_min + c0 * step, north_max_m=north_max - r0 * step,
                                          width_m=new_box[2] - (east_min + c0 * step),
                                          height_m=(north_max - r0 * step) - new_box[1]))
    part = new.heights_m[:rows - r0, :cols - c0]
    heights[r0:r0 + part.shape[0], c0:c0 + part.shape[1]] = part
    r0, c0 = round((north_max - old.north_max_m) / step), round((old.east_min_m - east_min) / step)
    heights[r0:r0 + old_rows, c0:c0 + old_cols] = old.heights_m
    missing = ~np.isfinite(heights)
    if missing.any():  # nodes neither map's terrain reached: the nearest known height
        nearest = ndimage.distance_transform_edt(missing, return_distances=False, return_indices=True)
        heights = heights[tuple(nearest)]
    return TerrainGrid(east_min, north_max, step, heights, old.datum, f"{old.source} + {new.source}")


def union_preview(old_rgb: np.ndarray, old_valid: np.ndarray, old_geometry: MapGeometry, raster: MapRaster,
                  max_px: int) -> tuple[np.ndarray, np.ndarray, MapGeometry]:
    """(rgb [h x w x 3], alpha [h x w] uint8, geometry) of a preview covering the old preview and ``raster``
    (same gsd as the corpus), on the old preview's pixel lattice; old pixels win where both have data."""
    g = raster.gsd_m
    old_factor = round(old_geometry.gsd_m / g)
    box = union_box([[old_geometry.east_min_m, old_geometry.north_max_m - old_geometry.height_px * old_geometry.gsd_m,
                      old_geometry.east_min_m + old_geometry.width_px * old_geometry.gsd_m, old_geometry.north_max_m],
                     [raster.east_min_m, raster.north_min_m, raster.east_max_m, raster.north_max_m]])
    factor = old_factor * max(1, math.ceil(max(box[2] - box[0], box[3] - box[1]) / g / max_px / old_factor))
    step = factor * g
    kx = math.ceil((old_geometry.east_min_m - box[0]) / step - 1e-9)
    ky = math.ceil((box[3] - old_geometry.north_max_m) / step - 1e-9)
    east_min, north_max = old_geometry.east_min_m - kx * step, old_geometry.north_max_m + ky * step
    width, height = math.ceil((box[2] - east_min) / step - 1e-9), math.ceil((north_max - box[1]) / step - 1e-9)
    rgb, alpha = np.zeros((height, width, 3), np.uint8), np.zeros((height, width), np.uint8)

    dx, dy = round((raster.east_min_m - east_min) / g), round((north_max - raster.north_max_m) / g)
    pad_x, pad_y = dx % factor, dy % factor  # pixels before the raster so its blocks fall on the lattice
    padded = raster.crop_enu(raster.east_min_m - pad_x * g, raster.north_min_m, raster.east_max_m,
                             raster.north_max_m + pad_y * g)
    small_rgb, small_alpha = _downsample(padded.image_rgb, padded.valid, factor)
    _paste(rgb, alpha, small_rgb, small_alpha, dy // factor, dx // factor)
    m = factor // old_factor
    old_small_rgb, old_small_alpha = _downsample(old_rgb, old_valid, m)
    _paste(rgb, alpha, old_small_rgb, old_small_alpha, ky, kx)
    return rgb, alpha, MapGeometry(east_min, north_max, step, width, height)


def _downsample(rgb: np.ndarray, valid: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Whole blocks of factor x factor -> (rgb, alpha 255 where at least half the block is valid)."""
    h, w = valid.shape[0] // factor, valid.shape[1] // factor
    if h == 0 or w == 0:
        return np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0), np.uint8)
    if factor == 1:
        return rgb[:h, :w], valid[:h, :w].astype(np.uint8) * 255
    small = cv2.resize(np.ascontiguousarray(rgb[:h * factor, :w * factor]), (w, h), interpolation=cv2.INTER_AREA)
    share = cv2.resize(valid[:h * factor, :w * factor].astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    return small, (share >= 0.5).astype(np.uint8) * 255


def _paste(rgb, alpha, part_rgb, part_alpha, row0: int, col0: int) -> None:
    """Copy the part's valid pixels into the canvas at (row0, col0), clipped to it."""
    h, w = min(part_alpha.shape[0], alpha.shape[0] - row0), min(part_alpha.shape[1], alpha.shape[1] - col0)
    if h <= 0 or w <= 0:
        return
    keep = part_alpha[:h, :w] > 0
    rgb[row0:row0 + h, col0:col0 + w][keep] = part_rgb[:h, :w][keep]
    alpha[row0:row0 + h, col0:col0 + w][keep] = 255
