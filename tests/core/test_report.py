"""Replay scoring on synthetic flights with known errors, strict report.json, plots and the debug mosaic."""
import json

import numpy as np
import pytest

from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.plots import plot_error_over_time, plot_trajectory, retrieval_mosaic
from gps_denied_nav.core.report import GeoTrack, error_series, score_replay
from gps_denied_nav.core.score_times import thin_to_rate

FRAME = LocalTangentPlane(47.3977, 8.5456, 400.0)
CONTRACT_KEYS = {"frames", "fixes_accepted", "fix_rate", "rmse_m", "cep50_m", "cep95_m", "visual_fix_rmse_m",
                 "max_error_m", "latency_ms_p50", "latency_ms_p95", "wall_s"}


def track(t_s, enu_m, cov=None) -> GeoTrack:
    lat, lon, alt = FRAME.to_geodetic(np.asarray(enu_m, dtype=float))
    return GeoTrack.from_arrays(t_s, lat, lon, alt, cov)


def straight_flight(t_s):
    """ENU [N, 3]: 12 m/s north-east at 120 m, starting at the frame origin so that it is the report's origin."""
    t_s = np.asarray(t_s, dtype=float)
    return np.stack([10.0 * t_s, 6.6 * t_s, np.where(t_s > 0, 120.0, 0.0)], axis=-1)


def test_constant_offset_gives_that_error_everywhere():
    gt_t, est_t = np.arange(0.0, 60.0, 0.05), np.arange(0.0, 60.0, 0.02)
    est = straight_flight(est_t) + [3.0, 0.0, 0.0]
    est[:, 2] += 2.0
    report = score_replay(track(gt_t, straight_flight(gt_t)), track(est_t, est, np.full(est_t.size, 3.0)),
                          GeoTrack.empty(), frames=0, wall_s=1.0)
    s = report.scored
    for value in (s.rmse_m, s.cep50_m, s.cep95_m, s.max_error_m, s.final_error_m):
        assert value == pytest.approx(3.0, abs=2e-3)
    assert s.vertical_rmse_m == pytest.approx(2.0, abs=2e-3)
    assert s.nees_horizontal_mean == pytest.approx(1.0, abs=1e-3)  # (3 m / 3 m)^2
    assert report.enu_origin.origin_lat_deg == pytest.approx(FRAME.origin_lat_deg, abs=1e-9)


def test_cep_is_a_percentile_of_radial_error():
    t = np.arange(0.0, 100.0, 0.1)
    radial_m = np.linspace(1.0, 10.0, t.size)
    est = straight_flight(t) + np.stack([0.0 * t, radial_m, 0.0 * t], axis=-1)
    s = score_replay(track(t, straight_flight(t)), track(t, est), GeoTrack.empty(), 0, 1.0).scored
    assert s.cep50_m == pytest.approx(np.percentile(radial_m, 50), abs=1e-3)
    assert s.cep95_m == pytest.approx(np.percentile(radial_m, 95), abs=1e-3)
    assert s.rmse_m == pytest.approx(np.sqrt(np.mean(radial_m**2)), abs=1e-3)
    assert np.isnan(s.nees_horizontal_mean)  # no covariance given


def test_truth_is_interpolated_at_estimate_stamps_and_never_extrapolated():
    gt_t = np.arange(0.0, 30.0, 1.0)  # 1 Hz truth, straight line: linear interpolation is exact
    est_t = np.arange(-5.0, 35.0, 0.137)
    series = error_series(track(gt_t, straight_flight(gt_t)), track(est_t, straight_flight(est_t)), FRAME)
    assert series.t_s.min() >= 0.0 and series.t_s.max() <= 29.0
    assert series.t_s.size == np.count_nonzero((est_t >= 0.0) & (est_t <= 29.0))
    assert np.max(series.horizontal_m) < 1e-3


def test_samples_across_a_truth_gap_are_dropped():
    gt_t = np.concatenate([np.arange(0.0, 10.0, 0.1), np.arange(20.0, 30.0, 0.1)])  # 10 s dropout
    est_t = np.arange(0.0, 30.0, 0.1)
    series = error_series(track(gt_t, straight_flight(gt_t)), track(est_t, straight_flight(est_t)), FRAME,
                          max_gt_gap_s=1.0)
    assert not np.any((series.t_s > 10.0) & (series.t_s < 20.0))
    assert series.t_s.size > 180


