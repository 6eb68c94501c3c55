"""Delayed fusion by rollback and replay: equality with on-time fusion, ordering, refusal, gating, recovery."""
import numpy as np
import pytest
from eskf_truth import banked_circle, fly

from gps_denied_nav.core.eskf import EskfConfig, ErrorStateKalmanFilter
from gps_denied_nav.core.eskf_diagnostics import MeasurementKind, ReinitReason, UpdateStatus
from gps_denied_nav.sim.imu_model import BaroNoiseModel, ImuNoiseModel, eskf_process_noise, synthesize_imu

MEMS = ImuNoiseModel.bmi088_class()
T = np.arange(0.0, 12.0, 0.005)   # 200 Hz
TRUTH = banked_circle(T, np.array([0.0, 0.0, 120.0]), radius_m=120.0, speed_mps=18.0)
IMU = synthesize_imu(T, TRUTH.accel_enu_mps2, TRUTH.q_world_body, TRUTH.omega_body_radps, MEMS,
                     np.random.default_rng(11))
_RNG = np.random.default_rng(12)
# Fix stamps fall between IMU samples; each carries truth + noise.
FIX_STAMPS = np.arange(1.0013, 11.0, 0.5)
FIXES = [(s, np.array([np.interp(s, T, TRUTH.pos_enu_m[:, i]) for i in range(2)]) + _RNG.normal(size=2) * 3.0,
          float(np.interp(s, T, np.unwrap(TRUTH.yaw_rad))) + _RNG.normal() * 0.03) for s in FIX_STAMPS]
BAROS = [(s, 120.0 + 40.0 + _RNG.normal() * 0.5) for s in np.arange(0.05, 12.0, 0.05)]


def make_filter(**config) -> ErrorStateKalmanFilter:
    f = ErrorStateKalmanFilter(EskfConfig(process_noise=eskf_process_noise(MEMS, BaroNoiseModel.bmp388_class()),
                                          **config))
    f.initialize(0.0, TRUTH.pos_enu_m[0] + [2.0, -1.0, 0.5], TRUTH.vel_enu_mps[0], TRUTH.q_world_body[0],
                 baro_offset_m=40.0, baro_offset_sigma_m=2.0)
    return f


def fix_call(f, fix, pos_offset_m=0.0):
    stamp, pos, yaw = fix
    return lambda: f.update_visual_fix(stamp, pos + pos_offset_m, np.eye(2) * 9.0, yaw, 0.03**2)


def baro_calls(f):
    return [(s, lambda s=s, a=a: f.update_baro(s, a, 0.25)) for s, a in BAROS]


def run_with_latency(latencies_s, config=None):
    """Fly the circle with every fix arriving ``latency`` after its stamp (baro always on time)."""
    f = make_filter(**(config or {}))
    calls = baro_calls(f) + [(fix[0] + lat, fix_call(f, fix)) for fix, lat in zip(FIXES, latencies_s)]
    outcomes = fly(f, IMU, calls)
    return f, outcomes


