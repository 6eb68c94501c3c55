"""Imagery into GeoTIFFs: a mosaic of north-up PNG tiles with lat/lon corners.

The project reads orthophotos only as GeoTIFFs. Public satellite-tile sets such as the Turku data ship as
PNGs plus a wildnav-style CSV of corner coordinates, so this turns such a set into one EPSG:4326 GeoTIFF
(an alpha band marks where no tile landed, e.g. tiles listed but missing). Each tile is warped onto the
mosaic grid by its own corners with an exact scale-and-shift affine, so tiles whose corners do not line
up to the pixel still land where their CSV says.
"""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
from rasterio.transform import Affine

from gps_denied_nav.core.geotiff_writer import write_geotiff


def read_tile_csv(csv_path) -> list[tuple[Path, float, float, float, float]]:
    """Rows of ``Filename, Top_left_lat, Top_left_lon, Bottom_right_lat, Bottom_right_long`` ->
    [(png_path, top_lat_deg, left_lon_deg, bottom_lat_deg, right_lon_deg)], paths beside the CSV."""
    csv_path = Path(csv_path)
    with open(csv_path, newline="") as f:
        rows = [[cell.strip().strip('"') for cell in row] for row in csv.reader(f, skipinitialspace=True)]
    tiles = []
    for row in rows[1:]:
        if len(row) >= 5 and row[0]:
            tiles.append((csv_path.parent / row[0], *(float(v) for v in row[1:5])))
    if not tiles:
        raise ValueError(f"{csv_path}: no tile rows")
    return tiles


def mosaic_tiles_to_geotiff(csv_path, out_path) -> Path:
    """Write one EPSG:4326 RGB GeoTIFF (with alpha) covering every tile listed in ``csv_path``.

    The mosaic's pixel size in degrees is the median of the present tiles' own; listed tiles whose file
    is missing leave transparent nodata. Returns ``out_path``.
    """
    tiles = read_tile_csv(csv_path)
    present = [t for t in tiles if t[0].exists()]
    if not present:
        raise FileNotFoundError(f"{csv_path}: none of the {len(tiles)} listed tiles exists")
    images = {t[0]: cv2.cvtColor(cv2.imread(str(t[0]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for t in present}
    dlon = float(np.median([(t[4] - t[2]) / images[t[0]].shape[1] for t in present]))
    dlat = float(np.median([(t[1] - t[3]) / images[t[0]].shape[0] for t in present]))
    lat_max, lon_min = max(t[1] for t in tiles), min(t[2] for t in tiles)
    lat_min, lon_max = min(t[3] for t in tiles), max(t[4] for t in tiles)
    width, height = int(round((lon_max - lon_min) / dlon)), int(round((lat_max - lat_min) / dlat))
    mosaic = np.zeros((height, width, 3), np.uint8)
    valid = np.zeros((height, width), bool)
    for path, top, left, bottom, right in present:
        img = images[path]
        sx = (right - left) / dlon / img.shape[1]
        sy = (top - bottom) / dlat / img.shape[0]
        # Tile pixel edges (0 and w) go to mosaic edges (left - lon_min) / dlon; centres follow.
        tx, ty = (left - lon_min) / dlon, (lat_max - top) / dlat
        warp = np.array([[sx, 0.0, tx + 0.5 * sx - 0.5], [0.0, sy, ty + 0.5 * sy - 0.5]])
        c0, r0 = max(int(np.floor(tx)) - 1, 0), max(int(np.floor(ty)) - 1, 0)
        c1 = min(int(np.ceil(tx + sx * img.shape[1])) + 1, width)
        r1 = min(int(np.ceil(ty + sy * img.shape[0])) + 1, height)
        warp[:, 2] -= (c0, r0)
        size = (c1 - c0, r1 - r0)
        # Neighbouring tiles' corners differ by fractions of a pixel: a pixel at least half covered
        # belongs to the tile (its edge colour replicated), so seams leave neither black lines nor gaps.
        patch = cv2.warpAffine(img, warp, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        inside = cv2.warpAffine(np.full(img.shape[:2], 255, np.uint8), warp, size, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT) >= 128
        mosaic[r0:r1, c0:c1][inside] = patch[inside]
        valid[r0:r1, c0:c1] |= inside
    return write_geotiff(out_path, mosaic, "EPSG:4326", Affine(dlon, 0.0, lon_min, 0.0, -dlat, lat_max), valid)
