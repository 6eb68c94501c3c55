"""ESKF behaviour on analytic flights: rest, straight flight, banked turn, baro, long-run covariance health."""
import numpy as np
import pytest
from eskf_truth import G_MPS2, banked_circle, constant_velocity, fly, static

from gps_denied_nav.core.baro import pressure_to_altitude_m
from gps_denied_nav.core.eskf import EskfConfig, ErrorStateKalmanFilter
from gps_denied_nav.core.eskf_diagnostics import MeasurementKind, UpdateStatus
from gps_denied_nav.core.eskf_state import align_roll_pitch
from gps_denied_nav.core.rotations import (euler_from_quat, quat_conjugate, quat_from_euler, quat_multiply,
                                           rotvec_from_quat)
from gps_denied_nav.sim.imu_model import (BaroNoiseModel, ImuNoiseModel, eskf_process_noise, synthesize_baro,
                                          synthesize_imu)

MEMS = ImuNoiseModel.bmi088_class()
BARO = BaroNoiseModel.bmp388_class()


def make_filter(**config) -> ErrorStateKalmanFilter:
    return ErrorStateKalmanFilter(EskfConfig(process_noise=eskf_process_noise(MEMS, BARO), **config))


def imu_for(truth, noise, seed):
    return synthesize_imu(truth.t_s, truth.accel_enu_mps2, truth.q_world_body, truth.omega_body_radps,
                          noise, np.random.default_rng(seed))


def attitude_error_rad(q_est, q_true) -> np.ndarray:
    return rotvec_from_quat(quat_multiply(quat_conjugate(q_est), q_true))


def visual_fixes(truth, rng, period_s=0.5, latency_s=0.7, sigma_m=3.0, yaw_sigma_rad=np.radians(2.0),
                 offset_s=0.013):
    """Fix calls (arrival, call) for a filter bound later: stamped at exposure, arriving ``latency_s`` after."""
    stamps = np.arange(truth.t_s[0] + period_s + offset_s, truth.t_s[-1] - latency_s, period_s)
    fixes = []
    for stamp in stamps:
        k = int(np.argmin(np.abs(truth.t_s - stamp)))
        # Truth at the exact stamp: interpolate position (well below the fix noise).
        pos = np.array([np.interp(stamp, truth.t_s, truth.pos_enu_m[:, i]) for i in range(2)])
        fixes.append((stamp, pos + rng.normal(size=2) * sigma_m, truth.yaw_rad[k] + rng.normal() * yaw_sigma_rad))
    return [(stamp + latency_s, stamp, pos, yaw) for stamp, pos, yaw in fixes]


def test_static_alignment_and_filter_stays_put():
    t = np.arange(0.0, 10.0, 0.005)
    truth = static(t, [5.0, -3.0, 50.0], roll_rad=0.05, pitch_rad=-0.03, yaw_rad=0.7)
    perfect = imu_for(truth, ImuNoiseModel.noise_free(), 0)
    assert align_roll_pitch(perfect.accel_body_mps2[:200]) == pytest.approx((0.05, -0.03), abs=1e-12)

    noisy = imu_for(truth, MEMS, 1)
    roll, pitch = align_roll_pitch(noisy.accel_body_mps2[:200])
    # An accelerometer bias tilts the alignment by b/g: the one error alignment at rest cannot see.
    b = noisy.true_accel_bias[0]
    assert roll - 0.05 == pytest.approx(b[1] / G_MPS2, abs=5e-4)
    assert pitch + 0.03 == pytest.approx(-b[0] / G_MPS2, abs=5e-4)

    f = make_filter()
    f.initialize(0.0, truth.pos_enu_m[0], np.zeros(3), truth.q_world_body[0])
    fly(f, perfect, [])
    np.testing.assert_allclose(f.pos_enu_m, truth.pos_enu_m[0], atol=1e-9)
    np.testing.assert_allclose(f.vel_enu_mps, 0.0, atol=1e-9)

    f = make_filter()
    f.initialize(0.0, truth.pos_enu_m[0], np.zeros(3), quat_from_euler(roll, pitch, 0.7))
    zupts = [(s, lambda s=s: f.update_zero_velocity(s, 0.02)) for s in np.arange(0.1, 10.0, 0.1)]
    fly(f, noisy, zupts)
    # Some ZUPTs are stamped a rounding error after the newest IMU sample: deferred, then fused.
    assert f.diagnostics.counters[MeasurementKind.ZERO_VELOCITY].accepted == len(zupts)
    assert np.linalg.norm(f.pos_enu_m - truth.pos_enu_m[0]) < 0.2
    assert np.linalg.norm(f.vel_enu_mps) < 0.05
    roll_est, pitch_est, _ = euler_from_quat(f.q_world_body)
    assert abs(roll_est - 0.05) < np.radians(0.5) and abs(pitch_est + 0.03) < np.radians(0.5)


