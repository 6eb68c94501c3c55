"""The procedural world: same seed -> same pixels, placed where its origin says in a UTM CRS, and textured
enough for SIFT nearly everywhere, as the real countryside is."""
import cv2
import numpy as np
import pyproj
import pytest
import rasterio

from gps_denied_nav.core.map_raster import load_geotiff
from gps_denied_nav.sim.world import generate_world


def _pixels(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def test_same_seed_same_world_other_seed_other_world(tmp_path):
    kw = dict(size_m=(300.0, 200.0), gsd_m=0.5)
    a = generate_world(tmp_path / "a.tif", seed=3, **kw)
    b = generate_world(tmp_path / "b.tif", seed=3, **kw)
    c = generate_world(tmp_path / "c.tif", seed=4, **kw)
    np.testing.assert_array_equal(_pixels(a), _pixels(b))
    assert (_pixels(a) != _pixels(c)).any(axis=0).mean() > 0.5


def test_world_is_utm_and_centred_on_its_origin(tmp_path):
    path = generate_world(tmp_path / "w.tif", seed=1, size_m=(400.0, 300.0), gsd_m=0.5,
                          origin_lat_deg=60.40, origin_lon_deg=22.46)
    with rasterio.open(path) as ds:
        assert ds.crs.to_epsg() == 32634 and (ds.width, ds.height) == (800, 600) and ds.count == 3
        assert ds.res == (0.5, 0.5)
        x, y = ds.transform @ (0.5 * ds.width, 0.5 * ds.height)
    lon, lat = pyproj.Transformer.from_crs("EPSG:32634", "EPSG:4326", always_xy=True).transform(x, y)
    assert abs(lat - 60.40) * 111_300 < 0.5 and abs(lon - 22.46) * 55_000 < 0.5


def test_world_is_textured_nearly_everywhere(small_world):
    raster = load_geotiff(small_world)
    gray = cv2.cvtColor(raster.image_rgb, cv2.COLOR_RGB2GRAY)
    points = np.array([k.pt for k in cv2.SIFT_create().detect(gray, None)])
    cell = int(round(100.0 / raster.gsd_m))
    counts = []
    for r0 in range(0, gray.shape[0] - cell + 1, cell):
        for c0 in range(0, gray.shape[1] - cell + 1, cell):
            if raster.valid[r0:r0 + cell, c0:c0 + cell].mean() > 0.9:
                inside = (points >= (c0, r0)) & (points < (c0 + cell, r0 + cell))
                counts.append(inside.all(axis=1).sum())
    assert len(counts) >= 20
    assert np.mean(np.array(counts) >= 40) >= 0.9  # per 100 m x 100 m of map
    mean_rgb = raster.image_rgb[raster.valid].mean(axis=0)
    assert mean_rgb[1] > mean_rgb[2] and 40 < mean_rgb.mean() < 170  # vegetation-green, not blown out


@pytest.mark.parametrize("gsd_m", [0.25, 1.0])
def test_other_resolutions_generate(tmp_path, gsd_m):
    path = generate_world(tmp_path / "w.tif", seed=2, size_m=(250.0, 250.0), gsd_m=gsd_m)
    assert _pixels(path).shape == (3, int(250 / gsd_m), int(250 / gsd_m))
