"""Ground heights under the map: a grid of WGS84 ellipsoidal heights in the corpus ENU frame.

The ground is not at 0 m. A corpus built as if it were put a 20 m bias into every visual fix's altitude
over ground 20 m up (and rectified at the wrong height above ground over a 158 m plateau). Provisioning
therefore needs to be told the terrain: a DEM (any CRS rasterio reads, sampled onto the corpus grid), one
height for a flat area, or an explicit statement that the ground is at the ellipsoid. Heights are
ellipsoidal like ``NavSatFix.altitude``; a DEM referred to the geoid (most are: EGM96/EGM2008 heights)
needs the geoid separation of the area added (``geoid_offset_m``, N = h - H).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyproj
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from gps_denied_nav.core.geodesy import LocalTangentPlane

ELLIPSOID_DATUM = "WGS84 ellipsoidal height"
MIN_HEIGHT_M, MAX_HEIGHT_M = -1000.0, 9000.0


class TerrainError(ValueError):
    """A terrain source that cannot give the ground height everywhere on the map; names the file."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


@dataclass(frozen=True, eq=False)
class TerrainGrid:
    """Heights [rows, cols] (m) at node (r, c) = (east_min_m + c * step_m, north_max_m - r * step_m)."""

    east_min_m: float
    north_max_m: float
    step_m: float
    heights_m: np.ndarray
    datum: str = ELLIPSOID_DATUM
    source: str = ""

    def height_at(self, east_m, north_m) -> np.ndarray:
        """Bilinear height (m) at ENU points; outside the grid the nearest edge is held."""
        rows, cols = self.heights_m.shape
        c = np.clip((np.asarray(east_m, float) - self.east_min_m) / self.step_m, 0.0, cols - 1.0)
        r = np.clip((self.north_max_m - np.asarray(north_m, float)) / self.step_m, 0.0, rows - 1.0)
        c0, r0 = np.minimum(np.floor(c).astype(int), max(cols - 2, 0)), np.minimum(np.floor(r).astype(int), max(rows - 2, 0))
        c1, r1 = np.minimum(c0 + 1, cols - 1), np.minimum(r0 + 1, rows - 1)
        fc, fr = c - c0, r - r0
        h = self.heights_m
        top = h[r0, c0] * (1 - fc) + h[r0, c1] * fc
        bottom = h[r1, c0] * (1 - fc) + h[r1, c1] * fc
        return top * (1 - fr) + bottom * fr

    @property
    def range_m(self) -> tuple[float, float]:
        return float(self.heights_m.min()), float(self.heights_m.max())

    def save(self, path: Path) -> None:
        np.savez(path, heights_m=self.heights_m.astype(np.float32),
                 grid=np.array([self.east_min_m, self.north_max_m, self.step_m]),
                 datum=np.array(self.datum), source=np.array(self.source))

    @classmethod
    def load(cls, path: Path) -> TerrainGrid:
        with np.load(path, allow_pickle=False) as data:
            heights, (east_min, north_max, step) = data["heights_m"].astype(float), data["grid"]
            datum, source = str(data["datum"]), str(data["source"])
        if heights.ndim != 2 or heights.size == 0 or not np.all(np.isfinite(heights)) or not step > 0.0:
            raise TerrainError(path, "terrain grid is empty, not 2-D, not finite or has no step")
        return cls(float(east_min), float(north_max), float(step), heights, datum, source)


def grid_nodes(east_min_m: float, north_max_m: float, width_m: float, height_m: float, step_m: float):
    """(cols, rows) node counts covering the box with nodes every ``step_m`` (both edges included)."""
    return int(math.ceil(width_m / step_m)) + 1, int(math.ceil(height_m / step_m)) + 1


