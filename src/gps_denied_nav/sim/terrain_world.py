"""Demo terrain that is not flat: a sloped height field under a map, and a DEM GeoTIFF of it.

The navigation code must cope with ground that rises and falls under an aircraft holding baro altitude,
and provisioning reads terrain from DEMs. ``sloped_terrain`` makes such ground for any map raster (a
plane of given grade plus one or two smooth hills, deterministic from a seed), the simulator renders
flights over it (``FlightConfig.over_terrain``), and ``write_dem_geotiff`` writes it as the kind of DEM
``core.terrain.terrain_from_dem`` reads, in EPSG:4326 or any other CRS (e.g. ``utm_crs(frame)``), so the
whole chain from a DEM file to rendered frames can be exercised without downloading one.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyproj
import rasterio
from rasterio.transform import Affine

from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.map_raster import MapRaster
from gps_denied_nav.core.terrain import TerrainGrid, grid_nodes

DEM_NODATA = -32768.0
_DEM_MARGIN_PX = 2  # beyond the terrain box, so that bilinear reads at its edge stay inside the DEM


def sloped_terrain(raster: MapRaster, mean_alt_m: float, grade: float = 0.04, grade_azimuth_deg: float = 60.0,
                   hill_m: float = 6.0, step_m: float = 25.0, seed: int = 0) -> TerrainGrid:
    """Heights (WGS84 ellipsoidal, m) over the raster's ENU box plus one ``step_m`` all round.

    A plane rising ``grade`` (m per m) towards ``grade_azimuth_deg`` (clockwise from north), plus one or
    two Gaussian hills of ``hill_m`` (m) with widths (sigma) of 20-35 % of the map's shorter side, placed in its
    middle 60 % from ``seed``; then shifted so that the mean over the grid nodes is ``mean_alt_m``.
    Nodes every ``step_m`` (m) on the raster's ENU grid (``raster.frame``).
    """
    east_min_m, north_max_m = raster.east_min_m - step_m, raster.north_max_m + step_m
    cols, rows = grid_nodes(east_min_m, north_max_m, raster.width_m + 2 * step_m, raster.height_m + 2 * step_m,
                            step_m)
    east_m, north_m = np.meshgrid(east_min_m + step_m * np.arange(cols), north_max_m - step_m * np.arange(rows))
    azimuth_rad = math.radians(grade_azimuth_deg)
    heights_m = grade * (east_m * math.sin(azimuth_rad) + north_m * math.cos(azimuth_rad))
    rng = np.random.default_rng(seed)
    side_m = min(raster.width_m, raster.height_m)
    for _ in range(int(rng.integers(1, 3))):
        centre_e_m = raster.east_min_m + rng.uniform(0.2, 0.8) * raster.width_m
        centre_n_m = raster.north_min_m + rng.uniform(0.2, 0.8) * raster.height_m
        sigma_m = rng.uniform(0.2, 0.35) * side_m
        r2_m2 = (east_m - centre_e_m) ** 2 + (north_m - centre_n_m) ** 2
        heights_m += hill_m * np.exp(-0.5 * r2_m2 / sigma_m**2)
    heights_m += mean_alt_m - heights_m.mean()
    return TerrainGrid(east_min_m, north_max_m, step_m, heights_m,
                       source=f"sloped: grade {grade:g} towards {grade_azimuth_deg:g} deg, hills {hill_m:g} m, "
                              f"seed {seed}")


def utm_crs(frame: LocalTangentPlane) -> str:
    """'EPSG:326zz' / 'EPSG:327zz': the WGS84 UTM zone of the frame's origin."""
    zone = int((frame.origin_lon_deg + 180.0) // 6.0) + 1
    return f"EPSG:{(32600 if frame.origin_lat_deg >= 0 else 32700) + zone}"


def write_dem_geotiff(terrain: TerrainGrid, frame: LocalTangentPlane, path, crs: str = "EPSG:4326",
                      pixel_m: float = 10.0) -> Path:
    """Write ``terrain`` as a single-band float32 DEM GeoTIFF in ``crs``; returns its path.

    frame: the ENU frame of the terrain's grid. Pixels are about ``pixel_m`` (m) on the ground at the box
    centre (in degrees for a geographic CRS); the raster covers the terrain's node box plus two pixels,
    each holding the terrain's bilinear height at its centre (ellipsoidal, so read it back with
    ``geoid_offset_m=0``). Nodata is declared (``DEM_NODATA``) though no pixel holds it.
    """
    path = Path(path)
    rows, cols = terrain.heights_m.shape
    east_max_m = terrain.east_min_m + (cols - 1) * terrain.step_m
    north_min_m = terrain.north_max_m - (rows - 1) * terrain.step_m
    to_crs = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    from_crs = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)

    def crs_xy(east_m, north_m):
        lat, lon, _ = frame.to_geodetic(np.stack([east_m, north_m, np.zeros_like(east_m)], axis=-1))
        return (np.asarray(a) for a in to_crs.transform(lon, lat))

    # CRS units per ground metre at the centre, along the CRS axes (degrees for EPSG:4326, ~1 for UTM).
    ce, cn = 0.5 * (terrain.east_min_m + east_max_m), 0.5 * (north_min_m + terrain.north_max_m)
    x, y = crs_xy(np.array([ce, ce + 1.0, ce]), np.array([cn, cn, cn + 1.0]))
    dx = pixel_m * math.hypot(x[1] - x[0], x[2] - x[0])
    dy = pixel_m * math.hypot(y[1] - y[0], y[2] - y[0])
    s = np.linspace(0.0, 1.0, 33)
    outline_e = np.concatenate([terrain.east_min_m + s * (east_max_m - terrain.east_min_m),
                                np.full_like(s, east_max_m), east_max_m - s * (east_max_m - terrain.east_min_m),
                                np.full_like(s, terrain.east_min_m)])
    outline_n = np.concatenate([np.full_like(s, terrain.north_max_m),
                                terrain.north_max_m - s * (terrain.north_max_m - north_min_m),
                                np.full_like(s, north_min_m), north_min_m + s * (terrain.north_max_m - north_min_m)])
    x, y = crs_xy(outline_e, outline_n)
    west, north = x.min() - _DEM_MARGIN_PX * dx, y.max() + _DEM_MARGIN_PX * dy
    width = int(math.ceil((x.max() - x.min()) / dx)) + 2 * _DEM_MARGIN_PX
    height = int(math.ceil((y.max() - y.min()) / dy)) + 2 * _DEM_MARGIN_PX
    transform = Affine(dx, 0.0, west, 0.0, -dy, north)
    px, py = np.meshgrid(west + (np.arange(width) + 0.5) * dx, north - (np.arange(height) + 0.5) * dy)
    lon, lat = from_crs.transform(px, py)
    enu = frame.to_enu(np.asarray(lat), np.asarray(lon), 0.0)
    dem = terrain.height_at(enu[..., 0], enu[..., 1]).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=1, dtype="float32", crs=crs,
                       transform=transform, nodata=DEM_NODATA, compress="deflate", predictor=3) as dst:
        dst.write(dem, 1)
    return path
