"""The survey trajectory's kinematics are exact: derivatives agree, the turn is coordinated, and noise-free
IMU samples made from it (by imu_model) integrate back to the trajectory."""
import numpy as np
import pytest

from gps_denied_nav.core.rotations import (quat_conjugate, quat_from_rotvec, quat_multiply, quat_multiply_batch,
                                           quat_to_rotmat, quat_to_rotmat_batch, rotvec_from_quat)
from gps_denied_nav.sim.imu_model import ImuNoiseModel, synthesize_imu
from gps_denied_nav.sim.trajectory import SurveyTrajectory

BOX = (-300.0, -400.0, 300.0, 400.0)


@pytest.fixture(scope="module")
def survey():
    return SurveyTrajectory.survey(*BOX, min_duration_s=120.0, speed_mps=12.0, altitude_m=120.0)


def test_survey_stays_in_the_box_and_banks_like_an_aircraft(survey):
    assert survey.duration_s >= 120.0
    k = survey.sample(np.arange(0.0, survey.duration_s, 0.05))
    east, north = k.pos_enu_m[:, 0], k.pos_enu_m[:, 1]
    assert east.min() >= BOX[0] - 1e-6 and east.max() <= BOX[2] + 1e-6
    assert north.min() >= BOX[1] - 1e-6 and north.max() <= BOX[3] + 1e-6
    assert north.max() - north.min() > 700.0  # legs run along the long side
    np.testing.assert_allclose(np.linalg.norm(k.vel_enu_mps[:, :2], axis=1), 12.0, atol=1e-9)
    roll_deg = np.degrees(np.abs(k.euler_rad[:, 0]))
    assert 14.0 < roll_deg.max() < 15.5 and np.median(roll_deg) < 1.0  # banked in turns, level on legs
    assert np.all(np.abs(np.diff(k.q_world_body, axis=0)).max(axis=1) < 0.01)  # continuous, no sign flips
    R = quat_to_rotmat_batch(k.q_world_body)
    f_body = np.einsum("nji,nj->ni", R, k.accel_enu_mps2 + [0.0, 0.0, 9.80665])
    assert np.abs(f_body[:, 1]).max() < 0.01  # coordinated: no side force, lift tilts into the turn


def test_derivatives_are_consistent(survey):
    dt = 1e-3
    t = np.arange(20.0, 60.0, dt)  # leg, turn and leg
    k = survey.sample(t)
    np.testing.assert_allclose(np.gradient(k.pos_enu_m, dt, axis=0)[1:-1], k.vel_enu_mps[1:-1], atol=1e-5)
    np.testing.assert_allclose(np.gradient(k.vel_enu_mps, dt, axis=0)[1:-1], k.accel_enu_mps2[1:-1], atol=1e-5)
    q_dot = np.gradient(k.q_world_body, dt, axis=0)
    q_dot_model = 0.5 * quat_multiply_batch(k.q_world_body, np.column_stack([np.zeros(len(t)), k.omega_body_radps]))
    np.testing.assert_allclose(q_dot[1:-1], q_dot_model[1:-1], atol=1e-6)
    assert np.abs(k.omega_body_radps[:, 2]).max() > 0.2  # the turn is in there


def test_strapdown_of_noise_free_imu_reproduces_the_trajectory(survey):
    rate_hz, duration_s = 400.0, 60.0
    t = 30.0 + np.arange(0.0, duration_s + 0.5 / rate_hz, 1.0 / rate_hz)  # the first turn is at ~57-72 s
    k = survey.sample(t)
    assert np.abs(k.euler_rad[:, 2] - k.euler_rad[0, 2]).max() > 3.0
    imu = synthesize_imu(t, k.accel_enu_mps2, k.q_world_body, k.omega_body_radps, ImuNoiseModel.noise_free(),
                         np.random.default_rng(0))
    g = np.array([0.0, 0.0, -9.80665])
    dt = 1.0 / rate_hz
    q, v, p = k.q_world_body[0].copy(), k.vel_enu_mps[0].copy(), k.pos_enu_m[0].copy()
    f, w = imu.accel_body_mps2, imu.gyro_body_radps
    a_prev = quat_to_rotmat(q) @ f[0] + g
    for i in range(len(t) - 1):
        # Second-order attitude update with the coning term, trapezoidal velocity and position.
        q = quat_multiply(q, quat_from_rotvec(0.5 * (w[i] + w[i + 1]) * dt + np.cross(w[i], w[i + 1]) * dt * dt / 12))
        q /= np.linalg.norm(q)
        a = quat_to_rotmat(q) @ f[i + 1] + g
        v_next = v + 0.5 * (a_prev + a) * dt
        p += 0.5 * (v + v_next) * dt + (a_prev - a) * dt * dt / 12
        v, a_prev = v_next, a
    assert np.linalg.norm(p - k.pos_enu_m[-1]) < 1.0
    assert np.linalg.norm(v - k.vel_enu_mps[-1]) < 0.05
    assert np.linalg.norm(rotvec_from_quat(quat_multiply(quat_conjugate(q), k.q_world_body[-1]))) < 1e-4


def test_too_small_a_box_is_refused():
    with pytest.raises(ValueError, match="too small"):
        SurveyTrajectory.survey(0.0, 0.0, 150.0, 80.0, min_duration_s=60.0)
