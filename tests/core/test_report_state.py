"""Velocity, attitude and 3-D position scoring against ground-truth odometry, across ENU frames."""
import json

import numpy as np
import pytest

from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.report import GeoTrack, score_replay
from gps_denied_nav.core.report_state import StateErrorStats, StateTrack, state_error_series, truth_odometry_frame
from gps_denied_nav.core.rotations import (quat_from_euler, quat_from_rotvec_batch, quat_multiply_batch,
                                           quat_to_rotmat_batch, rotmat_to_quat)

TRUTH_FRAME = LocalTangentPlane(47.3977, 8.5456, 400.0)
NEW_KEYS = {"velocity_rmse_mps", "velocity_horizontal_rmse_mps", "nees_velocity_mean", "attitude_tilt_rmse_deg",
            "yaw_rmse_deg", "nees_attitude_mean", "nees_position_3d_mean", "state_scoring"}


def turning_flight(t_s):
    """A 20 m/s level turn (0.05 rad/s) with a rocking roll: (pos_enu_m, q_world_body, vel_world_mps)."""
    t_s = np.asarray(t_s, dtype=float)
    yaw = 0.05 * t_s
    pos = np.stack([400.0 * np.sin(yaw), 400.0 * (1.0 - np.cos(yaw)), np.full(t_s.size, 120.0)], axis=-1)
    vel = np.stack([20.0 * np.cos(yaw), 20.0 * np.sin(yaw), np.zeros(t_s.size)], axis=-1)
    q = np.array([quat_from_euler(0.1 * np.sin(0.2 * t), 0.02, y) for t, y in zip(t_s, yaw)])
    return pos, q, vel


def truth_track(t_s, frame=TRUTH_FRAME) -> StateTrack:
    return StateTrack.from_arrays(frame, t_s, *turning_flight(t_s))


def tile(P, n):
    return np.repeat(np.asarray(P, dtype=float)[None], n, axis=0)


def test_perfect_estimate_in_a_frame_2_km_away_has_no_error():
    t = np.arange(0.0, 60.0, 0.1)
    pos_a, q_a, vel_a = turning_flight(t)
    est_frame = LocalTangentPlane(*(float(v) for v in TRUTH_FRAME.to_geodetic([1500.0, -1300.0, 10.0])))
    # The same states in the estimate's frame, through ECEF: the two frames' axes differ by ~3.1e-4 rad
    # (2 km / 6371 km), i.e. 6 mm/s of a 20 m/s velocity; the thresholds below are far under that.
    R_ecef_a, R_ecef_b = TRUTH_FRAME.R_ecef_enu, est_frame.R_ecef_enu
    q_b = np.array([rotmat_to_quat(R_ecef_b.T @ R_ecef_a @ R) for R in quat_to_rotmat_batch(q_a)])
    estimate = StateTrack.from_arrays(est_frame, t, est_frame.to_enu(*TRUTH_FRAME.to_geodetic(pos_a)), q_b,
                                      vel_a @ (R_ecef_b.T @ R_ecef_a).T)
    series = state_error_series(truth_track(t), estimate)
    assert series.t_s.size == t.size
    assert np.abs(series.att_rad).max() < 1e-6 and np.abs(series.vel_mps).max() < 1e-6
    assert np.abs(series.pos_m).max() < 1e-3
    unrotated = state_error_series(truth_track(t, est_frame), estimate)  # frames mixed up: the effect is visible
    assert np.linalg.norm(unrotated.att_rad, axis=1).min() > 2.5e-4