def flat_terrain(east_min_m, north_max_m, width_m, height_m, height_alt_m: float, step_m: float = 50.0) -> TerrainGrid:
    if not MIN_HEIGHT_M <= height_alt_m <= MAX_HEIGHT_M:
        raise ValueError(f"ground height {height_alt_m} m is outside {MIN_HEIGHT_M:g}..{MAX_HEIGHT_M:g} m")
    cols, rows = grid_nodes(east_min_m, north_max_m, width_m, height_m, step_m)
    return TerrainGrid(east_min_m, north_max_m, step_m, np.full((rows, cols), float(height_alt_m)),
                       source=f"flat at {height_alt_m:g} m")


def terrain_from_dem(dem_path, frame: LocalTangentPlane, east_min_m: float, north_max_m: float, width_m: float,
                     height_m: float, step_m: float = 50.0, geoid_offset_m: float = 0.0) -> TerrainGrid:
    """Sample a DEM (band 1, metres) onto the map's ENU box: nodes every ``step_m``, bilinear in the DEM.

    TerrainError when the DEM cannot be read, has no CRS or geotransform, does not cover the whole map,
    or has nodata (or non-finite) values under it."""
    cols, rows = grid_nodes(east_min_m, north_max_m, width_m, height_m, step_m)
    east, north = np.meshgrid(east_min_m + step_m * np.arange(cols), north_max_m - step_m * np.arange(rows))
    lat, lon, _ = frame.to_geodetic(np.stack([east.ravel(), north.ravel(), np.zeros(east.size)], axis=1))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(dem_path) as ds:
                if ds.crs is None or ds.transform.is_identity:
                    raise TerrainError(dem_path, "the DEM has no CRS or no geotransform (not georeferenced)")
                band = ds.read(1, masked=True).astype(float)
                to_dem = pyproj.Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True)
                x, y = (np.asarray(v) for v in to_dem.transform(np.asarray(lon), np.asarray(lat)))
                inv = ~ds.transform
                col_f, row_f = inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f
    except RasterioIOError as exc:
        raise TerrainError(dem_path, f"cannot read the DEM ({exc})") from exc
    col_f, row_f = np.asarray(col_f) - 0.5, np.asarray(row_f) - 0.5  # pixel centres
    h, w = band.shape
    outside = (col_f < -0.5) | (row_f < -0.5) | (col_f > w - 0.5) | (row_f > h - 0.5)
    if np.any(outside):
        share = float(np.mean(outside))
        raise TerrainError(dem_path, f"the DEM does not cover the map: {100 * share:.1f} % of the map's "
                                     f"{cols}x{rows} terrain nodes lie outside it")
    c0 = np.clip(np.floor(col_f).astype(int), 0, max(w - 2, 0))
    r0 = np.clip(np.floor(row_f).astype(int), 0, max(h - 2, 0))
    c1, r1 = np.minimum(c0 + 1, w - 1), np.minimum(r0 + 1, h - 1)
    fc, fr = np.clip(col_f - c0, 0.0, 1.0), np.clip(row_f - r0, 0.0, 1.0)
    values = band.filled(np.nan)
    corners = [values[r0, c0], values[r0, c1], values[r1, c0], values[r1, c1]]
    if any(np.any(~np.isfinite(v)) for v in corners):
        holes = int(np.sum(~np.all(np.isfinite(np.stack(corners)), axis=0)))
        raise TerrainError(dem_path, f"the DEM has nodata under the map at {holes} of {cols * rows} terrain "
                                     "nodes (fill the holes first, e.g. gdal_fillnodata)")
    top = corners[0] * (1 - fc) + corners[1] * fc
    bottom = corners[2] * (1 - fc) + corners[3] * fc
    heights = (top * (1 - fr) + bottom * fr).reshape(rows, cols) + geoid_offset_m
    if heights.min() < MIN_HEIGHT_M or heights.max() > MAX_HEIGHT_M:
        raise TerrainError(dem_path, f"DEM heights {heights.min():.1f}..{heights.max():.1f} m are not terrain "
                                     f"(expected {MIN_HEIGHT_M:g}..{MAX_HEIGHT_M:g} m: wrong band or units?)")
    return TerrainGrid(east_min_m, north_max_m, step_m, heights, source=str(dem_path))