def test_constant_velocity_flight_tracks_truth_with_delayed_fixes():
    t = np.arange(0.0, 60.0, 0.01)
    truth = constant_velocity(t, np.array([0.0, 0.0, 120.0]), np.array([12.0, 9.0, 0.0]))
    imu = imu_for(truth, MEMS, 2)
    rng = np.random.default_rng(3)
    f = make_filter()
    f.initialize(0.0, truth.pos_enu_m[0] + [4.0, -3.0, 0.0], truth.vel_enu_mps[0], truth.q_world_body[0],
                 pos_sigma_m=5.0, vel_sigma_mps=0.5)
    calls = [(arr, lambda s=s, p=p, y=y: f.update_visual_fix(s, p, np.eye(2) * 9.0, y, np.radians(2.0) ** 2))
             for arr, s, p, y in visual_fixes(truth, rng)]
    outcomes = fly(f, imu, calls)
    assert sum(o.status is UpdateStatus.ACCEPTED for o in outcomes) >= len(outcomes) - 1
    err = f.pos_enu_m[:2] - truth.pos_enu_m[-1, :2]
    assert np.linalg.norm(err) < 3.0
    assert err @ np.linalg.solve(f.position_cov_m2[:2, :2], err) < 13.8  # 99.9 % for 2 dof
    assert np.linalg.norm(f.vel_enu_mps[:2] - truth.vel_enu_mps[-1, :2]) < 0.3


def test_banked_turn_with_noisy_imu_fixes_and_baro():
    t = np.arange(0.0, 90.0, 0.01)
    truth = banked_circle(t, np.array([0.0, 0.0, 150.0]), radius_m=150.0, speed_mps=20.0)  # 15° bank
    imu = imu_for(truth, MEMS, 4)
    rng = np.random.default_rng(5)
    baro = synthesize_baro(t[::10], truth.pos_enu_m[::10, 2] + 35.0, BARO, rng)
    baro_alt = pressure_to_altitude_m(baro.pressure_pa)
    f = make_filter()
    q0 = quat_multiply(truth.q_world_body[0], quat_from_euler(0.01, -0.01, 0.05))
    f.initialize(0.0, truth.pos_enu_m[0] + [3.0, 2.0, -1.0], truth.vel_enu_mps[0] + 0.3, q0,
                 pos_sigma_m=5.0, vel_sigma_mps=0.5, att_sigma_rad=(0.02, 0.02, 0.1),
                 accel_bias_sigma_mps2=MEMS.accel_bias_init_sigma_mps2,
                 gyro_bias_sigma_radps=MEMS.gyro_bias_init_sigma_radps)
    calls = [(arr, lambda s=s, p=p, y=y: f.update_visual_fix(s, p, np.eye(2) * 9.0, y, np.radians(2.0) ** 2))
             for arr, s, p, y in visual_fixes(truth, rng, latency_s=0.6)]
    calls += [(s, lambda s=s, a=a: f.update_baro(s, a, 0.25)) for s, a in zip(baro.t_s[1:], baro_alt[1:])]
    errors, nees = [], []

    def probe(s):
        k = int(np.searchsorted(t, s))
        err = f.pos_enu_m - truth.pos_enu_m[k]
        errors.append(np.linalg.norm(err[:2]))
        nees.append(err @ np.linalg.solve(f.position_cov_m2, err))

    calls += [(s, lambda s=s: probe(s)) for s in np.arange(30.0, 89.0, 1.0)]
    fly(f, imu, calls)
    assert np.sqrt(np.mean(np.square(errors))) < 2.5
    assert np.mean(nees) < 8.0                    # about 3 for a consistent filter
    att_err = attitude_error_rad(f.q_world_body, truth.q_world_body[-1])
    assert np.all(np.abs(att_err) < np.radians([0.5, 0.5, 1.5]))
    assert abs(f.pos_enu_m[2] - truth.pos_enu_m[-1, 2]) < 2.0
    # The yaw-axis gyro bias is observable through the heading fixes.
    gz_err = f.gyro_bias_radps[2] - imu.true_gyro_bias[-1, 2]
    assert abs(gz_err) < 3.0 * np.sqrt(f.covariance[14, 14])


