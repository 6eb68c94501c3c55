"""Re-localisation after divergence: a position-only reset leaves a wrong heading and velocity behind
(the next fix is rejected again); resetting the heading from the fix and loosening the velocity recovers."""
import numpy as np
import pytest
from eskf_truth import banked_circle, fly

from gps_denied_nav.core.eskf import EskfConfig, ErrorStateKalmanFilter
from gps_denied_nav.core.eskf_diagnostics import UpdateStatus
from gps_denied_nav.core.eskf_history import PositionReset
from gps_denied_nav.core.eskf_reset import apply_reset
from gps_denied_nav.core.eskf_state import E_ATT, E_POS, E_VEL, NOMINAL_DIM, X_QUAT, X_VEL, NominalState
from gps_denied_nav.core.rotations import (euler_from_quat, quat_from_euler, quat_from_rotvec, quat_multiply,
                                           quat_to_rotmat, wrap_angle)
from gps_denied_nav.sim.imu_model import BaroNoiseModel, ImuNoiseModel, eskf_process_noise, synthesize_imu

MEMS = ImuNoiseModel.bmi088_class()
T = np.arange(0.0, 20.0, 0.005)
TRUTH = banked_circle(T, np.array([0.0, 0.0, 120.0]), radius_m=150.0, speed_mps=15.0)
IMU = synthesize_imu(T, TRUTH.accel_enu_mps2, TRUTH.q_world_body, TRUTH.omega_body_radps, MEMS,
                     np.random.default_rng(3))
RNG = np.random.default_rng(4)
FIXES = [(s, TRUTH.pos_enu_m[int(round(s / 0.005)), :2] + RNG.normal(size=2) * 0.5,
          float(TRUTH.yaw_rad[int(round(s / 0.005))]) + RNG.normal() * 0.005) for s in np.arange(5.0, 20.0, 0.5)]


def diverged_filter() -> ErrorStateKalmanFilter:
    """Heading 40° off, velocity turned with it, and a covariance that believes it: a filter that was
    initialised badly and flew blind."""
    f = ErrorStateKalmanFilter(EskfConfig(process_noise=eskf_process_noise(MEMS, BaroNoiseModel.bmp388_class())))
    q_bad = quat_multiply(quat_from_rotvec(np.array([0.0, 0.0, np.radians(40.0)])), TRUTH.q_world_body[0])
    v_bad = np.array([[np.cos(0.7), -np.sin(0.7), 0], [np.sin(0.7), np.cos(0.7), 0], [0, 0, 1]]) @ TRUTH.vel_enu_mps[0]
    f.initialize(0.0, TRUTH.pos_enu_m[0], v_bad, q_bad, vel_sigma_mps=0.3, att_sigma_rad=(0.02, 0.02, 0.02))
    fly(f, IMU, [], t_end_s=5.0)
    return f


def fix_outcomes(f, fixes):
    return fly(f, IMU, [(s + 0.3, lambda s=s, p=p, y=y: f.update_visual_fix(s, p, np.eye(2) * 0.25, y, 0.005**2))
                        for s, p, y in fixes], t_end_s=20.0)


def test_position_only_reset_is_rejected_again_full_reset_recovers():
    stamp, pos, yaw = FIXES[0]
    only_position = diverged_filter()
    assert only_position.reinitialize_position(stamp, [*pos, 120.0], np.eye(3) * 0.25).status is UpdateStatus.ACCEPTED
    assert sum(o.status is UpdateStatus.REJECTED for o in fix_outcomes(only_position, FIXES[1:])) > 20

    full = diverged_filter()
    full.reinitialize_position(stamp, [*pos, 120.0], np.eye(3) * 0.25, yaw_rad=yaw, yaw_var_rad2=0.005**2,
                               vel_sigma_mps=5.0, tilt_sigma_rad=0.05)
    outcomes = fix_outcomes(full, FIXES[1:])
    assert sum(o.status is UpdateStatus.REJECTED for o in outcomes) <= 1
    assert np.linalg.norm(full.pos_enu_m[:2] - TRUTH.pos_enu_m[-1, :2]) < 1.0
    assert np.linalg.norm(full.vel_enu_mps[:2] - TRUTH.vel_enu_mps[-1, :2]) < 0.5   # no baro here: vertical is blind
    assert abs(wrap_angle(euler_from_quat(full.q_world_body)[2] - TRUTH.yaw_rad[-1])) < np.radians(1.0)


