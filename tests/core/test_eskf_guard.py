"""The filter cannot be poisoned: absurd IMU samples, bad covariances and far-future stamps are refused
and counted; a state that is not trusted says lost; IMU gaps grow the covariance for the missing time."""
import numpy as np
from eskf_truth import banked_circle

from gps_denied_nav.core.eskf import EskfConfig, ErrorStateKalmanFilter
from gps_denied_nav.core.eskf_config import ImuGapModel
from gps_denied_nav.core.eskf_diagnostics import MeasurementKind, ReinitReason, UpdateStatus
from gps_denied_nav.core.eskf_state import E_ATT, E_POS, E_VEL, X_VEL
from gps_denied_nav.sim.imu_model import ImuNoiseModel, synthesize_imu

HOVER = np.array([0.0, 0.0, 9.80665])


def hovering(**config) -> ErrorStateKalmanFilter:
    f = ErrorStateKalmanFilter(EskfConfig(**config))
    f.initialize(0.0, [0.0, 0.0, 100.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0])
    return f


def fly_hover(f, t0, t1, rate_hz=200.0):
    for t in np.arange(t0, t1, 1.0 / rate_hz) + 1.0 / rate_hz:
        f.propagate(t, HOVER, np.zeros(3))


def test_out_of_range_and_jumping_imu_samples_are_dropped_not_integrated():
    f = hovering()
    fly_hover(f, 0.0, 1.0)
    before = f.state
    f.propagate(1.001, [1e12, 0.0, 9.8], np.zeros(3))      # beyond ±16 g
    f.propagate(1.002, HOVER, [0.0, 1e12, 0.0])            # beyond ±35 rad/s
    f.propagate(7201.0, HOVER, np.zeros(3))                # two hours ahead
    assert f.diagnostics.imu_samples_dropped == 3
    fly_hover(f, 1.0, 2.0)                                 # the stream goes on as if nothing happened
    assert f.stamp_s < 3.0 and np.linalg.norm(f.pos_enu_m - before.pos_enu_m) < 0.05
    assert not f.needs_reinit


def test_a_batch_with_one_wild_stamp_keeps_the_others():
    f = hovering()
    stamps = np.array([0.005, 0.010, 7200.0, 0.015, 0.020])
    f.propagate_batch(stamps, np.tile(HOVER, (5, 1)), np.zeros((5, 3)))
    assert f.diagnostics.imu_samples_dropped == 1 and abs(f.stamp_s - 0.020) < 1e-12


def test_invalid_measurements_and_resets_are_refused_and_leave_the_filter_alone():
    f = hovering()
    fly_hover(f, 0.0, 1.0)
    P, x = f.covariance, f.state.pos_enu_m
    outcomes = [f.update_visual_fix(0.9, [1.0, 1.0], np.eye(2) * np.nan),
                f.update_visual_fix(0.9, [1.0, 1.0], -np.eye(2)),
                f.update_visual_fix(0.9, [1.0, 1.0], np.eye(2), yaw_rad=0.1, yaw_var_rad2=float("nan")),
                f.reinitialize_position(0.9, [5.0, 5.0, 100.0], np.eye(3), yaw_rad=0.0, yaw_var_rad2=float("nan")),
                f.reinitialize_position(0.9, [5.0, 5.0, 100.0], np.eye(3) * -1.0)]
    assert all(o.status is UpdateStatus.INVALID for o in outcomes)
    np.testing.assert_array_equal(f.covariance, P)
    np.testing.assert_array_equal(f.state.pos_enu_m, x)
    d = f.diagnostics
    assert d.counters[MeasurementKind.VISUAL_FIX].invalid == 3 and d.counters[MeasurementKind.POSITION_RESET].invalid == 2
    assert d.position_resets == 0 and "reset" in d.last_invalid


