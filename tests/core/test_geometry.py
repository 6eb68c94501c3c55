"""Geodesy round trips, rotation conventions and the ground-plane camera model."""
import numpy as np
import pytest

from gps_denied_nav.core.camera import (R_BODY_CAM_NADIR, CameraIntrinsics, ground_to_image_homography,
                                        intersect_ground, pixel_rays_world, project_points)
from gps_denied_nav.core.geodesy import LocalTangentPlane, ecef_to_geodetic, frame_from_known_point, geodetic_to_ecef
from gps_denied_nav.core.rotations import (euler_from_quat, quat_from_euler, quat_from_rotvec,
                                           quat_multiply, quat_to_rotmat, rotmat_to_quat, rotvec_from_quat)


def test_ecef_round_trip_sub_millimetre():
    rng = np.random.default_rng(0)
    lat, lon, alt = rng.uniform(-89, 89, 200), rng.uniform(-180, 180, 200), rng.uniform(-100, 9000, 200)
    lat2, lon2, alt2 = ecef_to_geodetic(geodetic_to_ecef(lat, lon, alt))
    assert np.max(np.abs(lat2 - lat)) < 1e-9 and np.max(np.abs(lon2 - lon)) < 1e-9
    assert np.max(np.abs(alt2 - alt)) < 1e-3


def test_enu_round_trip_and_scale():
    ltp = LocalTangentPlane(60.4, 22.46, 30.0)
    enu = ltp.to_enu(60.4 + 1e-3, 22.46, 30.0)
    assert enu[1] == pytest.approx(111.4, abs=0.5) and abs(enu[0]) < 1e-6  # 1 mdeg of latitude
    pts = np.array([[1500.0, -2300.0, 120.0], [-10.0, 5.0, -3.0]])
    lat, lon, alt = ltp.to_geodetic(pts)
    np.testing.assert_allclose(ltp.to_enu(lat, lon, alt), pts, atol=1e-4)


def test_frame_from_a_known_point_recovers_the_origin():
    ltp = LocalTangentPlane(47.3977, 8.5456, 400.0)
    for offset_m in ([30.0, -20.0, 5.0], [2500.0, -1800.0, 150.0], [-9000.0, 7000.0, -50.0]):
        lat, lon, alt = ltp.to_geodetic(offset_m)
        frame = frame_from_known_point(lat, lon, alt, offset_m)
        np.testing.assert_allclose(frame.to_enu(*ltp.to_geodetic([0.0, 0.0, 0.0])), 0.0, atol=1e-4)
        np.testing.assert_allclose(frame.to_enu(lat, lon, alt), offset_m, atol=1e-4)
    # One step along the point's own axes (no refinement) is off by ~27 m at 11 km: the planes' tilt matters.
    coarse = frame_from_known_point(lat, lon, alt, offset_m, iterations=0)
    assert np.linalg.norm(coarse.to_enu(lat, lon, alt) - offset_m) > 10.0


def test_quaternion_conventions():
    q = quat_from_euler(0.1, -0.2, 2.5)
    assert euler_from_quat(q) == pytest.approx((0.1, -0.2, 2.5))
    np.testing.assert_allclose(quat_to_rotmat(rotmat_to_quat(quat_to_rotmat(q))), quat_to_rotmat(q), atol=1e-12)
    # Yaw +90 deg turns the body x axis (nose) from east to north.
    np.testing.assert_allclose(quat_to_rotmat(quat_from_euler(0, 0, np.pi / 2)) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    theta = np.array([0.3, -0.2, 0.1])
    np.testing.assert_allclose(rotvec_from_quat(quat_from_rotvec(theta)), theta, atol=1e-12)
    np.testing.assert_allclose(quat_to_rotmat(quat_multiply(q, quat_from_rotvec(theta))),
                               quat_to_rotmat(q) @ quat_to_rotmat(quat_from_rotvec(theta)), atol=1e-12)


def test_ground_homography_matches_projection_and_back_projection():
    cam = CameraIntrinsics.from_hfov(640, 480, 60.0)
    R_world_cam = quat_to_rotmat(quat_from_euler(0.1, 0.05, 0.7)) @ R_BODY_CAM_NADIR
    cam_pos = np.array([10.0, 20.0, 120.0])
    ground = np.array([[30.0, 40.0, 2.0], [0.0, 0.0, 2.0], [-25.0, 18.0, 2.0]])
    uv, depth = project_points(cam.K, R_world_cam, cam_pos, ground)
    assert np.all(depth > 0)
    H = ground_to_image_homography(cam.K, R_world_cam, cam_pos, ground_up_m=2.0)
    h = np.column_stack([ground[:, :2], np.ones(3)]) @ H.T
    np.testing.assert_allclose(h[:, :2] / h[:, 2:], uv, atol=1e-9)
    back = intersect_ground(cam_pos, pixel_rays_world(cam.K, R_world_cam, uv), ground_up_m=2.0)
    np.testing.assert_allclose(back, ground, atol=1e-9)


def test_nadir_mount_puts_the_nose_at_the_image_top():
    cam = CameraIntrinsics.from_hfov(640, 480, 60.0)
    R_world_cam = quat_to_rotmat(quat_from_euler(0.0, 0.0, np.pi / 2)) @ R_BODY_CAM_NADIR  # nose north
    uv, _ = project_points(cam.K, R_world_cam, np.array([0.0, 0.0, 100.0]),
                           np.array([[0.0, 10.0, 0.0], [10.0, 0.0, 0.0]]))
    assert uv[0, 1] < cam.cy_px and uv[0, 0] == pytest.approx(cam.cx_px)  # north point above centre
    assert uv[1, 0] > cam.cx_px and uv[1, 1] == pytest.approx(cam.cy_px)  # east point right of centre
