"""ODOMETRY / VISION_POSITION_ESTIMATE fields from the filter's pose: frames checked by physical cases,
covariance rotation and layout, quality, reset counter, and that pymavlink packs what we build."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from pymavlink.dialects.v20 import common as mavlink2  # the MAVLink 2 dialect whatever MAVLINK20 says

from gps_denied_nav.core.mavlink_odometry import (
    MAV_ESTIMATOR_TYPE_VIO, MAV_FRAME_BODY_FRD, MAV_FRAME_LOCAL_FRD, Q_FLU_FRD, Q_NED_ENU, R_FLU_FRD, R_NED_ENU,
    FusedPose, ResetCounter, odometry_fields, pose_covariance_ned, quality_percent, quat_ned_frd,
    set_gps_global_origin_fields, upper_triangle, vision_position_fields)
from gps_denied_nav.core.rotations import euler_from_quat, quat_from_euler, quat_to_rotmat


def _pose(pos_enu=(10.0, 20.0, 5.0), roll=0.0, pitch=0.0, yaw_enu=0.0, vel_flu=(3.0, 0.0, 0.0),
          pose_cov=None, tracking=True) -> FusedPose:
    return FusedPose(1_700_000_000.25, np.array(pos_enu), quat_from_euler(roll, pitch, yaw_enu), np.array(vel_flu),
                     np.array([0.0, 0.0, 0.1]), np.diag([1.0, 1.0, 4.0, 1e-4, 1e-4, 4e-4]) if pose_cov is None
                     else pose_cov, np.diag([0.01, 0.04, 0.09, 1e-6, 2e-6, 3e-6]), tracking)


def _ned_euler_deg(fields: dict) -> np.ndarray:
    return np.degrees(euler_from_quat(np.array(fields["q"])))


def test_constant_frame_changes_agree_with_their_matrices():
    assert np.allclose(quat_to_rotmat(Q_NED_ENU), R_NED_ENU) and np.allclose(quat_to_rotmat(Q_FLU_FRD), R_FLU_FRD)


def test_position_enu_to_ned():
    f = odometry_fields(_pose(pos_enu=(10.0, 20.0, 5.0)), 0)
    assert (f["x"], f["y"], f["z"]) == pytest.approx((20.0, 10.0, -5.0))
    v = vision_position_fields(_pose(pos_enu=(10.0, 20.0, 5.0)), 0)
    assert (v["x"], v["y"], v["z"]) == pytest.approx((20.0, 10.0, -5.0))


@pytest.mark.parametrize("yaw_enu_deg, yaw_ned_deg", [(90.0, 0.0), (0.0, 90.0), (180.0, -90.0), (45.0, 45.0)])
def test_heading(yaw_enu_deg, yaw_ned_deg):
    # ENU yaw is from east anticlockwise, NED yaw from north clockwise: nose north = 90 / 0, nose east = 0 / 90
    pose = _pose(yaw_enu=math.radians(yaw_enu_deg))
    assert _ned_euler_deg(odometry_fields(pose, 0))[2] == pytest.approx(yaw_ned_deg, abs=1e-9)
    assert math.degrees(vision_position_fields(pose, 0)["yaw"]) == pytest.approx(yaw_ned_deg, abs=1e-9)


def test_roll_and_pitch_keep_their_sense():
    # FLU roll +10°: left side up = right wing down, which is FRD roll +10°; FLU pitch +5° (about left) is
    # nose down, which is FRD pitch -5° (FRD pitch about right, nose up positive)
    pose = _pose(roll=math.radians(10.0), yaw_enu=math.radians(90.0))
    assert _ned_euler_deg(odometry_fields(pose, 0)) == pytest.approx([10.0, 0.0, 0.0], abs=1e-9)
    pose = _pose(pitch=math.radians(5.0), yaw_enu=math.radians(90.0))
    v = vision_position_fields(pose, 0)
    assert np.degrees([v["roll"], v["pitch"], v["yaw"]]) == pytest.approx([0.0, -5.0, 0.0], abs=1e-9)


def test_quaternion_maps_frd_body_axes_to_ned():
    q_enu_flu = quat_from_euler(0.3, -0.2, 1.1)
    R_ned_frd = quat_to_rotmat(quat_ned_frd(q_enu_flu))
    assert np.allclose(R_ned_frd, R_NED_ENU @ quat_to_rotmat(q_enu_flu) @ R_FLU_FRD)


def test_velocity_and_rates_in_body_frd():
    f = odometry_fields(_pose(vel_flu=(3.0, 1.0, 0.5), yaw_enu=1.0), 0)
    assert (f["vx"], f["vy"], f["vz"]) == pytest.approx((3.0, -1.0, -0.5))  # left -> right, up -> down
    assert (f["rollspeed"], f["pitchspeed"], f["yawspeed"]) == pytest.approx((0.0, 0.0, -0.1))  # turning left


def test_upper_triangle_is_row_major():
    cov = np.arange(36.0).reshape(6, 6)
    tri = upper_triangle(cov)
    assert len(tri) == 21
    assert tri[:6] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] and tri[6:11] == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert [tri[i] for i in (0, 6, 11, 15, 18, 20)] == list(np.diag(cov))  # ArduPilot reads the diagonal there
    assert math.isnan(upper_triangle(np.full((6, 6), np.nan))[0])
    assert math.isnan(upper_triangle(-np.eye(6))[0])  # ROS's "unknown" (-1)


def test_covariance_follows_the_frames():
    cov = np.diag([25.0, 1.0, 4.0, 1e-4, 4e-4, 9e-4])  # large east, small north; rotations about E, N, U
    pose = _pose(pose_cov=cov, yaw_enu=math.radians(90.0))  # nose north: roll about N, pitch about E
    tri = odometry_fields(pose, 0)["pose_covariance"]
    assert [tri[i] for i in (0, 6, 11)] == pytest.approx([1.0, 25.0, 4.0])  # north, east, down
    assert [tri[i] for i in (15, 18, 20)] == pytest.approx([4e-4, 1e-4, 9e-4])  # roll, pitch, yaw
    ned = pose_covariance_ned(cov, quat_ned_frd(pose.q_enu_flu))
    assert np.allclose(ned, ned.T) and np.all(np.linalg.eigvalsh(ned) > 0.0)


def test_velocity_covariance_in_frd():
    tri = odometry_fields(_pose(), 0)["velocity_covariance"]
    assert [tri[i] for i in (0, 6, 11, 15, 18, 20)] == pytest.approx([0.01, 0.04, 0.09, 1e-6, 2e-6, 3e-6])
    cov = np.eye(6)
    cov[0, 1] = cov[1, 0] = 0.5  # forward-left correlation is forward-right anticorrelation
    assert odometry_fields(replace(_pose(), twist_cov_flu=cov), 0)["velocity_covariance"][1] == -0.5


def test_quality_mapping():
    assert quality_percent(False, np.eye(6), 2.0) == -1  # lost: "failed", below VISO_QUAL_MIN / EKF2_EV_QMIN 0
    assert quality_percent(True, np.diag([1.0, 4.0, 9.0, 0, 0, 0]), 2.0) == 100
    assert quality_percent(True, np.diag([16.0, 1.0, 1.0, 0, 0, 0]), 2.0) == 50
    assert quality_percent(True, np.diag([1e8, 1.0, 1.0, 0, 0, 0]), 2.0) == 1
    assert quality_percent(True, np.full((6, 6), np.nan), 2.0) == 0
    assert odometry_fields(_pose(tracking=False), 0)["quality"] == -1


def test_frames_estimator_and_reset_counter_wrap():
    f = odometry_fields(_pose(), 257)
    assert (f["frame_id"], f["child_frame_id"]) == (MAV_FRAME_LOCAL_FRD, MAV_FRAME_BODY_FRD)
    assert f["estimator_type"] == MAV_ESTIMATOR_TYPE_VIO and f["reset_counter"] == 1
    assert f["time_usec"] == 1_700_000_000_250_000
    m = mavlink2
    assert (m.MAV_FRAME_LOCAL_FRD, m.MAV_FRAME_BODY_FRD, m.MAV_ESTIMATOR_TYPE_VIO) == (
        MAV_FRAME_LOCAL_FRD, MAV_FRAME_BODY_FRD, MAV_ESTIMATOR_TYPE_VIO)


def test_reset_counter_counts_returns_from_lost():
    resets = ResetCounter()
    assert [resets.observe(t) for t in (True, True, False, False, True, True, False, True)] == [0, 0, 0, 0, 1, 1, 1, 2]
    assert ResetCounter().observe(True) == 0  # the first tracking message is no reset


def test_origin_fields():
    f = set_gps_global_origin_fields(60.4512345, 22.2712345, 140.25, target_system=1)
    assert f == dict(target_system=1, latitude=604512345, longitude=222712345, altitude=140250, time_usec=0)


def _round_trip(encode, fields):
    mav = mavlink2.MAVLink(None, srcSystem=1, srcComponent=197)
    return mav.parse_char(encode(mav)(**fields).pack(mav))


def test_pymavlink_packs_and_parses_them():
    pose = _pose(yaw_enu=0.7, roll=0.1)
    odo = _round_trip(lambda mav: mav.odometry_encode, odometry_fields(pose, 3))
    assert odo.get_type() == "ODOMETRY" and odo.frame_id == MAV_FRAME_LOCAL_FRD and odo.quality == 100
    assert odo.x == pytest.approx(20.0) and list(odo.q) == pytest.approx(list(quat_ned_frd(pose.q_enu_flu)), abs=1e-6)
    lost = _round_trip(lambda mav: mav.odometry_encode, odometry_fields(_pose(tracking=False), 0))
    assert lost.quality == -1
    unknown = odometry_fields(_pose(pose_cov=np.full((6, 6), np.nan)), 0)
    assert math.isnan(_round_trip(lambda mav: mav.odometry_encode, unknown).pose_covariance[0])
    vpe = _round_trip(lambda mav: mav.vision_position_estimate_encode, vision_position_fields(pose, 3))
    assert vpe.get_type() == "VISION_POSITION_ESTIMATE" and vpe.reset_counter == 3 and vpe.y == pytest.approx(10.0)
    origin = _round_trip(lambda mav: mav.set_gps_global_origin_encode,
                         set_gps_global_origin_fields(-33.8688, 151.2093, -12.0, target_system=1))
    assert (origin.latitude, origin.longitude, origin.altitude) == (-338688000, 1512093000, -12000)