def test_thinning_makes_scores_independent_of_publication_rate():
    rng = np.random.default_rng(3)
    t_fast = np.arange(0.0, 20.0, 0.01) + rng.uniform(-1e-4, 1e-4, 2000)
    t_exact = np.arange(0.0, 20.0, 0.1) + rng.uniform(-1e-6, 1e-6, 200)
    assert abs(thin_to_rate(t_fast, 10.0).size - 200) <= 1  # bins are centred on the grid: one extra at the end
    assert thin_to_rate(t_exact, 10.0).size == 200  # samples at exactly the rate all survive jitter
    assert thin_to_rate(t_fast, None).size == 2000


def test_correct_covariance_has_nees_near_two_and_a_shrunk_one_does_not():
    rng = np.random.default_rng(7)
    t = np.arange(0.0, 400.0, 0.1)
    cov = np.array([[9.0, 4.0], [4.0, 4.0]])  # correlated, anisotropic, m^2
    err = rng.multivariate_normal([0.0, 0.0], cov, size=t.size)
    est = straight_flight(t) + np.c_[err, np.zeros(t.size)]
    gt = track(t, straight_flight(t))
    good = score_replay(gt, track(t, est, np.repeat(cov[None], t.size, 0)), GeoTrack.empty(), 0, 1.0).scored
    assert good.nees_horizontal_mean == pytest.approx(2.0, abs=0.15)
    assert good.nees_within_95_frac == pytest.approx(0.95, abs=0.02)
    overconfident = score_replay(gt, track(t, est, np.repeat(cov[None] / 4.0, t.size, 0)), GeoTrack.empty(),
                                 0, 1.0).scored
    assert overconfident.nees_horizontal_mean == pytest.approx(8.0, rel=0.1)


def test_covariance_forms_and_ordering():
    t = np.array([2.0, 0.0, 1.0])
    enu = straight_flight(t)
    cov3 = np.repeat(np.diag([4.0, 9.0, 25.0])[None], 3, 0)
    track3 = track(t, enu, cov3)
    np.testing.assert_allclose(track3.t_s, [0.0, 1.0, 2.0])
    np.testing.assert_allclose(track3.cov_en_m2[0], np.diag([4.0, 9.0]))
    np.testing.assert_allclose(track(t, enu, [1.0, 2.0, 3.0]).cov_en_m2[:, 0, 0], [4.0, 9.0, 1.0])
    with pytest.raises(ValueError):
        track(t, enu, np.zeros((3, 4)))


def test_fix_rate_latency_and_gnss_denied_window():
    gt_t = np.arange(0.0, 100.0, 0.1)
    est_t = np.arange(0.0, 100.0, 0.05)
    before = est_t < 40.0
    est = straight_flight(est_t) + np.where(before[:, None], [1.0, 0.0, 0.0], [0.0, 5.0, 0.0])
    fix_t = np.arange(40.0, 100.0, 2.0)
    fixes = track(fix_t, straight_flight(fix_t) + [0.0, 4.0, 0.0], np.full(fix_t.size, 4.0))
    latency_s = np.linspace(0.100, 0.199, fix_t.size)
    report = score_replay(track(gt_t, straight_flight(gt_t)), track(est_t, est), fixes, frames=120, wall_s=55.0,
                          image_stamp_s=fix_t, published_s=fix_t + latency_s, gnss_lost_s=40.0)
    assert report.fixes_accepted == 30 and report.fix_rate == pytest.approx(0.25)
    assert report.scored.rmse_m == pytest.approx(5.0, abs=2e-3)
    assert 1.0 < report.whole_flight.rmse_m < 5.0
    assert report.visual_fixes.rmse_m == pytest.approx(4.0, abs=2e-3)
    assert report.latency_ms_p50 == pytest.approx(np.percentile(latency_s, 50) * 1e3)
    assert report.latency_ms_p95 == pytest.approx(np.percentile(latency_s, 95) * 1e3)
    assert report.time_gnss_denied_s == pytest.approx(est_t[-1] - 40.0)
    doc = json.loads(json.dumps(report.to_json_dict(), allow_nan=False))
    assert CONTRACT_KEYS <= doc.keys()
    assert doc["rmse_m"] == pytest.approx(5.0, abs=2e-3) and doc["whole_flight"]["samples"] == 1000
    assert doc["enu_origin"]["alt_m"] == pytest.approx(400.0, abs=1e-3)


