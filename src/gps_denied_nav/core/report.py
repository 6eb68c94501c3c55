"""Scoring of a replay: fused-estimate and visual-fix errors against ground truth, latency, fix rate.

The replay tool reads plain arrays out of the recorded output bag (ground truth, fused estimates, accepted
visual fixes, per-frame latency records) and hands them here; ``score_replay`` turns them into a frozen
``ReplayReport`` whose ``to_json_dict`` is the ``report.json`` contract (docs: interfaces.md). Errors are
taken in one local ENU tangent plane anchored at the first ground-truth sample, so horizontal and
vertical parts separate cleanly. Ground truth is interpolated linearly at the *estimate* stamps (never
extrapolated, never across a ground-truth gap), because that is where the estimate's own covariance is
known, which the NEES consistency check needs. Estimates are first thinned to at most ``score_rate_hz``
so that the metrics do not depend on how often the filter happened to publish. When ``gnss_lost_s`` is
given, the headline metrics cover only the GNSS-denied part (stamps >= ``gnss_lost_s``); the whole flight
is reported alongside. Given ground-truth and filter odometry, the filter's velocity, attitude and 3-D
position are scored too (``report_state``), over the same window and at the same stamps.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.report_state import StateErrorSeries, StateErrorStats, StateTrack, state_error_series
from gps_denied_nav.core.score_times import DEFAULT_MAX_GT_GAP_S, scored_indices

DEFAULT_SCORE_RATE_HZ = 10.0
CHI2_2DOF_95 = 5.991464547107979  # 95 % quantile of chi-square with 2 degrees of freedom


@dataclass(frozen=True, eq=False)
class GeoTrack:
    """Time-stamped WGS84 positions (sorted by time), optionally with a horizontal covariance.

    t_s [N] s on the replay's clock (header stamps; the same clock for every track), lat_deg/lon_deg [N],
    alt_m [N] m (NaN where unknown), cov_en_m2 [N, 2, 2] east/north covariance in m^2, or None.
    """

    t_s: np.ndarray
    lat_deg: np.ndarray
    lon_deg: np.ndarray
    alt_m: np.ndarray
    cov_en_m2: np.ndarray | None = None

    @classmethod
    def from_arrays(cls, t_s, lat_deg, lon_deg, alt_m=None, cov=None) -> GeoTrack:
        """Build from array-likes of length N, sorting by time (bag order is arrival order, not stamp order).

        ``cov`` may be [N, 2, 2] (east/north m^2), [N, 3, 3] (ENU m^2, as in NavSatFix; the east/north block
        is used) or [N] (an isotropic horizontal 1-sigma in metres).
        """
        t_s = np.asarray(t_s, dtype=float).reshape(-1)
        n = t_s.size
        alt_m = np.full(n, np.nan) if alt_m is None else np.asarray(alt_m, dtype=float).reshape(-1)
        cov_en_m2 = None
        if cov is not None:
            cov = np.asarray(cov, dtype=float)
            if cov.shape == (n,):
                cov_en_m2 = cov[:, None, None] ** 2 * np.eye(2)
            elif cov.shape in ((n, 2, 2), (n, 3, 3)):
                cov_en_m2 = cov[:, :2, :2].copy()
            else:
                raise ValueError(f"cov must be [N], [N,2,2] or [N,3,3] with N={n}, got {cov.shape}")
        order = np.argsort(t_s, kind="stable")
        return cls(t_s[order], np.asarray(lat_deg, dtype=float).reshape(-1)[order],
                   np.asarray(lon_deg, dtype=float).reshape(-1)[order], alt_m[order],
                   None if cov_en_m2 is None else cov_en_m2[order])

    @classmethod
    def empty(cls) -> GeoTrack:
        return cls.from_arrays([], [], [])

    def __len__(self) -> int:
        return int(self.t_s.size)

    def enu_m(self, frame: LocalTangentPlane) -> np.ndarray:
        """Positions in ``frame`` as [N, 3] ENU metres; an unknown altitude gives NaN up (its east/north are
        taken at the origin's height, which moves them by ~1.6e-4 m per metre of height per km from the origin)."""
        alt = np.where(np.isfinite(self.alt_m), self.alt_m, frame.origin_alt_m)
        enu = frame.to_enu(self.lat_deg, self.lon_deg, alt).reshape(-1, 3)
        enu[~np.isfinite(self.alt_m), 2] = np.nan
        return enu


@dataclass(frozen=True, eq=False)
class ErrorSeries:
    """Per-sample errors of a track against interpolated ground truth, K scored samples.

    t_s [K] s, err_enu_m [K, 3] (estimate minus truth), horizontal_m [K], sigma_major_m [K] (1-sigma along
    the covariance's major axis, NaN without covariance), nees_horizontal [K] (e^T P^-1 e over east/north).
    """

    t_s: np.ndarray
    err_enu_m: np.ndarray
    horizontal_m: np.ndarray
    sigma_major_m: np.ndarray
    nees_horizontal: np.ndarray

    @classmethod
    def empty(cls) -> ErrorSeries:
        return cls(np.zeros(0), np.zeros((0, 3)), np.zeros(0), np.zeros(0), np.zeros(0))

    def subset(self, mask: np.ndarray) -> ErrorSeries:
        return ErrorSeries(self.t_s[mask], self.err_enu_m[mask], self.horizontal_m[mask],
                           self.sigma_major_m[mask], self.nees_horizontal[mask])


@dataclass(frozen=True)
class ErrorStats:
    """Summary of an ErrorSeries. Distances in metres; NaN where there is nothing to summarise.

    cep50_m/cep95_m are the 50th/95th percentiles of the horizontal error; nees_horizontal_mean is 2 for a
    consistent covariance (chi-square, 2 dof) and nees_within_95_frac is then 0.95.
    """

    samples: int
    duration_s: float
    rmse_m: float
    cep50_m: float
    cep95_m: float
    max_error_m: float
    final_error_m: float
    vertical_rmse_m: float
    nees_horizontal_mean: float
    nees_within_95_frac: float

    @classmethod
    def from_series(cls, series: ErrorSeries) -> ErrorStats:
        h = series.horizontal_m
        if h.size == 0:
            return cls(0, math.nan, *([math.nan] * 8))
        up = series.err_enu_m[:, 2]
        up = up[np.isfinite(up)]
        nees = series.nees_horizontal[np.isfinite(series.nees_horizontal)]
        return cls(
            samples=int(h.size),
            duration_s=float(series.t_s[-1] - series.t_s[0]),
            rmse_m=float(np.sqrt(np.mean(h**2))),
            cep50_m=float(np.percentile(h, 50)),
            cep95_m=float(np.percentile(h, 95)),
            max_error_m=float(h.max()),
            final_error_m=float(h[-1]),
            vertical_rmse_m=float(np.sqrt(np.mean(up**2))) if up.size else math.nan,
            nees_horizontal_mean=float(nees.mean()) if nees.size else math.nan,
            nees_within_95_frac=float(np.mean(nees <= CHI2_2DOF_95)) if nees.size else math.nan,
        )


def error_series(truth: GeoTrack, track: GeoTrack, frame: LocalTangentPlane,
                 score_rate_hz: float | None = None,
                 max_gt_gap_s: float = DEFAULT_MAX_GT_GAP_S) -> ErrorSeries:
    """Errors of ``track`` at its own stamps (thinned to score_rate_hz) against linearly interpolated truth.

    Samples outside the truth's time span, or between two truth samples more than max_gt_gap_s apart, are
    dropped rather than guessed.
    """
    if len(truth) == 0 or len(track) == 0:
        return ErrorSeries.empty()
    keep = scored_indices(track.t_s, truth.t_s, score_rate_hz, max_gt_gap_s)
    t = track.t_s[keep]
    if t.size == 0:
        return ErrorSeries.empty()
    gt_enu = truth.enu_m(frame)
    gt_at_t = np.stack([np.interp(t, truth.t_s, gt_enu[:, k]) for k in range(3)], axis=-1)
    err = track.enu_m(frame)[keep] - gt_at_t
    horizontal = np.hypot(err[:, 0], err[:, 1])
    good = np.isfinite(horizontal)  # a NavSatFix without a position carries NaN lat/lon
    keep, t, err, horizontal = keep[good], t[good], err[good], horizontal[good]
    sigma_major = np.full(t.size, np.nan)
    nees = np.full(t.size, np.nan)
    if track.cov_en_m2 is not None:
        cov = track.cov_en_m2[keep]
        e = err[:, :2]
        finite = np.all(np.isfinite(cov), axis=(1, 2)) & np.all(np.isfinite(e), axis=1)
        det = np.zeros(t.size)
        det[finite] = np.linalg.det(cov[finite])
        ok = finite & (cov[:, 0, 0] > 0) & (det > 0)  # positive definite: the NEES is defined
        if np.any(ok):
            sigma_major[ok] = np.sqrt(np.linalg.eigvalsh(cov[ok])[:, -1])
            solved = np.linalg.solve(cov[ok], e[ok][:, :, None])[:, :, 0]
            nees[ok] = np.einsum("ki,ki->k", e[ok], solved)
    return ErrorSeries(t, err, horizontal, sigma_major, nees)


def _json_safe(value):
    """Python scalars/containers with non-finite floats as None, so json.dumps(allow_nan=False) accepts it."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


@dataclass(frozen=True)
class ReplayReport:
    """Scores of one replay. ``scored`` covers stamps >= gnss_lost_s (the whole flight when it is None) and
    gives the headline rmse_m/cep50_m/cep95_m/max_error_m of report.json.

    fix_rate = fixes_accepted / frames; latencies are image stamp -> fix published, in ms; wall_s is the
    replay's wall-clock duration; time_gnss_denied_s runs from gnss_lost_s to the last estimate. ``state``
    (over the scored window) and ``state_whole_flight`` score the filter's odometry: all NaN without it.
    """

    frames: int
    fixes_accepted: int
    fix_rate: float
    scored: ErrorStats
    whole_flight: ErrorStats
    visual_fixes: ErrorStats
    latency_ms_p50: float
    latency_ms_p95: float
    latency_ms_max: float
    latency_samples: int
    wall_s: float
    gnss_lost_s: float | None
    time_gnss_denied_s: float | None
    score_rate_hz: float | None
    enu_origin: LocalTangentPlane | None
    state: StateErrorStats = StateErrorStats.empty()  # velocity/attitude/3-D position over the scored window
    state_whole_flight: StateErrorStats = StateErrorStats.empty()
    extras: dict = field(default_factory=dict)  # replay context (mode, stage timing, machine), appended as is

    def to_json_dict(self) -> dict:
        """The report.json object: contract keys first, then extras; NaN/inf become null (strict JSON)."""
        s, st = self.scored, self.state
        o = self.enu_origin
        origin = o and {"lat_deg": o.origin_lat_deg, "lon_deg": o.origin_lon_deg, "alt_m": o.origin_alt_m}
        return _json_safe({
            # The report.json contract (interfaces.md).
            "frames": self.frames, "fixes_accepted": self.fixes_accepted, "fix_rate": self.fix_rate,
            "rmse_m": s.rmse_m, "cep50_m": s.cep50_m, "cep95_m": s.cep95_m,
            "visual_fix_rmse_m": self.visual_fixes.rmse_m, "max_error_m": s.max_error_m,
            "latency_ms_p50": self.latency_ms_p50, "latency_ms_p95": self.latency_ms_p95, "wall_s": self.wall_s,
            # Extras.
            "vertical_rmse_m": s.vertical_rmse_m, "final_error_m": s.final_error_m,
            "nees_horizontal_mean": s.nees_horizontal_mean, "nees_within_95_frac": s.nees_within_95_frac,
            "time_gnss_denied_s": self.time_gnss_denied_s, "gnss_lost_s": self.gnss_lost_s,
            "scored_samples": s.samples, "scored_duration_s": s.duration_s, "score_rate_hz": self.score_rate_hz,
            "latency_ms_max": self.latency_ms_max, "latency_samples": self.latency_samples, "enu_origin": origin,
            "whole_flight": asdict(self.whole_flight),
            "visual_fixes": asdict(self.visual_fixes),
            "velocity_rmse_mps": st.velocity_rmse_mps, "velocity_horizontal_rmse_mps": st.velocity_horizontal_rmse_mps,
            "nees_velocity_mean": st.nees_velocity_mean, "attitude_tilt_rmse_deg": st.attitude_tilt_rmse_deg,
            "yaw_rmse_deg": st.yaw_rmse_deg, "nees_attitude_mean": st.nees_attitude_mean,
            "nees_position_3d_mean": st.nees_position_3d_mean,
            "state_scoring": {**asdict(st), "whole_flight": asdict(self.state_whole_flight)},
            **self.extras,
        })


def score_replay(ground_truth: GeoTrack, estimates: GeoTrack, fixes: GeoTrack, frames: int, wall_s: float,
                 image_stamp_s=(), published_s=(), gnss_lost_s: float | None = None,
                 score_rate_hz: float | None = DEFAULT_SCORE_RATE_HZ,
                 max_gt_gap_s: float = DEFAULT_MAX_GT_GAP_S, truth_states: StateTrack | None = None,
                 estimate_states: StateTrack | None = None) -> ReplayReport:
    """Score a replay. Any track may be empty; the metrics it feeds are then NaN (null in JSON).

    image_stamp_s [L] / published_s [L]: per latency record (one per published fix), when its image went
    out and when the fix was published, on one clock (the wall clock in a replay: image published by the
    player -> fix received by the recorder). Visual fixes are scored
    over the whole flight, each at its own stamp (they do not depend on GNSS). The ENU origin is the first
    ground-truth sample. truth_states (ground-truth odometry) and estimate_states (the filter's odometry, with
    covariances) add the velocity/attitude/3-D position scores; without either they are NaN.
    """
    if len(ground_truth):
        alt0 = ground_truth.alt_m[0] if np.isfinite(ground_truth.alt_m[0]) else 0.0
        frame = LocalTangentPlane(float(ground_truth.lat_deg[0]), float(ground_truth.lon_deg[0]), float(alt0))
        whole = error_series(ground_truth, estimates, frame, score_rate_hz, max_gt_gap_s)
        fix_series = error_series(ground_truth, fixes, frame, None, max_gt_gap_s)
    else:
        frame = None
        whole = fix_series = ErrorSeries.empty()
    scored = whole if gnss_lost_s is None else whole.subset(whole.t_s >= gnss_lost_s)
    state_whole = StateErrorSeries.empty()
    if truth_states is not None and estimate_states is not None:
        state_whole = state_error_series(truth_states, estimate_states, score_rate_hz, max_gt_gap_s)
    state_scored = state_whole if gnss_lost_s is None else state_whole.subset(state_whole.t_s >= gnss_lost_s)
    image_stamp_s, published_s = np.asarray(image_stamp_s, dtype=float), np.asarray(published_s, dtype=float)
    if image_stamp_s.shape != published_s.shape:
        raise ValueError(f"latency records differ in length: {image_stamp_s.shape} vs {published_s.shape}")
    latency_ms = (published_s - image_stamp_s) * 1e3
    latency_ms = latency_ms[np.isfinite(latency_ms)]
    p50, p95, p100 = np.percentile(latency_ms, [50, 95, 100]) if latency_ms.size else (math.nan,) * 3
    denied_s = None
    if gnss_lost_s is not None and len(estimates):
        denied_s = max(0.0, float(estimates.t_s[-1]) - gnss_lost_s)
    return ReplayReport(
        frames=int(frames), fixes_accepted=len(fixes), fix_rate=len(fixes) / frames if frames > 0 else math.nan,
        scored=ErrorStats.from_series(scored), whole_flight=ErrorStats.from_series(whole),
        visual_fixes=ErrorStats.from_series(fix_series),
        latency_ms_p50=float(p50), latency_ms_p95=float(p95), latency_ms_max=float(p100),
        latency_samples=int(latency_ms.size), wall_s=float(wall_s),
        gnss_lost_s=None if gnss_lost_s is None else float(gnss_lost_s), time_gnss_denied_s=denied_s,
        score_rate_hz=score_rate_hz, enu_origin=frame, state=StateErrorStats.from_series(state_scored),
        state_whole_flight=StateErrorStats.from_series(state_whole))
