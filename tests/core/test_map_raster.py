"""MapRaster geometry and the GeoTIFF loader: pixel<->ENU round trips, exact placement of features from
UTM and geographic GeoTIFFs, nodata handling, and clear errors for rasters that are not georeferenced."""
import cv2
import numpy as np
import pyproj
import pytest
import rasterio
from rasterio.transform import from_origin

from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.map_raster import (GeoreferenceError, MapRaster, _source_pixel_nodes, _upsample_nodes,
                                            load_geotiff)

ORIGIN = (60.40, 22.46)


def _raster(h=40, w=60, gsd=0.5):
    rng = np.random.default_rng(0)
    return MapRaster(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), np.ones((h, w), bool), gsd, -12.0, 7.5,
                     LocalTangentPlane(*ORIGIN), "test")


def _write(path, image, crs, transform, alpha=None):
    bands = [image[..., i] for i in range(3)] + ([] if alpha is None else [alpha])
    with rasterio.open(path, "w", driver="GTiff", height=image.shape[0], width=image.shape[1], count=len(bands),
                       dtype="uint8", crs=crs, transform=transform) as dst:
        for i, band in enumerate(bands, 1):
            dst.write(band, i)
        if alpha is not None:
            dst.colorinterp = [rasterio.enums.ColorInterp.red, rasterio.enums.ColorInterp.green,
                               rasterio.enums.ColorInterp.blue, rasterio.enums.ColorInterp.alpha]
    return path


def _disc_image(h, w, centres_px, radius_px=6.0, seed=1):
    """Dim noisy background with bright anti-aliased discs at sub-pixel centres (col, row)."""
    img = np.random.default_rng(seed).integers(20, 60, (h, w), dtype=np.uint8)
    for c, r in centres_px:
        cv2.circle(img, (int(round(c * 256)), int(round(r * 256))), int(radius_px * 256), 255, -1, cv2.LINE_AA, 8)
    return np.repeat(img[..., None], 3, axis=2)


def _centroid(raster, east, north, half_px=14):
    """Intensity-weighted centroid (fractional col, row) of the bright blob near an ENU point."""
    c0, r0 = (int(round(v)) for v in raster.enu_to_pixel(east, north))
    patch = raster.image_rgb[r0 - half_px:r0 + half_px + 1, c0 - half_px:c0 + half_px + 1, 0].astype(float)
    weight = np.clip(patch - 128.0, 0, None)
    rr, cc = np.mgrid[r0 - half_px:r0 + half_px + 1, c0 - half_px:c0 + half_px + 1]
    return (weight * cc).sum() / weight.sum(), (weight * rr).sum() / weight.sum()


def test_pixel_enu_round_trip_and_affines():
    r = _raster()
    cols, rows = np.random.default_rng(1).uniform(-5, 70, (2, 50))
    e, n = r.pixel_to_enu(cols, rows)
    back_c, back_r = r.enu_to_pixel(e, n)
    np.testing.assert_allclose(back_c, cols, atol=1e-9)
    np.testing.assert_allclose(back_r, rows, atol=1e-9)
    assert r.pixel_to_enu(0, 0) == pytest.approx((-12.0 + 0.25, 7.5 - 0.25))  # pixel centre convention
    A = r.pixel_from_enu_affine()
    np.testing.assert_allclose((A @ np.vstack([e, n, np.ones_like(e)]))[:2], [cols, rows], atol=1e-9)
    np.testing.assert_allclose(A @ r.enu_from_pixel_affine(), np.eye(3), atol=1e-12)
    assert (r.width_m, r.height_m, r.east_max_m, r.north_min_m) == (30.0, 20.0, 18.0, -12.5)


def test_crop_snaps_to_pixels_and_pads_outside_with_invalid():
    r = _raster()
    crop = r.crop_enu(-14.2, 0.1, -9.9, 8.9)  # sticks out of the west and north edges
    assert crop.gsd_m == r.gsd_m and crop.east_min_m == pytest.approx(-14.5) and crop.north_max_m == pytest.approx(9.0)
    assert crop.image_rgb.shape == (18, 10, 3)
    inside = crop.valid
    assert not inside[:3].any() and not inside[:, :5].any() and inside[3:, 5:].all()
    # The same ENU point reads the same pixel in both rasters.
    c, rw = (int(v) for v in crop.enu_to_pixel(-11.0, 5.0))
    c2, r2 = (int(v) for v in r.enu_to_pixel(-11.0, 5.0))
    np.testing.assert_array_equal(crop.image_rgb[rw, c], r.image_rgb[r2, c2])