def test_known_yaw_tilt_and_velocity_errors_give_their_rmse_and_nees():
    gt_t, est_t = np.arange(0.0, 60.0, 0.05), np.arange(0.0, 60.0, 0.02)
    truth = truth_track(gt_t)
    q_flipped = truth.q_world_body * np.where(np.arange(gt_t.size) % 2, -1.0, 1.0)[:, None]  # q and -q: one attitude
    truth = StateTrack.from_arrays(TRUTH_FRAME, gt_t, truth.pos_enu_m, q_flipped, truth.vel_world_mps)
    pos, q, vel = turning_flight(est_t)
    d_theta = np.array([0.03, 0.04, 0.1])  # world-frame: 0.05 rad of tilt, 0.1 rad of yaw
    q_est = quat_multiply_batch(quat_from_rotvec_batch(-d_theta), q)  # q_true = exp(d_theta) ⊗ q_est
    vel_offset = np.array([0.3, -0.4, 0.12])
    n = est_t.size
    # Body-frame twist as on /gps_denied_nav/odometry; its covariance diag(0.09, 0.16, 0.0144) in the world.
    R = quat_to_rotmat_batch(q_est)
    P_vel_body = R.transpose(0, 2, 1) @ tile(np.diag(vel_offset**2), n) @ R
    estimate = StateTrack.from_body_twist(TRUTH_FRAME, est_t, pos + [1.0, 2.0, 2.0], q_est,
                                          np.einsum("nji,nj->ni", R, vel + vel_offset), tile(np.eye(3), n),
                                          P_vel_body, tile(np.diag(d_theta**2), n))
    stats = StateErrorStats.from_series(state_error_series(truth, estimate, score_rate_hz=10.0))
    assert stats.samples == 600
    assert stats.velocity_rmse_mps == pytest.approx(np.linalg.norm(vel_offset), abs=1e-4)
    assert stats.velocity_horizontal_rmse_mps == pytest.approx(0.5, abs=1e-4)
    assert stats.nees_velocity_mean == pytest.approx(3.0, abs=1e-3)
    assert stats.attitude_tilt_rmse_deg == pytest.approx(np.degrees(0.05), abs=1e-4)
    assert stats.yaw_rmse_deg == pytest.approx(np.degrees(0.1), abs=1e-4)
    assert stats.nees_attitude_mean == pytest.approx(3.0, abs=1e-3)
    assert stats.position_3d_rmse_m == pytest.approx(3.0, abs=1e-3)
    assert stats.nees_position_3d_mean == pytest.approx(9.0, abs=1e-2)
    assert stats.nees_velocity_within_95_frac == 1.0 and stats.nees_position_3d_within_95_frac == 0.0


def test_consistent_gaussian_errors_have_nees_near_three_and_shrunk_covariances_do_not():
    rng = np.random.default_rng(11)
    t = np.arange(0.0, 400.0, 0.1)
    pos, q, vel = turning_flight(t)
    A = rng.normal(size=(3, 3))
    P_vel = 0.04 * (A @ A.T + 0.5 * np.eye(3))  # correlated, anisotropic
    P_att = np.diag([1e-4, 2e-4, 9e-4])  # 10-30 mrad: the small-angle model holds
    d_vel = rng.multivariate_normal(np.zeros(3), P_vel, size=t.size)
    d_theta = rng.multivariate_normal(np.zeros(3), P_att, size=t.size)
    q_est = quat_multiply_batch(quat_from_rotvec_batch(-d_theta), q)
    n = t.size
    for scale, expected in ((1.0, 3.0), (0.25, 12.0)):
        estimate = StateTrack.from_arrays(TRUTH_FRAME, t, pos, q_est, vel + d_vel, tile(np.eye(3), n),
                                          tile(P_vel * scale, n), tile(P_att * scale, n))
        stats = StateErrorStats.from_series(state_error_series(truth_track(t), estimate))
        assert stats.nees_velocity_mean == pytest.approx(expected, rel=0.06)
        assert stats.nees_attitude_mean == pytest.approx(expected, rel=0.06)
    assert stats.nees_position_3d_mean == pytest.approx(0.0, abs=1e-9)


def test_consistent_gaussian_errors_are_95_percent_inside_the_bound():
    rng = np.random.default_rng(5)
    t = np.arange(0.0, 400.0, 0.1)
    pos, q, vel = turning_flight(t)
    d_vel = rng.normal(scale=0.3, size=(t.size, 3))
    estimate = StateTrack.from_arrays(TRUTH_FRAME, t, pos, q, vel + d_vel, P_vel_m2ps2=tile(0.09 * np.eye(3), t.size))
    stats = StateErrorStats.from_series(state_error_series(truth_track(t), estimate))
    assert stats.nees_velocity_within_95_frac == pytest.approx(0.95, abs=0.015)
    assert np.isnan(stats.nees_attitude_mean) and np.isnan(stats.nees_attitude_within_95_frac)  # no covariance