def test_baro_offset_and_altitude_from_a_diffuse_prior():
    t = np.arange(0.0, 40.0, 0.01)
    truth = constant_velocity(t, np.array([0.0, 0.0, 100.0]), np.array([15.0, 0.0, 2.0]))
    imu = imu_for(truth, MEMS, 6)
    rng = np.random.default_rng(7)
    baro = synthesize_baro(t[::5], truth.pos_enu_m[::5, 2] + 250.0, BARO, rng)  # origin 250 m above sea level
    f = make_filter()
    f.initialize(0.0, truth.pos_enu_m[0], truth.vel_enu_mps[0], truth.q_world_body[0], pos_sigma_m=1.0,
                 vel_sigma_mps=0.3)
    calls = [(s, lambda s=s, p=p: f.update_baro(s, pressure_to_altitude_m(p), 0.25))
             for s, p in zip(baro.t_s[1:], baro.pressure_pa[1:])]
    outcomes = fly(f, imu, calls)
    assert all(o.status is UpdateStatus.ACCEPTED for o in outcomes)
    true_offset = 250.0 + baro.true_bias_m[-1]
    assert abs(f.baro_offset_m - true_offset) < 3.0 * np.sqrt(f.covariance[15, 15]) + 0.5
    assert abs(f.pos_enu_m[2] - truth.pos_enu_m[-1, 2]) < 2.0
    assert abs(f.vel_enu_mps[2] - 2.0) < 0.2
    assert f.diagnostics.counters[MeasurementKind.BARO].accepted == len(calls)


def test_joseph_form_keeps_covariance_symmetric_positive_definite_over_a_long_run():
    t = np.arange(0.0, 300.0, 0.02)
    truth = constant_velocity(t, np.zeros(3), np.array([10.0, -5.0, 0.5]))
    imu = imu_for(truth, MEMS, 8)
    rng = np.random.default_rng(9)
    f = make_filter()
    f.initialize(0.0, truth.pos_enu_m[0], truth.vel_enu_mps[0], truth.q_world_body[0])
    min_eig = []
    calls = []
    for s in np.arange(0.2, 299.0, 0.2):
        k = int(round(s / 0.02))
        # Very precise 3D fixes against a diffuse baro offset stress the update's conditioning.
        calls.append((s + 0.3, lambda s=s, k=k: f.update_gnss(s, truth.pos_enu_m[k] + rng.normal(size=3) * 0.01,
                                                              np.eye(3) * 1e-4)))
        if k % 50 == 0:
            calls.append((s + 0.31, lambda: min_eig.append(np.linalg.eigvalsh(f.covariance).min())))
    fly(f, imu, calls)
    P = f.covariance
    np.testing.assert_allclose(P, P.T, rtol=0, atol=1e-12 * np.abs(P).max())
    assert min(min_eig) > 0.0 and np.linalg.eigvalsh(P).min() > 0.0


def test_estimate_at_predicts_without_touching_the_filter():
    t = np.arange(0.0, 5.0, 0.01)
    truth = banked_circle(t, np.zeros(3), radius_m=100.0, speed_mps=15.0)
    imu = imu_for(truth, ImuNoiseModel.noise_free(), 0)
    f = make_filter()
    f.initialize(0.0, truth.pos_enu_m[0], truth.vel_enu_mps[0], truth.q_world_body[0])
    fly(f, imu, [], t_end_s=4.0)
    before = f.covariance.copy(), f.pos_enu_m.copy()
    ahead = f.estimate_at(4.004)
    past = f.estimate_at(2.503)
    np.testing.assert_array_equal(f.covariance, before[0])
    np.testing.assert_array_equal(f.pos_enu_m, before[1])
    for estimate in (ahead, past):
        truth_pos = [np.interp(estimate.stamp_s, t, truth.pos_enu_m[:, i]) for i in range(3)]
        assert np.linalg.norm(estimate.state.pos_enu_m - truth_pos) < 0.01
    assert np.trace(ahead.covariance[:3, :3]) > np.trace(before[0][:3, :3])
