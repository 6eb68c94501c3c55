"""render_frame against the pinhole model: marked ground points land where project_points puts them, map
edges and sky are black, fine map texture is anti-aliased, and Photometric does what it says."""
import numpy as np
import pytest

from gps_denied_nav.core.camera import R_BODY_CAM_NADIR, CameraIntrinsics, project_points
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.map_raster import MapRaster
from gps_denied_nav.core.rotations import quat_from_euler, quat_to_rotmat
from marked_map import blob_centroids, marked_map

from gps_denied_nav.sim.render import Photometric, render_frame

CAM = CameraIntrinsics.from_hfov(640, 480, 60.0)
MARKS_EN = np.array([[0.0, 0.0], [14.0, 9.0], [-17.0, 6.0], [8.0, -12.0], [-10.0, -9.0]])


@pytest.mark.parametrize("gsd_m, height_m, euler", [
    (0.05, 60.0, (0.0, 0.0, 0.4)),     # map 2x finer than the frame: the anti-aliased path
    (0.05, 60.0, (0.26, -0.08, 2.0)),  # 15 deg roll
    (0.2, 40.0, (-0.1, 0.15, -1.2)),   # map coarser than the frame: plain bilinear
])
def test_marked_points_land_where_projected(gsd_m, height_m, euler):
    ground_up_m = 3.0
    raster = marked_map(gsd_m, MARKS_EN)
    R_world_cam = quat_to_rotmat(quat_from_euler(*euler)) @ R_BODY_CAM_NADIR
    cam_pos = np.array([2.0, -1.0, ground_up_m + height_m])
    frame = render_frame(raster, CAM.K, R_world_cam, cam_pos, 640, 480, ground_up_m=ground_up_m)
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
    points = np.column_stack([MARKS_EN, np.full(len(MARKS_EN), ground_up_m)])
    uv, depth = project_points(CAM.K, R_world_cam, cam_pos, points)
    inside = (depth > 0) & (uv[:, 0] > 20) & (uv[:, 0] < 620) & (uv[:, 1] > 20) & (uv[:, 1] < 460)
    assert inside.sum() >= 3
    err = np.linalg.norm(blob_centroids(frame, uv[inside], 26) - uv[inside], axis=1)
    assert err.max() < 0.25, err


def test_outside_the_map_and_the_sky_are_black():
    raster = marked_map(0.2, MARKS_EN)
    raster.valid[:, :50] = False  # a nodata strip on the west edge (east < -90 m)
    R_nadir = quat_to_rotmat(quat_from_euler(0.0, 0.0, np.pi / 2)) @ R_BODY_CAM_NADIR  # nose north
    frame = render_frame(raster, CAM.K, R_nadir, np.array([-95.0, 0.0, 60.0]), 640, 480)
    # Image right is east: the left part sees nodata and beyond the map, the right part the map.
    assert frame[:, :200].max() == 0 and (frame[:, 400:, 0] > 0).all()
    # Pitched 80 deg nose-up: the top of the image sees sky (black), the bottom still sees ground.
    R_up = quat_to_rotmat(quat_from_euler(0.0, -np.radians(80.0), 0.0)) @ R_BODY_CAM_NADIR
    frame = render_frame(raster, CAM.K, R_up, np.array([0.0, 0.0, 20.0]), 640, 480)
    assert frame[:100].max() == 0 and (frame[-50:, :, 0] > 0).mean() > 0.9


def test_fine_texture_is_anti_aliased():
    """A 1-px checkerboard seen 8x coarser must come out flat grey, not as moire."""
    n = 4000
    checker = ((np.indices((n, n)).sum(axis=0) % 2) * 255).astype(np.uint8)
    raster = MapRaster(np.repeat(checker[..., None], 3, axis=2), np.ones((n, n), bool), 0.025, -50.0, 50.0,
                       LocalTangentPlane(60.4, 22.46), "checker")
    R = quat_to_rotmat(quat_from_euler(0.0, 0.0, 0.3)) @ R_BODY_CAM_NADIR
    frame = render_frame(raster, CAM.K, R, np.array([0.0, 0.0, 110.0]), 640, 480)
    centre = frame[140:340, 220:420, 0].astype(float)
    assert abs(centre.mean() - 127.5) < 3.0 and centre.std() < 4.0


def test_photometric_identity_random_and_reproducible():
    img = marked_map(0.2, MARKS_EN).image_rgb[:240, :320].copy()
    np.testing.assert_array_equal(Photometric().apply(img), img)
    np.testing.assert_array_equal(Photometric.random(np.random.default_rng(0), 0.0).apply(img), img)
    a = Photometric.random(np.random.default_rng(5), 1.0).apply(img, np.random.default_rng(9))
    b = Photometric.random(np.random.default_rng(5), 1.0).apply(img, np.random.default_rng(9))
    np.testing.assert_array_equal(a, b)
    assert a.shape == img.shape and a.dtype == np.uint8 and np.abs(a.astype(int) - img).mean() > 2.0
    dark = Photometric(exposure_gain=0.5).apply(img)
    assert dark.mean() == pytest.approx(0.5 * img.mean(), rel=0.05)
    cast = Photometric(color_gain_rgb=(1.0, 1.0, 0.5)).apply(img)
    assert cast[..., 2].mean() < 0.6 * cast[..., 0].mean()
    vignetted = Photometric(vignetting=0.4).apply(np.full((100, 100, 3), 200, np.uint8))
    assert vignetted[0, 0, 0] < 130 and vignetted[50, 50, 0] == 200
