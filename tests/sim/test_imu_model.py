"""IMU and baro synthesis: specific force convention, noise levels, bias random walks."""
import numpy as np
import pytest

from gps_denied_nav.core.baro import pressure_to_altitude_m
from gps_denied_nav.core.rotations import quat_from_euler, quat_to_rotmat
from gps_denied_nav.sim.imu_model import (BaroNoiseModel, ImuNoiseModel, eskf_process_noise, synthesize_baro,
                                          synthesize_imu)


def _static(n, dt_s=0.005, q=None):
    t = np.arange(n) * dt_s
    q = np.tile(quat_from_euler(0.0, 0.0, 0.0) if q is None else q, (n, 1))
    return t, np.zeros((n, 3)), q, np.zeros((n, 3))


def test_noise_free_specific_force_is_gravity_reaction_in_body():
    q = quat_from_euler(0.2, -0.1, 1.0)
    t, acc, qs, w = _static(10, q=q)
    acc[:] = [1.0, 2.0, 0.5]
    w[:] = [0.01, 0.02, 0.03]
    s = synthesize_imu(t, acc, qs, w, ImuNoiseModel.noise_free(), np.random.default_rng(0))
    expected = quat_to_rotmat(q).T @ (np.array([1.0, 2.0, 0.5]) + [0.0, 0.0, 9.80665])
    np.testing.assert_allclose(s.accel_body_mps2, np.tile(expected, (10, 1)), atol=1e-12)
    np.testing.assert_allclose(s.gyro_body_radps, w)
    assert s.true_accel_bias.shape == (10, 3) and not s.true_gyro_bias.any()
    level = synthesize_imu(t, np.zeros((10, 3)), _static(10)[2], w, ImuNoiseModel.noise_free(),
                           np.random.default_rng(0))
    np.testing.assert_allclose(level.accel_body_mps2[0], [0.0, 0.0, 9.80665])   # FLU: up at rest


def test_white_noise_level_follows_the_density():
    noise = ImuNoiseModel.bmi088_class()
    t, acc, q, w = _static(20000, dt_s=0.0025)
    s = synthesize_imu(t, acc, q, w, noise, np.random.default_rng(1))
    # Remove the (slow) bias and compare the sample spread with density/sqrt(dt).
    gyro_white = s.gyro_body_radps - s.true_gyro_bias
    accel_white = s.accel_body_mps2 - s.true_accel_bias - [0.0, 0.0, 9.80665]
    assert np.std(gyro_white) == pytest.approx(noise.gyro_noise_density_radps_rthz / np.sqrt(0.0025), rel=0.03)
    assert np.std(accel_white) == pytest.approx(noise.accel_noise_density_mps2_rthz / np.sqrt(0.0025), rel=0.03)


def test_bias_random_walk_and_turn_on_spread():
    noise = ImuNoiseModel.bmi088_class()
    t, acc, q, w = _static(1001, dt_s=0.1)   # 100 s
    starts, drifts = [], []
    for seed in range(200):
        s = synthesize_imu(t, acc, q, w, noise, np.random.default_rng(seed))
        starts.append(s.true_gyro_bias[0])
        drifts.append(s.true_accel_bias[-1] - s.true_accel_bias[0])
    assert np.std(starts) == pytest.approx(noise.gyro_bias_init_sigma_radps, rel=0.1)
    assert np.std(drifts) == pytest.approx(noise.accel_bias_random_walk_mps3_rthz * np.sqrt(100.0), rel=0.1)


def test_named_classes_are_ordered_and_map_to_the_filter():
    mems, tactical = ImuNoiseModel.bmi088_class(), ImuNoiseModel.tactical_grade()
    assert tactical.gyro_noise_density_radps_rthz < mems.gyro_noise_density_radps_rthz / 5
    assert tactical.gyro_bias_init_sigma_radps < mems.gyro_bias_init_sigma_radps / 100
    pn = eskf_process_noise(mems, BaroNoiseModel.bmp388_class())
    assert pn.gyro_noise_density_radps_rthz == mems.gyro_noise_density_radps_rthz
    assert pn.baro_offset_random_walk_m_rts == BaroNoiseModel.bmp388_class().bias_random_walk_m_rts


def test_baro_synthesis_round_trips_through_the_standard_atmosphere():
    t = np.arange(0.0, 60.0, 0.05)
    alt = 300.0 + 2.0 * t
    s = synthesize_baro(t, alt, BaroNoiseModel.noise_free(), np.random.default_rng(0))
    np.testing.assert_allclose(pressure_to_altitude_m(s.pressure_pa), alt, atol=1e-6)
    noisy = synthesize_baro(t, alt, BaroNoiseModel.bmp388_class(), np.random.default_rng(1))
    resid = pressure_to_altitude_m(noisy.pressure_pa) - alt - noisy.true_bias_m
    assert np.std(resid) == pytest.approx(0.5, rel=0.1)
