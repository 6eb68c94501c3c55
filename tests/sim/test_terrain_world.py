"""The sloped demo terrain has the grade, direction, hills and mean it is asked for, and its DEM GeoTIFF is a
real georeferenced raster that core.terrain.terrain_from_dem reads back to the same heights."""
import numpy as np
import pytest
import rasterio

from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.map_raster import MapRaster
from gps_denied_nav.core.terrain import terrain_from_dem
from gps_denied_nav.sim.terrain_world import DEM_NODATA, sloped_terrain, utm_crs, write_dem_geotiff

FRAME = LocalTangentPlane(60.40, 22.46, 0.0)


def _raster(size_m: float = 300.0, gsd_m: float = 0.5) -> MapRaster:
    n = int(round(size_m / gsd_m))
    return MapRaster(np.zeros((n, n, 3), np.uint8), np.ones((n, n), bool), gsd_m, -0.5 * size_m, 0.5 * size_m, FRAME)


def _nodes_en(terrain):
    rows, cols = terrain.heights_m.shape
    return np.meshgrid(terrain.east_min_m + terrain.step_m * np.arange(cols),
                       terrain.north_max_m - terrain.step_m * np.arange(rows))


def test_plane_has_the_grade_towards_the_azimuth_and_the_mean():
    raster = _raster()
    terrain = sloped_terrain(raster, 35.0, grade=0.04, grade_azimuth_deg=60.0, hill_m=0.0, step_m=25.0)
    # The grid covers the map plus one step all round.
    assert terrain.east_min_m == raster.east_min_m - 25.0 and terrain.north_max_m == raster.north_max_m + 25.0
    east, north = _nodes_en(terrain)
    assert east[0, -1] >= raster.east_max_m + 25.0 and north[-1, 0] <= raster.north_min_m - 25.0
    assert terrain.heights_m.mean() == pytest.approx(35.0)
    design = np.column_stack([east.ravel(), north.ravel(), np.ones(east.size)])
    (g_east, g_north, _), *_ = np.linalg.lstsq(design, terrain.heights_m.ravel(), rcond=None)
    np.testing.assert_allclose([g_east, g_north], 0.04 * np.array([np.sin(np.radians(60.0)), np.cos(np.radians(60.0))]),
                               atol=1e-9)


def test_hills_are_smooth_seeded_and_keep_the_mean():
    raster = _raster()
    plane = sloped_terrain(raster, 35.0, hill_m=0.0)
    hilly = sloped_terrain(raster, 35.0, hill_m=6.0, seed=4)
    assert hilly.heights_m.mean() == pytest.approx(35.0)
    hills = hilly.heights_m - plane.heights_m
    assert 3.0 < np.ptp(hills) <= 12.0
    np.testing.assert_array_equal(sloped_terrain(raster, 35.0, seed=4).heights_m, hilly.heights_m)
    assert np.abs(sloped_terrain(raster, 35.0, seed=5).heights_m - hilly.heights_m).max() > 0.5
    # Gentle enough for the ray caster: slopes well under the 1 / 0.75 its nadir camera needs.
    slope = np.hypot(*np.gradient(hilly.heights_m, hilly.step_m))
    assert slope.max() < 0.15


@pytest.mark.parametrize("utm, pixel_m, tolerance_m", [(False, 10.0, 0.2), (True, 5.0, 0.1)])
def test_dem_round_trip(tmp_path, utm, pixel_m, tolerance_m):
    raster = _raster()
    terrain = sloped_terrain(raster, 35.0, seed=0)
    crs = utm_crs(FRAME) if utm else "EPSG:4326"
    path = write_dem_geotiff(terrain, FRAME, tmp_path / "dem.tif", crs=crs, pixel_m=pixel_m)
    with rasterio.open(path) as ds:
        assert ds.count == 1 and ds.dtypes[0] == "float32" and ds.nodata == DEM_NODATA
        assert ds.crs.to_epsg() == (32634 if utm else 4326) and not ds.transform.is_identity
        assert (ds.read(1) != DEM_NODATA).all()
    # Nodes every 7 m fall between DEM pixel centres, where the DEM has to interpolate.
    back = terrain_from_dem(path, FRAME, raster.east_min_m, raster.north_max_m, raster.width_m, raster.height_m,
                            step_m=7.0)
    east, north = _nodes_en(back)
    assert np.abs(back.heights_m - terrain.height_at(east, north)).max() < tolerance_m
    # The DEM covers the terrain's whole grid, not just the map.
    rows, cols = terrain.heights_m.shape
    whole = terrain_from_dem(path, FRAME, terrain.east_min_m, terrain.north_max_m, (cols - 1) * terrain.step_m,
                             (rows - 1) * terrain.step_m, step_m=terrain.step_m)
    assert np.abs(whole.heights_m - terrain.heights_m).max() < 2 * tolerance_m
