"""Rectification: an oblique, rotated view of a synthetic map warps back onto the north-up map crop."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from gps_denied_nav.core.camera import R_BODY_CAM_NADIR, CameraIntrinsics, ground_to_image_homography
from gps_denied_nav.core.rectify import FILL_VALUE, north_up_grid_to_ground, rectify_to_north_up
from gps_denied_nav.core.rotations import quat_from_euler, quat_to_rotmat

MAP_GSD_M = 0.5
MAP_SIZE_PX = 800  # 400 m square, ENU origin at the map centre


def textured_map(seed: int = 0) -> np.ndarray:
    """[800 x 800 x 3] uint8 with structure at several scales (so NCC is meaningful, not just smooth)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((MAP_SIZE_PX, MAP_SIZE_PX, 3), np.float32)
    for cells, weight in ((8, 1.0), (32, 0.7), (128, 0.4)):
        noise = rng.uniform(0, 1, (cells, cells, 3)).astype(np.float32)
        image += weight * cv2.resize(noise, (MAP_SIZE_PX, MAP_SIZE_PX), interpolation=cv2.INTER_CUBIC)
    image = cv2.GaussianBlur(image, (0, 0), 1.5)
    image = (image - image.min()) / (image.max() - image.min())
    return (255 * image).astype(np.uint8)


def map_grid_to_ground() -> np.ndarray:
    return north_up_grid_to_ground(np.zeros(2), MAP_GSD_M, MAP_SIZE_PX)


def render(map_rgb, K, R_world_cam, cam_pos_enu_m, width_px, height_px):
    H_image_map = ground_to_image_homography(K, R_world_cam, cam_pos_enu_m) @ map_grid_to_ground()
    return cv2.warpPerspective(map_rgb, H_image_map, (width_px, height_px), flags=cv2.INTER_LINEAR)


def map_crop(map_rgb, centre_enu_m, gsd_m, size_px):
    """The expected rectified view: the map resampled on the same north-up grid."""
    H_map_out = np.linalg.inv(map_grid_to_ground()) @ north_up_grid_to_ground(centre_enu_m, gsd_m, size_px)
    return cv2.warpPerspective(map_rgb, H_map_out, (size_px, size_px), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)


def ncc(a, b, mask):
    a, b = a[mask].astype(float).ravel(), b[mask].astype(float).ravel()
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


@pytest.mark.parametrize("roll_deg, pitch_deg, yaw_deg", [(0, 0, 0), (8, -12, 137), (-14, 10, -70)])
def test_rectified_view_matches_map_crop(roll_deg, pitch_deg, yaw_deg):
    map_rgb = textured_map()
    camera = CameraIntrinsics.from_hfov(320, 240, 60.0)
    R_world_cam = quat_to_rotmat(quat_from_euler(*np.radians([roll_deg, pitch_deg, yaw_deg]))) @ R_BODY_CAM_NADIR
    cam_pos_enu_m = np.array([12.0, -7.0, 100.0])
    frame = render(map_rgb, camera.K, R_world_cam, cam_pos_enu_m, camera.width_px, camera.height_px)

    out, valid, offset_m = rectify_to_north_up(frame, camera.K, R_world_cam, 100.0, out_gsd_m=0.6, out_size_px=128)

    assert out.shape == (128, 128, 3) and valid.shape == (128, 128) and out.dtype == np.uint8
    # The optical axis of a camera tilted by (roll, pitch) meets the ground ~altitude * tan(tilt) away.
    tilt_rad = np.arccos(-R_world_cam[2, 2])
    assert np.linalg.norm(offset_m) == pytest.approx(100.0 * np.tan(tilt_rad), rel=1e-6)
    assert valid.mean() > 0.6
    assert np.all(out[~valid] == FILL_VALUE)
    expected = map_crop(map_rgb, cam_pos_enu_m[:2] + offset_m, 0.6, 128)
    assert ncc(out, expected, valid) > 0.9
    # A wrong heading must not pass: the same frame rectified as if the UAV flew 30 deg further left.
    R_wrong = quat_to_rotmat(quat_from_euler(0.0, 0.0, np.radians(30.0))) @ R_world_cam
    wrong, wrong_valid, wrong_offset_m = rectify_to_north_up(frame, camera.K, R_wrong, 100.0, 0.6, 128)
    expected_wrong = map_crop(map_rgb, cam_pos_enu_m[:2] + wrong_offset_m, 0.6, 128)
    assert ncc(wrong, expected_wrong, wrong_valid) < 0.7


def test_horizon_is_masked_and_bad_altitude_rejected():
    camera = CameraIntrinsics.from_hfov(320, 240, 90.0)
    # Pitched up 60 deg: the upper image half sees sky; ground beyond the horizon must not be "valid".
    R_world_cam = quat_to_rotmat(quat_from_euler(0.0, np.radians(-60.0), 0.0)) @ R_BODY_CAM_NADIR
    frame = np.full((240, 320, 3), 200, np.uint8)
    out, valid, _ = rectify_to_north_up(frame, camera.K, R_world_cam, 50.0, out_gsd_m=20.0, out_size_px=64)
    assert 0.0 < valid.mean() < 1.0
    with pytest.raises(ValueError):
        rectify_to_north_up(frame, camera.K, R_world_cam, 0.0, 1.0, 64)


def test_query_footprint_follows_the_height_and_the_lens():
    from gps_denied_nav.core.camera import CameraIntrinsics
    from gps_denied_nav.core.rectify import query_footprint_m

    demo = CameraIntrinsics.from_hfov(640, 480, 60.0)
    assert query_footprint_m(demo.K, 640, 480, 120.0) == pytest.approx(103.9, abs=0.1)  # the short side
    assert query_footprint_m(demo.K, 640, 480, 60.0) == pytest.approx(52.0, abs=0.1)
    assert query_footprint_m(demo.K, 640, 480, 400.0, max_m=150.0) == 150.0  # never more than a tile
    # DJI FC300S: 3.61 mm lens on a 6.17 mm wide sensor, 4000 x 2250 px, 40 m above ground: 38 m
    fx_px = 3.61 / 6.17 * 4000
    K = np.array([[fx_px, 0, 2000], [0, fx_px, 1125], [0, 0, 1.0]])
    assert query_footprint_m(K, 4000, 2250, 40.0) == pytest.approx(38.5, abs=0.2)
