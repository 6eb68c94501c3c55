"""``gdn fetch-map`` on real imagery: the Turku satellite tiles, cut into zoom-18 web-mercator tiles and
served locally, come back as a COG whose pixels are the served tiles' and whose content sits where the
original tiles' corner coordinates say (skipped without the shared data)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, reproject

from gdn_maps import expected_grid, lonlat_to_3857_m, run_gdn
from tile_server import TileServer, png_tiles

from gps_denied_nav.maps.xyz import BBox, tile_block
from gps_denied_nav.sim.import_tiles import mosaic_tiles_to_geotiff, read_tile_csv

ZOOM = 18
BBOX = (22.4610, 60.4012, 22.4668, 60.4036)  # inside sat_map_00..03
NAMES = ("sat_map_00.png", "sat_map_01.png", "sat_map_02.png", "sat_map_03.png")


@pytest.fixture(scope="module")
def turku_tiles(turku_dir, tmp_path_factory):
    """(block raster uint8 [H, W, 4] in EPSG:3857, {(z, x, y): PNG}, block, CSV rows of the four tiles)."""
    rows = [r for r in read_tile_csv(turku_dir / "map" / "map.csv") if r[0].name in NAMES]
    work = tmp_path_factory.mktemp("turku_xyz")
    csv_path = work / "four.csv"
    csv_path.write_text("Filename, Top_left_lat,Top_left_lon,Bottom_right_lat,Bottom_right_long\n"
                        + "".join(f'"{r[0]}",{r[1]},{r[2]},{r[3]},{r[4]}\n' for r in rows))
    mosaic = mosaic_tiles_to_geotiff(csv_path, work / "four.tif")
    block = tile_block(BBox(*BBOX), ZOOM)
    height, width = (block.y_max - block.y_min + 1) * 256, (block.x_max - block.x_min + 1) * 256
    out = np.zeros((4, height, width), np.uint8)
    with rasterio.open(mosaic) as src:
        reproject(src.read(), out, src_transform=src.transform, src_crs=src.crs, dst_transform=block.transform(256),
                  dst_crs="EPSG:3857", resampling=Resampling.bilinear)
    rgba = np.moveaxis(out, 0, -1)
    return rgba, png_tiles(rgba, ZOOM, block.x_min, block.y_min), block, rows


def test_real_imagery_comes_back_exact_and_in_place(turku_tiles, tmp_path):
    rgba, tiles, block, rows = turku_tiles
    out = tmp_path / "turku.tif"
    with TileServer(tiles) as server:
        code, _, stderr = run_gdn("fetch-map", "--bbox", ",".join(map(str, BBOX)), "--zoom", str(ZOOM), "--source",
                                  server.template, "--out", str(out), "--user-agent", "gdn-tests", "--rate-per-s", "200",
                                  "--attribution", "Turku satellite tiles (shared/data/turku_satellite/LICENSE)")
    assert code == 0, stderr
    res_m, bounds_m, (x0, y0) = expected_grid(BBOX, ZOOM)
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 3857 and np.allclose(tuple(ds.bounds), bounds_m, rtol=0, atol=1e-6)
        got, transform = np.moveaxis(ds.read(), 0, -1), ds.transform
    col0 = round((bounds_m[0] + np.pi * 6378137.0) / res_m) - x0 * 256
    row0 = round((np.pi * 6378137.0 - bounds_m[3]) / res_m) - y0 * 256
    assert np.array_equal(got, rgba[row0:row0 + got.shape[0], col0:col0 + got.shape[1]])
    assert (got[..., 3] == 255).mean() > 0.99

    # Where the original PNG says a point is (linear in its corner coordinates), the COG shows the same ground:
    # the PNG's patch around it correlates best with the map's patch at zero shift (a 1 px = 0.3 m margin).
    path, top, left, bottom, right = next(r for r in rows if r[0].name == "sat_map_01.png")
    png = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY).astype(np.float32)
    lat, lon = 60.4026, 22.4656
    pr, pc = (top - lat) / (top - bottom) * png.shape[0], (lon - left) / (right - left) * png.shape[1]
    x_m, y_m = lonlat_to_3857_m(lon, lat)
    c, r = int((x_m - transform.c) / transform.a), int((y_m - transform.f) / transform.e)
    half_px = 48  # a ~28 m patch of the map, and the same ground in the PNG resampled to its pixels
    ground_m = half_px * res_m * np.cos(np.radians(lat))
    half_r = ground_m / ((top - bottom) * 111_320 / png.shape[0])
    half_c = ground_m / ((right - left) * 111_320 * np.cos(np.radians(lat)) / png.shape[1])
    png_patch = cv2.resize(png[int(pr - half_r):int(pr + half_r), int(pc - half_c):int(pc + half_c)],
                           (2 * half_px, 2 * half_px), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(np.ascontiguousarray(got[..., :3]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    scores = {(dr, dc): np.corrcoef(grey[r + dr - half_px:r + dr + half_px, c + dc - half_px:c + dc + half_px].ravel(),
                                    png_patch.ravel())[0, 1] for dr in range(-6, 7) for dc in range(-6, 7)}
    (dr, dc), best = max(scores.items(), key=lambda kv: kv[1])
    assert abs(dr) <= 1 and abs(dc) <= 1 and best > 0.7, (dr, dc, best)
