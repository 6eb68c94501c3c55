"""The real Turku tiles become one georeferenced GeoTIFF: sensible size and resolution, gaps where tiles
are missing, and a tile's content found in the ENU raster exactly where its CSV corners put it."""
import cv2
import numpy as np
import pytest
import rasterio

from gps_denied_nav.core.map_raster import load_geotiff
from gps_denied_nav.sim.import_tiles import mosaic_tiles_to_geotiff, read_tile_csv


@pytest.fixture(scope="module")
def turku(turku_dir, tmp_path_factory):
    csv_path = turku_dir / "map" / "map.csv"
    tif = mosaic_tiles_to_geotiff(csv_path, tmp_path_factory.mktemp("turku") / "turku.tif")
    return read_tile_csv(csv_path), tif, load_geotiff(tif)


def test_mosaic_is_a_wgs84_geotiff_with_sensible_size_and_gsd(turku):
    tiles, tif, raster = turku
    with rasterio.open(tif) as ds:
        assert ds.crs.to_epsg() == 4326 and ds.count == 4
    assert 0.12 < raster.gsd_m < 0.16
    assert raster.width_m == pytest.approx(600.0, abs=20.0) and raster.height_m == pytest.approx(865.0, abs=20.0)
    present = sum(t[0].exists() for t in tiles)
    assert present == 12 and len(tiles) == 15
    assert raster.valid.mean() == pytest.approx(present / len(tiles), abs=0.03)


def test_missing_tile_is_nodata_and_present_tile_lands_where_its_corners_say(turku):
    tiles, _, raster = turku
    by_name = {t[0].name: t for t in tiles}
    _, top, left, bottom, right = by_name["sat_map_07.png"]  # listed, file absent
    east, north, _ = raster.frame.to_enu(0.5 * (top + bottom), 0.5 * (left + right), 0.0)
    c, r = (int(round(v)) for v in raster.enu_to_pixel(east, north))
    assert not raster.valid[r - 50:r + 50, c - 50:c + 50].any()

    path, top, left, bottom, right = by_name["sat_map_04.png"]
    png = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY)
    h, w = png.shape
    u, v, half = int(0.4 * w), int(0.6 * h), 64
    lat = top - (v + 0.5) / h * (top - bottom)
    lon = left + (u + 0.5) / w * (right - left)
    e, n, _ = raster.frame.to_enu(lat, lon, 0.0)
    expect = np.array(raster.enu_to_pixel(e, n))
    # A 128 px patch around (u, v) resampled to the raster's pixels: patch i <- png u - 64 + (i + 0.5) / sx - 0.5.
    size_e = np.linalg.norm(raster.frame.to_enu(top, right, 0.0) - raster.frame.to_enu(top, left, 0.0))
    size_n = np.linalg.norm(raster.frame.to_enu(bottom, left, 0.0) - raster.frame.to_enu(top, left, 0.0))
    sx, sy = size_e / w / raster.gsd_m, size_n / h / raster.gsd_m
    warp = np.array([[1 / sx, 0.0, u - half + 0.5 / sx - 0.5], [0.0, 1 / sy, v - half + 0.5 / sy - 0.5]])
    patch = cv2.warpAffine(png, warp, (2 * half, 2 * half), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    c0, r0, s = int(expect[0]) - 100, int(expect[1]) - 100, 2 * half + 200
    window = cv2.cvtColor(raster.image_rgb[r0:r0 + s, c0:c0 + s], cv2.COLOR_RGB2GRAY)
    score = cv2.matchTemplate(window, patch, cv2.TM_CCOEFF_NORMED)
    _, best, _, (bx, by) = cv2.minMaxLoc(score)

    def vertex(a, b, c):  # sub-pixel peak of a parabola through three scores
        return 0.5 * (a - c) / (a - 2 * b + c)

    dx, dy = vertex(*score[by, bx - 1:bx + 2]), vertex(*score[by - 1:by + 2, bx])
    found = np.array([c0 + bx + dx + (half + 0.5) * sx - 0.5, r0 + by + dy + (half + 0.5) * sy - 0.5])
    assert best > 0.9
    assert np.linalg.norm(found - expect) < 0.3