@pytest.mark.parametrize("gsd_m", [None, 0.4])
def test_utm_geotiff_features_land_at_their_enu_place(tmp_path, gsd_m):
    crs = "EPSG:32634"
    x0, y0 = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(ORIGIN[1], ORIGIN[0])
    transform = from_origin(round(x0) - 300.0, round(y0) + 250.0, 0.5, 0.5)
    centres = [(100.3, 80.7), (950.6, 120.2), (500.5, 500.5), (130.1, 880.9), (1080.4, 870.3)]
    path = _write(tmp_path / "utm.tif", _disc_image(1000, 1200, centres), crs, transform)
    raster = load_geotiff(path, gsd_m=gsd_m)
    assert raster.gsd_m == pytest.approx(gsd_m or 0.5)
    to_wgs = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    for c, r in centres:
        lon, lat = to_wgs.transform(*(transform @ (c + 0.5, r + 0.5)))  # cv2 centres -> raster corner coordinates
        east, north, _ = raster.frame.to_enu(lat, lon, 0.0)
        got = np.array(_centroid(raster, east, north, half_px=int(14 * 0.5 / raster.gsd_m)))
        assert np.linalg.norm(got - np.array(raster.enu_to_pixel(east, north))) < 0.2
    # UTM grid north is ~1.3 deg off true north here: the ENU grid is larger than the source and has
    # invalid corners.
    assert raster.width_m > 600.0 and raster.height_m > 500.0
    assert not raster.valid[0, 0] and raster.valid[raster.height_px // 2, raster.width_px // 2]


def test_node_interpolation_matches_per_pixel_geodesy():
    """The loader evaluates the exact chain on a node grid: interpolation adds < 1e-3 px anywhere."""
    frame = LocalTangentPlane(60.41, 22.47)
    crs = pyproj.CRS.from_epsg(32634)
    from_wgs = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    x0, y0 = from_wgs.transform(22.45, 60.42)
    pixel_from_src = ~from_origin(x0, y0, 0.3, 0.3)
    width, height, gsd, east_min, north_max = 400, 300, 0.25, -800.0, 900.0
    col_nodes, row_nodes = _source_pixel_nodes(frame, from_wgs, pixel_from_src, gsd, east_min, north_max, width, height)
    map_c = _upsample_nodes(col_nodes, height, width)
    rng = np.random.default_rng(3)
    cols, rows = rng.integers(0, width, 200), rng.integers(0, height, 200)
    lat, lon, _ = frame.to_geodetic(np.column_stack([east_min + (cols + 0.5) * gsd, north_max - (rows + 0.5) * gsd,
                                                     np.zeros(200)]))
    exact_c, _ = pixel_from_src @ from_wgs.transform(lon, lat)
    assert np.max(np.abs(map_c[rows, cols] - (np.asarray(exact_c) - 0.5))) < 1e-3


def test_geographic_geotiff_with_alpha_marks_nodata_invalid(tmp_path):
    d = 2e-6  # degrees per pixel (~0.11 m east, ~0.22 m north at 60 N)
    centres = [(200.5, 150.5), (420.2, 90.8)]
    alpha = np.full((300, 500), 255, np.uint8)
    alpha[:, 300:] = 0  # the east part is nodata
    transform = from_origin(22.46, 60.401, d, d)
    raster = load_geotiff(_write(tmp_path / "geo.tif", _disc_image(300, 500, centres), "EPSG:4326", transform, alpha))
    assert raster.gsd_m == pytest.approx(d * np.pi / 180 * 6.39e6 * np.cos(np.radians(60.4)), rel=0.02)
    lon, lat = transform @ (centres[0][0] + 0.5, centres[0][1] + 0.5)
    east, north, _ = raster.frame.to_enu(lat, lon, 0.0)
    assert np.linalg.norm(np.array(_centroid(raster, east, north)) - raster.enu_to_pixel(east, north)) < 0.3
    lon, lat = transform @ (centres[1][0] + 0.5, centres[1][1] + 0.5)
    c, r = (int(round(v)) for v in raster.enu_to_pixel(*raster.frame.to_enu(lat, lon, 0.0)[:2]))
    assert not raster.valid[r, c] and raster.image_rgb[r, c].max() == 0


def test_not_georeferenced_or_unreadable_raise_georeference_error(tmp_path):
    plain = tmp_path / "plain.tif"
    cv2.imwrite(str(plain), np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(GeoreferenceError, match="CRS") as info:
        load_geotiff(plain)
    assert str(plain) in str(info.value) and "geotransform" in str(info.value)
    no_crs = _write(tmp_path / "no_crs.tif", np.zeros((20, 30, 3), np.uint8), None, from_origin(5e5, 6.7e6, 1, 1))
    with pytest.raises(GeoreferenceError, match="no CRS") as info:
        load_geotiff(no_crs)
    assert "geotransform" not in str(info.value)
    junk = tmp_path / "junk.tif"
    junk.write_text("not a raster")
    with pytest.raises(GeoreferenceError, match="unreadable"):
        load_geotiff(junk)
    assert issubclass(GeoreferenceError, ValueError)
