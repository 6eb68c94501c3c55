"""Terrain tiles: the two height packings decode exactly, ``gdn fetch-dem`` writes a float32 DEM in metres
that ``terrain_from_dem`` samples back to the heights that were served, and the vertical datum is kept."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from gdn_maps import expected_grid, run_gdn
from tile_server import TileServer, png_tiles

from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.terrain import terrain_from_dem
from gps_denied_nav.maps.dem import check_vertical_datum, decode_terrain_rgb, decode_terrarium, dem_pixels
from gps_denied_nav.maps.xyz import BBox, tile_block

ZOOM = 14
BBOX = (22.455, 60.398, 22.475, 60.408)  # Turku: 2 x 2 tiles at zoom 14


def encode_terrarium(heights_m: np.ndarray) -> np.ndarray:
    """Inverse of the terrarium packing, for heights on its 1/256 m grid."""
    v = np.round((heights_m + 32768.0) * 256.0).astype(np.int64)
    return np.stack([v >> 16, (v >> 8) & 255, v & 255], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("rgb, height_m", [((128, 0, 0), 0.0), ((0, 0, 0), -32768.0), ((129, 44, 128), 300.5),
                                           ((127, 255, 255), -1.0 / 256), ((136, 166, 64), 2214.25)])
def test_terrarium_decodes_exactly(rgb, height_m):
    assert decode_terrarium(np.array([[rgb]], np.uint8))[0, 0] == np.float32(height_m)


@pytest.mark.parametrize("rgb, height_m", [((1, 134, 160), 0.0), ((0, 0, 0), -10000.0), ((1, 146, 160), 307.2),
                                           ((1, 134, 161), 0.1), ((2, 224, 68), 8848.4)])
def test_terrain_rgb_decodes_exactly(rgb, height_m):
    # Exact up to the float32 the DEM stores: (R*65536 + G*256 + B) counts decimetres.
    assert decode_terrain_rgb(np.array([[rgb]], np.uint8))[0, 0] == np.float32(height_m)


def test_terrarium_round_trips_every_height_on_its_grid():
    heights = np.random.default_rng(0).integers(-11000 * 256, 9000 * 256, 10000) / 256.0
    assert np.array_equal(decode_terrarium(encode_terrarium(heights)), heights.astype(np.float32))


def test_a_jpeg_terrain_tile_is_refused():
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(buffer, format="JPEG")
    with pytest.raises(ValueError, match="JPEG"):
        dem_pixels(Image.open(buffer), 256, "terrarium")


@pytest.fixture(scope="module")
def served_dem():
    """Terrarium tiles of a known field: 40 m + a slope along EPSG:3857 x and y (exactly bilinear)."""
    block = tile_block(BBox(*BBOX), ZOOM)
    rows, cols = (block.y_max - block.y_min + 1) * 256, (block.x_max - block.x_min + 1) * 256
    r, c = np.mgrid[0:rows, 0:cols]
    heights_m = np.round((40.0 + 0.25 * c - 0.125 * r) * 256) / 256
    rgba = np.dstack([encode_terrarium(heights_m), np.full((rows, cols), 255, np.uint8)])
    return heights_m, png_tiles(rgba, ZOOM, block.x_min, block.y_min), block


def test_fetched_dem_is_metres_in_float32_and_terrain_from_dem_reads_it(served_dem, tmp_path):
    heights_m, tiles, block = served_dem
    out = tmp_path / "dem.tif"
    with TileServer(tiles) as server:
        code, stdout, stderr = run_gdn("fetch-dem", "--bbox", ",".join(map(str, BBOX)), "--zoom", str(ZOOM),
                                       "--source", server.template, "--out", str(out), "--user-agent", "gdn-tests",
                                       "--encoding", "terrarium", "--vertical-datum", "egm96", "--rate-per-s", "200")
    assert code == 0, stderr
    assert "--geoid-offset-m" in stdout
    res_m, bounds_m, (x0, y0) = expected_grid(BBOX, ZOOM)
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 3857 and ds.dtypes[0] == "float32" and ds.nodata == -32768.0
        assert np.allclose(tuple(ds.bounds), bounds_m, rtol=0, atol=1e-6)
        assert ds.tags()["VERTICAL_DATUM"] == "egm96" and ds.tags()["DEM_ENCODING"] == "terrarium"
        got, transform = ds.read(1), ds.transform
    col0 = round((bounds_m[0] + np.pi * 6378137.0) / res_m) - x0 * 256
    row0 = round((np.pi * 6378137.0 - bounds_m[3]) / res_m) - y0 * 256
    assert np.array_equal(got, heights_m[row0:row0 + got.shape[0], col0:col0 + got.shape[1]].astype(np.float32))

    # terrain_from_dem on a map box inside the bbox: the field, evaluated where each node lands in the DEM.
    frame = LocalTangentPlane(60.403, 22.465, 0.0)
    grid = terrain_from_dem(out, frame, -300.0, 200.0, 600.0, 400.0, step_m=100.0, geoid_offset_m=18.0)
    east, north = np.meshgrid(-300.0 + 100.0 * np.arange(7), 200.0 - 100.0 * np.arange(5))
    lat, lon, _ = frame.to_geodetic(np.stack([east.ravel(), north.ravel(), np.zeros(east.size)], axis=1))
    x_m = 6378137.0 * np.radians(lon)
    y_m = 6378137.0 * np.log(np.tan(np.pi / 4 + np.radians(lat) / 2))
    col, row = (x_m - transform.c) / transform.a - 0.5, (y_m - transform.f) / transform.e - 0.5  # pixel centres
    want = 40.0 + 0.25 * (col + col0) - 0.125 * (row + row0) + 18.0
    assert np.allclose(grid.heights_m.ravel(), want, atol=0.01)


def test_a_geoid_dem_is_refused_for_provisioning_without_the_geoid_offset(tmp_path):
    path = tmp_path / "dem.tif"
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="float32", crs="EPSG:3857",
                       transform=Affine(10.0, 0.0, 0.0, 0.0, -10.0, 0.0)) as ds:
        ds.write(np.zeros((1, 4, 4), np.float32))
        ds.update_tags(VERTICAL_DATUM="egm2008")
    with pytest.raises(ValueError, match="--geoid-offset-m"):
        check_vertical_datum(path, 0.0)
    assert check_vertical_datum(path, 18.2) == "egm2008"
