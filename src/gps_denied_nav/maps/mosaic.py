"""Cached tiles into one Cloud Optimized GeoTIFF on the tile grid's exact EPSG:3857 geotransform.

The tiles are written a row of tiles at a time (memory: one strip, not the whole map) into a staging GTiff
beside the output, which GDAL's COG driver then copies with 512 px blocks and internal overviews (a
provision or a viewer reads any zoom without decoding the whole map). The result replaces the output in one
``os.replace``: an interrupted or failed run never leaves a partial map under the output's name.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import mercantile
import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import ColorInterp
from rasterio.transform import Affine

from gps_denied_nav.maps.xyz import BBox, TileBlock

BLOCK_PX = 512


def write_cog(out_path, block: TileBlock, bbox: BBox, tile_px: int, read_tile: Callable, *, bands: int,
              dtype: str, fill, tags: dict, compress: str = "deflate", nodata: float | None = None,
              overview_resampling: str = "average") -> tuple[Path, tuple[float, float, float, float]]:
    """Mosaic ``block``'s tiles, cropped to the whole pixels ``bbox`` touches, into a COG at ``out_path``.

    read_tile(tile) -> [tile_px, tile_px, bands] array of ``dtype``, or None where there is no tile (filled
    with ``fill`` per band: alpha 0 for RGBA imagery, ``nodata`` for a DEM). bands == 4 is RGB + alpha.
    compress: "deflate" (lossless) or "jpeg" (RGB, alpha kept as a mask). Returns (path, EPSG:3857 bounds
    (left, bottom, right, top) in metres)."""
    out_path = Path(out_path)
    col_off, row_off, width, height = block.crop_window(bbox, tile_px)
    transform = block.transform(tile_px) @ Affine.translation(col_off, row_off)
    stage = out_path.with_name(f".{out_path.name}.{os.getpid()}.stage.tif")
    partial = out_path.with_name(f".{out_path.name}.{os.getpid()}.partial.tif")
    profile = dict(driver="GTiff", width=width, height=height, count=bands, dtype=dtype, crs="EPSG:3857",
                   transform=transform, tiled=True, blockxsize=BLOCK_PX, blockysize=BLOCK_PX, compress="deflate",
                   zlevel=1, nodata=nodata, bigtiff="IF_SAFER")
    if bands == 4:
        profile.update(photometric="RGB", alpha="YES")
    fill_value = np.asarray(fill, dtype=dtype)
    try:
        with rasterio.open(stage, "w", **profile) as dst:
            for ty in range(block.y_min, block.y_max + 1):
                strip_top = (ty - block.y_min) * tile_px - row_off  # strip rows in output pixels
                r0, r1 = max(0, strip_top), min(height, strip_top + tile_px)
                if r1 <= r0:
                    continue
                strip = np.empty((r1 - r0, width, bands), dtype)
                strip[...] = fill_value
                for tx in range(block.x_min, block.x_max + 1):
                    left = (tx - block.x_min) * tile_px - col_off
                    c0, c1 = max(0, left), min(width, left + tile_px)
                    if c1 <= c0:
                        continue
                    pixels = read_tile(mercantile.Tile(tx, ty, block.zoom))
                    if pixels is not None:
                        strip[:, c0:c1] = pixels[r0 - strip_top:r1 - strip_top, c0 - left:c1 - left]
                dst.write(np.moveaxis(strip, -1, 0), window=((r0, r1), (0, width)))
            if bands == 4:
                dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
            dst.update_tags(**{k: str(v) for k, v in tags.items()})
            bounds = tuple(dst.bounds)
        options = dict(COMPRESS=compress.upper(), BLOCKSIZE=BLOCK_PX, OVERVIEW_RESAMPLING=overview_resampling.upper(),
                       BIGTIFF="IF_SAFER")
        if compress == "deflate":
            options["PREDICTOR"] = "YES"  # horizontal differencing: smaller files, still lossless
        elif compress == "jpeg":
            options["QUALITY"] = 90
        else:
            raise ValueError(f"compression {compress!r}: want deflate or jpeg")
        rasterio.shutil.copy(stage, partial, driver="COG", **options)
        os.replace(partial, out_path)
    finally:
        stage.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return out_path, bounds


def rgba_pixels(image, tile_px: int) -> np.ndarray:
    """A decoded tile as uint8 [tile_px, tile_px, 4]: palette, grey and RGB become RGBA (alpha 255 where the
    tile has none), so a server's transparent "no data" pixels stay invalid in the map."""
    if image.size != (tile_px, tile_px):
        raise ValueError(f"tile of {image.size[0]}x{image.size[1]} px among tiles of {tile_px} px")
    return np.asarray(image.convert("RGBA"))
