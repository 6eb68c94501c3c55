"""Write an RGB image on a georeferenced grid as a GeoTIFF (the only map format the project reads).

Used by everything that makes maps: the demo world, tile mosaics, orthophotos built from photos.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import Affine


def write_geotiff(path, image_rgb: np.ndarray, crs, transform: Affine, valid: np.ndarray | None = None) -> Path:
    """Write uint8 [H, W, 3] as a tiled, deflate-compressed GeoTIFF; ``valid`` [H, W] bool becomes alpha."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bands = [image_rgb[..., i] for i in range(3)] + ([] if valid is None else [valid.astype(np.uint8) * 255])
    with rasterio.open(path, "w", driver="GTiff", height=image_rgb.shape[0], width=image_rgb.shape[1],
                       count=len(bands), dtype="uint8", crs=crs, transform=transform, tiled=True, blockxsize=512,
                       blockysize=512, compress="deflate", predictor=2, zlevel=3, photometric="RGB") as dst:
        for i, band in enumerate(bands, start=1):
            dst.write(band, i)
        if valid is not None:
            dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    return path