def test_delayed_fix_equals_fusing_it_on_time():
    on_time, _ = run_with_latency(np.zeros(len(FIXES)))
    late, outcomes = run_with_latency(np.full(len(FIXES), 1.2))
    fixes = [o for o in outcomes if o.kind is MeasurementKind.VISUAL_FIX]
    assert len(fixes) == len(FIXES) and all(o.status is UpdateStatus.ACCEPTED for o in fixes)
    np.testing.assert_allclose(late.state.to_vector(), on_time.state.to_vector(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(late.covariance, on_time.covariance, rtol=0, atol=1e-9)
    # And the fixes did something: a filter without them is elsewhere.
    blind = make_filter()
    fly(blind, IMU, baro_calls(blind))
    assert np.linalg.norm(blind.pos_enu_m - on_time.pos_enu_m) > 0.5


def test_out_of_order_fixes_roll_back_further():
    on_time, _ = run_with_latency(np.zeros(len(FIXES)))
    # Latencies 0.2-2 s make later-stamped fixes overtake earlier ones.
    latencies = np.random.default_rng(13).uniform(0.2, 2.0, len(FIXES))
    shuffled, outcomes = run_with_latency(latencies)
    arrivals = FIX_STAMPS + latencies
    assert np.any(np.diff(FIX_STAMPS[np.argsort(arrivals)]) < 0)
    np.testing.assert_allclose(shuffled.state.to_vector(), on_time.state.to_vector(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(shuffled.covariance, on_time.covariance, rtol=0, atol=1e-9)


def test_too_old_fix_is_refused_counted_and_ignored():
    f = make_filter(history_s=3.0)
    fly(f, IMU, [], t_end_s=8.0)
    before = f.state.to_vector(), f.covariance
    outcome = fix_call(f, FIXES[7])()   # stamped 4.5 s, now 8.0 s: 3.5 s late
    assert outcome.status is UpdateStatus.TOO_OLD
    assert f.diagnostics.counters[MeasurementKind.VISUAL_FIX].too_old == 1
    np.testing.assert_array_equal(f.state.to_vector(), before[0])
    np.testing.assert_array_equal(f.covariance, before[1])
    assert fix_call(f, FIXES[9])().status is UpdateStatus.ACCEPTED   # 2.5 s late: inside the window


def test_fix_ahead_of_the_imu_waits_for_it():
    f = make_filter()
    fly(f, IMU, [], t_end_s=1.0)
    assert fix_call(f, FIXES[0])().status is UpdateStatus.DEFERRED   # stamped 1.0013 s, IMU at 1.0 s
    assert f.diagnostics.counters[MeasurementKind.VISUAL_FIX].accepted == 0
    fly(f, IMU, [], t_end_s=1.01)
    assert f.diagnostics.counters[MeasurementKind.VISUAL_FIX].accepted == 1


def test_outlier_is_rejected_counted_and_leaves_the_state_alone():
    clean, _ = run_with_latency(np.full(len(FIXES), 1.0))
    f = make_filter()
    calls = baro_calls(f) + [(fix[0] + 1.0, fix_call(f, fix)) for fix in FIXES]
    calls.append((6.5, fix_call(f, (5.2, TRUTH.pos_enu_m[1040, :2] + [300.0, 0.0], TRUTH.yaw_rad[1040]))))
    outcomes = fly(f, IMU, calls)
    rejected = [o for o in outcomes if o.status is UpdateStatus.REJECTED]
    assert len(rejected) == 1 and rejected[0].stamp_s == 5.2 and rejected[0].nis > 1e3
    assert f.diagnostics.counters[MeasurementKind.VISUAL_FIX].rejected == 1
    np.testing.assert_allclose(f.state.to_vector(), clean.state.to_vector(), rtol=0, atol=1e-9)


def test_repeated_rejections_raise_needs_reinit_and_a_position_reset_recovers():
    f = make_filter(max_consecutive_visual_rejections=5)
    good = [(fix[0] + 0.5, fix_call(f, fix)) for fix in FIXES[:8]]          # up to 4.5 s
    bad = [(fix[0] + 0.5, fix_call(f, fix, pos_offset_m=400.0)) for fix in FIXES[8:13]]  # 5.0-7.0 s
    fly(f, IMU, good + bad, t_end_s=7.6)
    assert f.needs_reinit and f.reinit_reason is ReinitReason.CONSECUTIVE_REJECTIONS
    assert f.diagnostics.consecutive_visual_rejections == 5
    # Global retrieval finds the aircraft (here 400 m from where the local matcher kept looking).
    k = int(round(7.3 / 0.005))
    outcome = f.reinitialize_position(7.3, TRUTH.pos_enu_m[k] + [400.0, 400.0, 0.0], np.eye(3) * 16.0)
    assert outcome.status is UpdateStatus.ACCEPTED
    assert not f.needs_reinit and f.diagnostics.position_resets == 1
    assert np.linalg.norm(f.pos_enu_m[:2] - TRUTH.pos_enu_m[int(7.6 / 0.005), :2] - 400.0) < 5.0
    shifted = (FIXES[14][0], FIXES[14][1] + 400.0, FIXES[14][2])             # stamped 8.0 s
    assert fly(f, IMU, [(8.3, fix_call(f, shifted))])[0].status is UpdateStatus.ACCEPTED


def test_growing_position_covariance_raises_needs_reinit():
    f = make_filter(max_position_cov_trace_m2=200.0)
    fly(f, IMU, [(fix[0] + 0.5, fix_call(f, fix)) for fix in FIXES[:4]], t_end_s=3.0)
    assert not f.needs_reinit
    fly(f, IMU, [])    # 9 s without fixes
    assert f.reinit_reason is ReinitReason.POSITION_COVARIANCE
    assert f.diagnostics.position_cov_trace_m2 > 200.0


def test_generic_update_and_uninitialised_use():
    with pytest.raises(RuntimeError):
        ErrorStateKalmanFilter().propagate(0.0, np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError):
        EskfConfig(gate_probability=1.0)
    f = make_filter()
    H = np.zeros((1, 16))
    H[0, 0] = 1.0
    outcome = f.update(np.array([0.5]), H, np.array([[1.0]]), MeasurementKind.GNSS)
    assert outcome.status is UpdateStatus.ACCEPTED and outcome.dof == 1
    assert f.pos_enu_m[0] > TRUTH.pos_enu_m[0, 0] + 2.0


def test_bad_imu_samples_are_dropped_and_counted():
    f = make_filter()
    fly(f, IMU, [], t_end_s=1.0)
    before = f.state.to_vector()
    f.propagate(f.stamp_s, IMU.accel_body_mps2[0], IMU.gyro_body_radps[0])           # repeated stamp
    f.propagate(f.stamp_s - 0.5, IMU.accel_body_mps2[0], IMU.gyro_body_radps[0])     # from the past
    f.propagate(f.stamp_s + 0.005, [np.nan, 0.0, 9.8], IMU.gyro_body_radps[0])       # corrupt
    assert f.diagnostics.imu_samples_dropped == 3
    np.testing.assert_array_equal(f.state.to_vector(), before)