def test_apply_reset_turns_heading_and_velocity_and_replaces_blocks():
    state = NominalState(np.zeros(3), np.array([10.0, 0.0, 1.0]), quat_from_euler(0.1, -0.05, 0.3), np.zeros(3),
                         np.zeros(3), 5.0)
    x = state.to_vector()
    assert x.shape == (NOMINAL_DIM,)
    P = np.full((16, 16), 1e-3) + np.eye(16)
    reset = PositionReset(np.array([1.0, 2.0, 3.0]), np.eye(3) * 4.0, yaw_rad=1.3, yaw_var_rad2=1e-4,
                          vel_sigma_mps=5.0, tilt_sigma_rad=0.05)
    x2, P2 = apply_reset(x, P, reset)
    roll, pitch, yaw = euler_from_quat(x2[X_QUAT])
    assert (roll, pitch, yaw) == pytest.approx((0.1, -0.05, 1.3), abs=1e-9)
    v = x2[X_VEL]
    assert np.hypot(v[0], v[1]) == pytest.approx(10.0) and np.arctan2(v[1], v[0]) == pytest.approx(1.0)
    assert v[2] == pytest.approx(1.0)
    np.testing.assert_allclose(P2[E_VEL, E_VEL], np.eye(3) * 25.0)
    np.testing.assert_allclose(P2[E_POS, E_POS], np.eye(3) * 4.0)
    assert np.all(P2[E_POS, 9:] == 0.0) and np.all(P2[E_ATT, E_VEL] == 0.0)
    # Body-frame angle covariance: the world yaw variance about the (tilted) vertical stays small.
    np.testing.assert_allclose(np.linalg.eigvalsh(P2[E_ATT, E_ATT]), sorted([1e-4, 0.0025, 0.0025]), rtol=1e-9)
    np.testing.assert_array_equal(P, np.full((16, 16), 1e-3) + np.eye(16))   # input untouched


def test_heading_reset_keeps_tilt_position_velocity_and_sets_the_heading():
    f = ErrorStateKalmanFilter()
    q0 = quat_from_euler(0.05, -0.03, 0.2)
    f.initialize(0.0, [1.0, 2.0, 3.0], [10.0, 1.0, 0.0], q0, att_sigma_rad=(0.05, 0.04, 0.2))
    f.propagate(0.01, [0.0, 0.0, 9.80665], [0.0, 0.0, 0.0])
    R0 = quat_to_rotmat(f.q_world_body)
    world_before = R0 @ f.covariance[E_ATT, E_ATT] @ R0.T
    pos, vel = f.pos_enu_m, f.vel_enu_mps
    assert f.yaw_sigma_rad > 0.15
    assert f.reset_heading(0.01, 0.5, 1e-6).status is UpdateStatus.ACCEPTED
    roll, pitch, yaw = euler_from_quat(f.q_world_body)
    assert yaw == pytest.approx(0.5, abs=1e-9)
    assert (roll, pitch) == pytest.approx(euler_from_quat(q0)[:2], abs=1e-3)
    np.testing.assert_allclose(f.pos_enu_m, pos)
    np.testing.assert_allclose(f.vel_enu_mps, vel)        # GNSS-given velocity does not turn with the heading
    R = quat_to_rotmat(f.q_world_body)
    world_after = R @ f.covariance[E_ATT, E_ATT] @ R.T
    assert world_after[2, 2] == pytest.approx(1e-6)
    assert f.yaw_sigma_rad == pytest.approx(1e-3)
    np.testing.assert_allclose(world_after[:2, :2], world_before[:2, :2], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(world_after[:2, 2], 0.0, atol=1e-12)
    assert np.all(np.linalg.eigvalsh(f.covariance) > 0.0)
