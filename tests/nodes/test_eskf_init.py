"""The filter node starts in the air: GNSS fixes and IMU taken in a banked turn give the bank, not level
flight, and the heading at the newest fix, not the chord's; the first strong visual fix then resets the
coarse heading. Inputs go straight into the callbacks."""
from __future__ import annotations

import math

import numpy as np
import pytest
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import Imu, NavSatFix

from gps_denied_nav.core.eskf_diagnostics import MeasurementKind
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.rotations import euler_from_quat, quat_to_rotmat_batch, wrap_angle
from gps_denied_nav.nodes.conversions import s_to_stamp
from gps_denied_nav.nodes.eskf_node import EskfNode
from gps_denied_nav.sim.trajectory import CurvatureSegment, SurveyTrajectory
from gps_denied_nav_interfaces.msg import VisualFix
from rclpy_harness import ros_context

ORIGIN = LocalTangentPlane(60.40, 22.46, 0.0)
IMU_HZ, GNSS_HZ = 200.0, 5.0
G = np.array([0.0, 0.0, -9.80665])


def test_gnss_initialisation_in_a_banked_turn():
    # A steady left turn: 12 m/s on a 60 m radius is 11.5°/s and a 13.8° bank.
    turn = SurveyTrajectory((0.0, 0.0), 0.0, [CurvatureSegment(2000.0, 1 / 60.0, 1 / 60.0)], speed_mps=12.0,
                            altitude_wave_m=0.0)
    t = np.arange(1, int(4.0 * IMU_HZ) + 1) / IMU_HZ
    truth = turn.sample(t)
    R = quat_to_rotmat_batch(truth.q_world_body)
    f_body = np.einsum("nji,nj->ni", R, truth.accel_enu_mps2 - G)
    gnss_every = int(IMU_HZ / GNSS_HZ)
    with ros_context({"origin_lat_deg": ORIGIN.origin_lat_deg, "origin_lon_deg": ORIGIN.origin_lon_deg,
                      "origin_alt_m": 0.0}):
        node = EskfNode()
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        init_index = None
        for i in range(len(t)):
            imu = Imu()
            imu.header.stamp = s_to_stamp(t[i])
            imu.linear_acceleration.x, imu.linear_acceleration.y, imu.linear_acceleration.z = map(float, f_body[i])
            imu.angular_velocity.x, imu.angular_velocity.y, imu.angular_velocity.z = map(
                float, truth.omega_body_radps[i])
            node._on_imu(imu)
            if (i + 1) % gnss_every == 0 and not node.filter.initialized:
                fix = NavSatFix()
                fix.header.stamp = s_to_stamp(t[i])
                fix.latitude, fix.longitude, fix.altitude = map(float, ORIGIN.to_geodetic(truth.pos_enu_m[i]))
                node._on_gnss(fix)
                if node.filter.initialized:
                    init_index = i
        assert init_index is not None and t[init_index] >= 2.0   # two fixes 2 s apart
        # The filter has propagated to the last IMU sample since initialising, without fixes: compare there.
        roll, pitch, yaw = euler_from_quat(node.filter.q_world_body)
        roll_true, pitch_true, yaw_true = euler_from_quat(truth.q_world_body[-1])
        assert abs(roll_true) > math.radians(12.0)
        assert roll == pytest.approx(roll_true, abs=math.radians(1.0))
        assert pitch == pytest.approx(pitch_true, abs=math.radians(1.0))
        assert abs(wrap_angle(yaw - yaw_true)) < math.radians(1.0)
        assert np.linalg.norm(node.filter.vel_enu_mps - truth.vel_enu_mps[-1]) < 0.3
        # The GNSS course leaves the heading coarse (1σ 0.2 rad): the first strong visual fix sets it by a
        # reset, not by a linear update; the next one is an ordinary update.
        assert node.filter.yaw_sigma_rad > node.params.heading_align_sigma_rad
        for _ in range(2):
            node._on_visual_fix(_visual_fix(t[-1], truth.pos_enu_m[-1], yaw_true + 0.01))
        counters = node.filter.diagnostics.counters
        assert counters[MeasurementKind.HEADING_RESET].accepted == 1
        assert counters[MeasurementKind.VISUAL_FIX].accepted == 2
        assert abs(wrap_angle(euler_from_quat(node.filter.q_world_body)[2] - yaw_true - 0.01)) < 1e-3
        assert node.filter.yaw_sigma_rad < 1e-3
        node.destroy_node()


def _visual_fix(t_s: float, pos_enu_m, heading_rad: float) -> VisualFix:
    lat, lon, alt = ORIGIN.to_geodetic(pos_enu_m)
    msg = VisualFix(latitude_deg=float(lat), longitude_deg=float(lon), altitude_m=float(alt),
                    heading_rad=float(heading_rad), heading_variance_rad2=1e-6, inliers=200)
    msg.header.stamp = s_to_stamp(t_s)
    msg.position_covariance_enu_m2 = [0.04, 0.0, 0.0, 0.0, 0.04, 0.0, 0.0, 0.0, 1.0]
    return msg