def test_truth_odometry_frame_is_pinned_by_a_fix_at_the_same_stamp():
    frame = LocalTangentPlane(*(float(v) for v in TRUTH_FRAME.to_geodetic([800.0, 300.0, 0.0])))
    odom_t = np.arange(0.0, 10.0, 0.05)
    pos = turning_flight(odom_t)[0]
    fix_t = odom_t[7:] + 1e-9  # fixes start later, with float jitter
    lat, lon, alt = frame.to_geodetic(pos[7:])
    found = truth_odometry_frame(fix_t, lat, lon, alt, odom_t, pos)
    np.testing.assert_allclose(found.to_enu(lat, lon, alt), pos[7:], atol=1e-4)
    assert truth_odometry_frame(fix_t + 0.025, lat, lon, alt, odom_t, pos) is None  # never at the same stamp
    assert truth_odometry_frame([], [], [], [], odom_t, pos) is None


def test_score_replay_scores_states_over_the_gnss_denied_window_and_writes_strict_json():
    gt_t, est_t = np.arange(0.0, 100.0, 0.05), np.arange(0.0, 100.0, 0.02)
    pos, q, vel = turning_flight(est_t)
    vel = vel + np.where(est_t[:, None] >= 40.0, [0.0, 0.5, 0.0], [0.1, 0.0, 0.0])
    n = est_t.size
    estimate = StateTrack.from_arrays(TRUTH_FRAME, est_t, pos, q, vel, tile(np.eye(3), n), tile(0.25 * np.eye(3), n),
                                      tile(1e-4 * np.eye(3), n))
    lat, lon, alt = TRUTH_FRAME.to_geodetic(turning_flight(gt_t)[0])
    report = score_replay(GeoTrack.from_arrays(gt_t, lat, lon, alt), GeoTrack.empty(), GeoTrack.empty(), 0, 1.0,
                          gnss_lost_s=40.0, truth_states=truth_track(gt_t), estimate_states=estimate)
    doc = json.loads(json.dumps(report.to_json_dict(), allow_nan=False))
    assert NEW_KEYS <= doc.keys()
    assert doc["velocity_rmse_mps"] == pytest.approx(0.5, abs=1e-4)
    assert doc["nees_velocity_mean"] == pytest.approx(1.0, abs=1e-3)
    assert doc["yaw_rmse_deg"] == pytest.approx(0.0, abs=1e-3) and doc["nees_attitude_mean"] < 1e-3
    assert doc["state_scoring"]["samples"] in (599, 600)  # the 40.0 s bin's stamp may fall just before 40 s
    assert doc["state_scoring"]["whole_flight"]["samples"] == 1000
    assert 0.1 < doc["state_scoring"]["whole_flight"]["velocity_rmse_mps"] < 0.5


@pytest.mark.parametrize("states", ["none", "no_truth", "no_estimate", "truth_after_estimate"])
def test_missing_states_give_nulls_never_an_exception(states):
    t = np.arange(0.0, 10.0, 0.1)
    truth = truth_track(t + (100.0 if states == "truth_after_estimate" else 0.0))
    estimate = StateTrack.from_arrays(TRUTH_FRAME, t, *turning_flight(t))
    empty = StateTrack.from_arrays(TRUTH_FRAME, [], [], [], [])
    kwargs = {"none": {}, "no_truth": {"truth_states": empty, "estimate_states": estimate},
              "no_estimate": {"truth_states": truth, "estimate_states": empty},
              "truth_after_estimate": {"truth_states": truth, "estimate_states": estimate}}[states]
    report = score_replay(GeoTrack.empty(), GeoTrack.empty(), GeoTrack.empty(), 0, 1.0, gnss_lost_s=3.0, **kwargs)
    doc = json.loads(json.dumps(report.to_json_dict(), allow_nan=False))
    assert all(doc[key] is None for key in NEW_KEYS - {"state_scoring"})
    assert doc["state_scoring"]["samples"] == 0
