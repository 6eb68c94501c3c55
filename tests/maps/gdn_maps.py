"""Shared helpers of the map-fetch tests: run ``gdn fetch-map``/``fetch-dem`` in-process, and the expected
EPSG:3857 grid of a bbox computed independently of ``maps.xyz`` (straight from the web-mercator formulas)."""
from __future__ import annotations

import argparse
import contextlib
import io
import math

import numpy as np

R_M = 6378137.0
HALF_M = math.pi * R_M


def run_gdn(*argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``gdn ARGV``, with gdn's own error handling (exit 2 and a message)."""
    from gps_denied_nav import cli, cli_maps

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "fetch-map" not in sub.choices:  # until cli.py registers the map commands itself
        cli_maps.add_parser(sub)
    args = parser.parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = args.func(args)
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            print(f"gdn {args.command}: error: {exc}", file=err)
            code = 2
    return code, out.getvalue(), err.getvalue()


def lonlat_to_3857_m(lon_deg: float, lat_deg: float) -> tuple[float, float]:
    return R_M * math.radians(lon_deg), R_M * math.log(math.tan(math.pi / 4 + math.radians(lat_deg) / 2))


def expected_grid(bbox, zoom: int, tile_px: int = 256):
    """(pixel size m, bounds (left, bottom, right, top) snapped outward to the zoom's pixel grid, north-west
    tile (x, y))."""
    res_m = 2 * HALF_M / (tile_px * 2 ** zoom)
    (x_w, y_n), (x_e, y_s) = lonlat_to_3857_m(bbox[0], bbox[3]), lonlat_to_3857_m(bbox[2], bbox[1])
    col0, col1 = math.floor((x_w + HALF_M) / res_m), math.ceil((x_e + HALF_M) / res_m)
    row0, row1 = math.floor((HALF_M - y_n) / res_m), math.ceil((HALF_M - y_s) / res_m)
    bounds = (col0 * res_m - HALF_M, HALF_M - row1 * res_m, col1 * res_m - HALF_M, HALF_M - row0 * res_m)
    return res_m, bounds, (col0 // tile_px, row0 // tile_px)


def textured_rgba(height_px: int, width_px: int, seed: int = 3) -> np.ndarray:
    """uint8 [H, W, 4], opaque: multi-scale texture with blobs, enough for SIFT and a descriptor."""
    import cv2

    rng = np.random.default_rng(seed)
    image = np.zeros((height_px, width_px, 3), np.float32)
    for cells, weight in ((6, 1.0), (24, 0.6), (96, 0.5)):
        grid = rng.uniform(0, 1, (cells, cells, 3)).astype(np.float32)
        image += weight * cv2.resize(grid, (width_px, height_px), interpolation=cv2.INTER_CUBIC)
    image = (255 * (image - image.min()) / (image.max() - image.min())).astype(np.uint8)
    for x, y, w in rng.integers(0, max(height_px, width_px), (width_px * height_px // 300, 3)):
        cv2.rectangle(image, (int(x), int(y)), (int(x + 2 + w % 5), int(y + 2 + w % 4)),
                      rng.integers(0, 255, 3).tolist(), -1)
    return np.dstack([image, np.full((height_px, width_px), 255, np.uint8)])
