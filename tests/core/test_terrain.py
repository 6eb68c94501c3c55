"""Terrain under the map: DEM sampling in another CRS (with a geoid offset), flat ground, and the bad DEMs
that must fail provisioning with the file and the numbers."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.terrain import TerrainError, TerrainGrid, flat_terrain, terrain_from_dem

FRAME = LocalTangentPlane(60.40, 22.46, 0.0)
BOX = (-300.0, 300.0, 600.0, 600.0)  # east_min, north_max, width, height (m)


def write_dem(path, heights: np.ndarray, west_deg=22.44, north_deg=60.41, step_deg=(1e-4, 5e-5), crs="EPSG:4326",
              nodata=None):
    profile = dict(driver="GTiff", width=heights.shape[1], height=heights.shape[0], count=1, dtype="float32")
    if crs is not None:
        profile.update(crs=crs, transform=from_origin(west_deg, north_deg, *step_deg))
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(heights.astype(np.float32), 1)
    return path


def sloped(rows=500, cols=500):
    """Heights rising 1 m per column (eastwards) from 100 m: a slope of ~1:5.5 at 5.5 m per column."""
    return 100.0 + np.tile(np.arange(cols, dtype=float), (rows, 1))


def test_flat_terrain_and_bilinear_lookup():
    grid = flat_terrain(*BOX, 37.0, step_m=50.0)
    assert grid.heights_m.shape == (13, 13) and grid.range_m == (37.0, 37.0)
    assert float(grid.height_at(0.0, 0.0)) == 37.0 and float(grid.height_at(1e6, -1e6)) == 37.0
    ramp = TerrainGrid(0.0, 100.0, 50.0, np.array([[0.0, 10.0], [20.0, 30.0]]))
    assert float(ramp.height_at(25.0, 75.0)) == pytest.approx(15.0)


def test_dem_in_geographic_coordinates_is_sampled_onto_the_map_with_the_geoid_offset(tmp_path):
    dem = write_dem(tmp_path / "dem.tif", sloped())
    grid = terrain_from_dem(dem, FRAME, *BOX, step_m=50.0, geoid_offset_m=18.5)
    lat, lon, _ = FRAME.to_geodetic(np.array([[100.0, -200.0, 0.0]]))
    expected = 100.0 + (lon[0] - 22.44) / 1e-4 - 0.5 + 18.5  # bilinear between pixel centres
    assert float(grid.height_at(100.0, -200.0)) == pytest.approx(expected, abs=0.3)
    assert grid.range_m[1] - grid.range_m[0] > 90.0  # the slope is there: ~108 m across 600 m
    saved = tmp_path / "terrain.npz"
    grid.save(saved)
    again = TerrainGrid.load(saved)
    assert float(again.height_at(100.0, -200.0)) == pytest.approx(float(grid.height_at(100.0, -200.0)), abs=1e-3)


def test_bad_dems_fail_with_the_file_and_the_numbers(tmp_path):
    small = write_dem(tmp_path / "small.tif", sloped(40, 40))
    with pytest.raises(TerrainError, match=r"small.tif: the DEM does not cover the map: .* % of"):
        terrain_from_dem(small, FRAME, *BOX)
    holes = sloped()
    holes[150:170, 200:230] = -9999.0
    holed = write_dem(tmp_path / "holes.tif", holes, nodata=-9999.0)
    with pytest.raises(TerrainError, match=r"holes.tif: the DEM has nodata under the map at \d+ of"):
        terrain_from_dem(holed, FRAME, *BOX)
    plain = write_dem(tmp_path / "plain.tif", sloped(), crs=None)
    with pytest.raises(TerrainError, match="plain.tif: the DEM has no CRS"):
        terrain_from_dem(plain, FRAME, *BOX)
    feet = write_dem(tmp_path / "wrong_units.tif", sloped() * 1000.0)
    with pytest.raises(TerrainError, match="not terrain"):
        terrain_from_dem(feet, FRAME, *BOX)
    with pytest.raises(TerrainError, match="cannot read"):
        terrain_from_dem(tmp_path / "missing.tif", FRAME, *BOX)
