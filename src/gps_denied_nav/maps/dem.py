"""Terrain tiles into heights in metres, and the vertical datum those heights are in.

Terrain tile servers pack a height into a PNG pixel's RGB; the user states which packing (nothing in the
tile says). Both are exact in float32 for terrarium (multiples of 1/256 m below 2^15 m) and to float32
rounding for terrain-RGB (0.1 m steps). Lossy JPEG tiles cannot carry either packing and are refused.

Provisioning takes WGS84 ellipsoidal heights (``core.terrain``): it adds ``--geoid-offset-m`` N = h - H to
a DEM and cannot know on its own whether N is due. Most terrain tiles hold geoid (orthometric) heights, so
the fetched DEM records the datum the user states (``VERTICAL_DATUM`` tag), and ``check_vertical_datum``
refuses a geoid DEM provisioned without N. No geoid grid ships with pyproj here, so nothing is converted.
"""
from __future__ import annotations

import numpy as np

ENCODINGS = ("terrarium", "mapbox-terrain-rgb")
VERTICAL_DATUMS = ("egm96", "egm2008", "ellipsoid")  # ellipsoid: WGS84 ellipsoidal heights already
GEOID_DATUMS = ("egm96", "egm2008")
DEM_NODATA_M = -32768.0  # terrarium's (0, 0, 0) pixel: the usual "no data" of terrain tiles
VERTICAL_DATUM_TAG = "VERTICAL_DATUM"


def decode_terrarium(rgb: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] -> float32 [...] metres: h = R * 256 + G + B / 256 - 32768 (Mapzen/AWS Terrain Tiles)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return (r * 256.0 + g + b / 256.0 - 32768.0).astype(np.float32)


def decode_terrain_rgb(rgb: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] -> float32 [...] metres: h = -10000 + (R * 65536 + G * 256 + B) * 0.1 (Mapbox Terrain-RGB)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return (-10000.0 + (r * 65536.0 + g * 256.0 + b) * 0.1).astype(np.float32)


DECODERS = {"terrarium": decode_terrarium, "mapbox-terrain-rgb": decode_terrain_rgb}


def dem_pixels(image, tile_px: int, encoding: str) -> np.ndarray:
    """A decoded terrain tile as float32 [tile_px, tile_px, 1] metres; transparent pixels become nodata."""
    if image.format == "JPEG":
        raise ValueError(f"a JPEG terrain tile: lossy compression destroys {encoding} heights (want PNG or "
                         "lossless WebP)")
    if image.size != (tile_px, tile_px):
        raise ValueError(f"tile of {image.size[0]}x{image.size[1]} px among tiles of {tile_px} px")
    rgba = np.asarray(image.convert("RGBA"))
    heights_m = DECODERS[encoding](rgba[..., :3])
    heights_m[rgba[..., 3] == 0] = DEM_NODATA_M
    return heights_m[..., None]


def check_vertical_datum(dem_path, geoid_offset_m: float) -> str | None:
    """The DEM's recorded vertical datum (None when it records none); ValueError when it records geoid
    heights and no geoid separation is given, since provisioning would put the ground N metres off."""
    import rasterio  # here, not at the top: `gdn --help` reads ENCODINGS from this module
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(dem_path) as ds:
            datum = ds.tags().get(VERTICAL_DATUM_TAG)
    except RasterioIOError:
        return None  # unreadable: terrain_from_dem reports it, with the file and the reason
    if datum in GEOID_DATUMS and geoid_offset_m == 0.0:
        raise ValueError(f"{dem_path}: heights are {datum.upper()} geoid heights, provisioning needs WGS84 "
                         "ellipsoidal ones: give --geoid-offset-m N, the area's geoid separation N = h - H "
                         "(e.g. from GeographicLib's GeoidEval for that model)")
    return datum