@pytest.mark.parametrize("with_truth", [False, True])
def test_empty_inputs_give_nulls_in_strict_json(with_truth):
    t = np.arange(0.0, 10.0, 0.1)
    gt = track(t, straight_flight(t)) if with_truth else GeoTrack.empty()
    report = score_replay(gt, GeoTrack.empty(), GeoTrack.empty(), frames=0, wall_s=2.5, gnss_lost_s=3.0)
    text = json.dumps(report.to_json_dict(), allow_nan=False)
    doc = json.loads(text)
    assert CONTRACT_KEYS <= doc.keys()
    assert doc["frames"] == 0 and doc["fixes_accepted"] == 0 and doc["wall_s"] == 2.5
    for key in ("fix_rate", "rmse_m", "cep50_m", "cep95_m", "visual_fix_rmse_m", "max_error_m",
                "latency_ms_p50", "latency_ms_p95", "time_gnss_denied_s"):
        assert doc[key] is None, key
    assert (doc["enu_origin"] is not None) == with_truth
    for key in ("velocity_rmse_mps", "nees_velocity_mean", "attitude_tilt_rmse_deg", "yaw_rmse_deg",
                "nees_attitude_mean", "nees_position_3d_mean"):
        assert doc[key] is None, key  # no odometry given: the state scores are null
    assert doc["state_scoring"]["samples"] == 0


def test_plots_write_png_files(tmp_path):
    t = np.arange(0.0, 60.0, 0.5)
    gt = straight_flight(t)
    est = gt + [2.0, -1.0, 0.0]
    map_rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    extent = (-100.0, 700.0, -100.0, 500.0)
    paths = [plot_trajectory(tmp_path / "traj.png", map_rgb, extent, gt, est, gt[::10, :2]),
             plot_trajectory(tmp_path / "traj_empty.png", None, None, np.zeros((0, 2)), [], []),
             plot_error_over_time(tmp_path / "err.png", t + 1.7e9, np.hypot(2.0, 1.0) + 0 * t, np.full(t.size, 9.0),
                                  t[::10] + 1.7e9, 1.7e9 + 20.0),
             plot_error_over_time(tmp_path / "err_empty.png", [], [], None, [], None)]
    for path in paths:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_retrieval_mosaic_layout_and_determinism():
    rng = np.random.default_rng(1)
    query = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    tiles = [rng.integers(0, 255, (512, 512, 3), dtype=np.uint8) for _ in range(5)]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    labels = [f"t{k}" for k in range(5)]
    mosaic = retrieval_mosaic(query, tiles, scores, chosen_index=2, labels=labels)
    assert mosaic.dtype == np.uint8 and mosaic.ndim == 3 and mosaic.shape[2] == 3
    assert mosaic.shape[0] >= 160 and mosaic.shape[1] >= 6 * 160
    np.testing.assert_array_equal(mosaic, retrieval_mosaic(query, tiles, scores, 2, labels=labels))
    green = (mosaic[:, :, 1] > 200) & (mosaic[:, :, 0] < 60) & (mosaic[:, :, 2] < 90)
    none_chosen = retrieval_mosaic(query[:, :, 0], tiles, scores, None, labels=labels)
    green_none = (none_chosen[:, :, 1] > 200) & (none_chosen[:, :, 0] < 60) & (none_chosen[:, :, 2] < 90)
    assert green.sum() > 4 * 160 and green_none.sum() < green.sum() / 10
    with pytest.raises(ValueError):
        retrieval_mosaic(query, tiles, scores[:3], 0)


def test_a_photo_clips_sparse_truth_scores_the_estimates_at_its_photos():
    """Truth 7 s apart (photos' GPS): estimates within NEAR_TRUTH_S of a photo are scored, none between."""
    from gps_denied_nav.core.score_times import covered_by_truth

    truth_t = np.array([100.0, 107.0, 114.0])
    t = np.array([99.99, 100.02, 103.5, 107.0, 113.96, 114.01])
    assert covered_by_truth(truth_t, t, max_gt_gap_s=1.0).tolist() == [False, True, False, True, True, False]