def test_far_future_stamps_are_refused_and_the_waiting_list_is_bounded():
    f = hovering(max_pending_events=10)
    fly_hover(f, 0.0, 1.0)
    assert f.update_visual_fix(3600.0, [0.0, 0.0], np.eye(2)).status is UpdateStatus.TOO_NEW
    waiting = [f.update_visual_fix(1.5 + 0.01 * i, [0.0, 0.0], np.eye(2)).status for i in range(15)]
    assert waiting.count(UpdateStatus.DEFERRED) == 10 and waiting.count(UpdateStatus.TOO_NEW) == 5
    assert f.diagnostics.counters[MeasurementKind.VISUAL_FIX].too_new == 6
    fly_hover(f, 1.0, 2.0)  # the waiting ones are fused when the IMU passes them
    assert f.diagnostics.counters[MeasurementKind.VISUAL_FIX].accepted == 10


def test_a_state_that_is_not_trusted_means_lost():
    f = hovering()
    fly_hover(f, 0.0, 0.5)
    assert f.reinit_reason is ReinitReason.NONE and f.state_problem is None
    hist = f._timeline.history
    hist.x[-1][X_VEL] = [400.0, 0.0, 0.0]              # faster than any UAV
    assert f.needs_reinit and f.reinit_reason is ReinitReason.INVALID_STATE and "speed" in f.state_problem
    hist.x[-1][X_VEL] = 0.0
    hist.P[-1][0, 0] = np.nan
    assert f.reinit_reason is ReinitReason.INVALID_STATE and "covariance" in f.state_problem
    hist.P[-1][0, 0] = -1.0
    assert f.reinit_reason is ReinitReason.INVALID_STATE
    assert f.diagnostics.needs_reinit


def test_imu_gap_grows_the_covariance_for_the_missing_time():
    """Two seconds without IMU in a turn: the interpolated input misses the motion; P must say so."""
    t = np.arange(0.0, 6.0, 0.005)
    truth = banked_circle(t, np.array([0.0, 0.0, 120.0]), radius_m=120.0, speed_mps=18.0)
    imu = synthesize_imu(t, truth.accel_enu_mps2, truth.q_world_body, truth.omega_body_radps,
                         ImuNoiseModel.bmi088_class(), np.random.default_rng(3))
    keep = (t < 2.0) | (t >= 4.0)
    sigmas = {}
    for name, gap in (("modelled", ImuGapModel()), ("white noise only", ImuGapModel(nominal_max_s=1e9))):
        f = ErrorStateKalmanFilter(EskfConfig(imu_gap=gap))
        f.initialize(0.0, truth.pos_enu_m[0], truth.vel_enu_mps[0], truth.q_world_body[0], pos_sigma_m=1.0)
        f.propagate_batch(t[keep][1:], imu.accel_body_mps2[keep][1:], imu.gyro_body_radps[keep][1:])
        P = f.estimate_at(4.0).covariance
        sigmas[name] = [float(np.sqrt(np.trace(P[b, b]) / 3)) for b in (E_POS, E_VEL, E_ATT)]
    # 1.95 s beyond the nominal interval, as white input noise: the variance added is q_a² · 1.95 on each
    # velocity axis and q_g² · 1.95 rad² on each angle (rotated and mixed by the turn: ±25 %).
    gap, gap_s = ImuGapModel(), 2.0 - ImuGapModel().nominal_max_s
    added = [m**2 - w**2 for m, w in zip(sigmas["modelled"], sigmas["white noise only"])]
    assert abs(added[1] / (gap.accel_density_mps2_rthz**2 * gap_s) - 1.0) < 0.25, sigmas
    assert abs(added[2] / (gap.gyro_density_radps_rthz**2 * gap_s) - 1.0) < 0.25, sigmas


def test_the_variance_a_gap_adds_does_not_depend_on_fixes_splitting_it():
    """Measurements fused inside a gap split its interval; each piece gets its share of the gap."""
    timeline = hovering()._timeline
    q_whole = timeline._process_noise(np.array([2.0]), np.array([2.0]))[0]
    pieces = np.full(100, 0.02)  # baro updates every 20 ms inside the gap
    q_split = timeline._process_noise(pieces, np.full(100, 2.0)).sum(axis=0)
    for block in (E_VEL, E_ATT):  # position: the pieces' velocity noise reaches it through the transitions
        np.testing.assert_allclose(q_split[block], q_whole[block], rtol=1e-9)
