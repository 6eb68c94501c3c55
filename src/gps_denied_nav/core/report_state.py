"""Scoring of the filter's full state (3-D position, velocity, attitude) against ground-truth odometry.

The horizontal position score (``report``) says how far off the filter is; this says whether its
covariance is honest about position, velocity and attitude, through the NEES (e^T P^-1 e, chi-square with
3 dof for a consistent filter). Truth and estimate each live in their own ENU frame (the map raster's and
the filter's map origin); truth is carried into the estimate's frame with the exact rotation between the
two tangent planes (~1.6e-4 rad per km of origin offset, which matters next to a sub-milliradian attitude
sigma). The attitude error is δθ_world = rotvec(q_true ⊗ q_est⁻¹), the fixed-frame small angle whose
covariance the filter publishes; its east/north part is the tilt (roll/pitch) error, its up part the yaw
error. Scored at the same stamps as the position: thinned to a rate and only where truth covers them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from gps_denied_nav.core.geodesy import LocalTangentPlane, frame_from_known_point
from gps_denied_nav.core.rotations import (quat_multiply_batch, quat_to_rotmat_batch, rotmat_to_quat,
                                           rotvec_from_quat_batch)
from gps_denied_nav.core.score_times import DEFAULT_MAX_GT_GAP_S, scored_indices

CHI2_3DOF_95 = 7.814727903251178  # 95 % quantile of chi-square with 3 degrees of freedom
_CONJUGATE = np.array([1.0, -1.0, -1.0, -1.0])


@dataclass(frozen=True, eq=False)
class StateTrack:
    """Navigation states in one ENU frame, N samples sorted by time.

    t_s [N] s; pos_enu_m [N, 3]; q_world_body [N, 4] Hamilton wxyz (body FLU -> ENU); vel_world_mps [N, 3]
    ENU; frame: the ENU frame's WGS84 origin. Covariances [N, 3, 3] in that frame, or None (truth):
    P_pos_m2, P_vel_m2ps2, and P_att_rad2 of δθ_world with q_true = exp(δθ_world) ⊗ q_est.
    """

    frame: LocalTangentPlane
    t_s: np.ndarray
    pos_enu_m: np.ndarray
    q_world_body: np.ndarray
    vel_world_mps: np.ndarray
    P_pos_m2: np.ndarray | None = None
    P_vel_m2ps2: np.ndarray | None = None
    P_att_rad2: np.ndarray | None = None

    @classmethod
    def from_arrays(cls, frame, t_s, pos_enu_m, q_world_body, vel_world_mps, P_pos_m2=None, P_vel_m2ps2=None,
                    P_att_rad2=None) -> StateTrack:
        """Build from array-likes of length N, sorting by time (bag order is arrival order)."""
        t_s = np.asarray(t_s, dtype=float).reshape(-1)
        order = np.argsort(t_s, kind="stable")
        n = t_s.size

        def rows(a, shape):
            return None if a is None else np.asarray(a, dtype=float).reshape((n,) + shape)[order]
        return cls(frame, t_s[order], rows(pos_enu_m, (3,)), rows(q_world_body, (4,)), rows(vel_world_mps, (3,)),
                   rows(P_pos_m2, (3, 3)), rows(P_vel_m2ps2, (3, 3)), rows(P_att_rad2, (3, 3)))

    @classmethod
    def from_body_twist(cls, frame, t_s, pos_enu_m, q_world_body, vel_body_mps, P_pos_m2=None,
                        P_vel_body_m2ps2=None, P_att_rad2=None) -> StateTrack:
        """As from_arrays, with the velocity [N, 3] and its covariance [N, 3, 3] in the body frame (REP-105
        odometry twist), rotated here into the world frame: v = R v_body, P = R P_body R^T."""
        R = quat_to_rotmat_batch(np.asarray(q_world_body, dtype=float).reshape(-1, 4))
        vel = np.einsum("nij,nj->ni", R, np.asarray(vel_body_mps, dtype=float).reshape(-1, 3))
        P_vel = None if P_vel_body_m2ps2 is None else R @ np.asarray(P_vel_body_m2ps2, float) @ R.transpose(0, 2, 1)
        return cls.from_arrays(frame, t_s, pos_enu_m, q_world_body, vel, P_pos_m2, P_vel, P_att_rad2)

    def __len__(self) -> int:
        return int(self.t_s.size)

    def in_frame(self, frame: LocalTangentPlane) -> StateTrack:
        """The same states expressed in another ENU frame (positions exactly, through WGS84)."""
        # v_ecef = R_ecef_enu v_enu in either frame, so v_new = R_new^T R_old v_old.
        R = frame.R_ecef_enu.T @ self.frame.R_ecef_enu
        q = quat_multiply_batch(rotmat_to_quat(R), self.q_world_body)

        def cov(P):
            return None if P is None else R @ P @ R.T
        pos = frame.to_enu(*self.frame.to_geodetic(self.pos_enu_m)).reshape(-1, 3)
        return StateTrack(frame, self.t_s, pos, q, self.vel_world_mps @ R.T, cov(self.P_pos_m2),
                          cov(self.P_vel_m2ps2), cov(self.P_att_rad2))


def truth_odometry_frame(fix_t_s, lat_deg, lon_deg, alt_m, odom_t_s, pos_enu_m, tolerance_s: float = 1e-6
                         ) -> LocalTangentPlane | None:
    """The ENU frame of ground-truth odometry, whose messages do not carry its origin: pinned by the first
    odometry sample (odom_t_s [N], pos_enu_m [N, 3]) that has a fix at the same stamp (sorted fix_t_s [M],
    lat_deg, lon_deg, alt_m [M]); None when no sample pairs up."""
    fix_t_s, odom_t_s = np.asarray(fix_t_s, dtype=float), np.asarray(odom_t_s, dtype=float)
    if fix_t_s.size == 0 or odom_t_s.size == 0:
        return None
    j = np.clip(np.searchsorted(fix_t_s, odom_t_s), 0, fix_t_s.size - 1)
    before = np.clip(j - 1, 0, fix_t_s.size - 1)
    j = np.where(np.abs(fix_t_s[before] - odom_t_s) < np.abs(fix_t_s[j] - odom_t_s), before, j)
    lat_deg, lon_deg, alt_m = (np.asarray(a, dtype=float) for a in (lat_deg, lon_deg, alt_m))
    known = np.isfinite(lat_deg[j] + lon_deg[j] + alt_m[j])
    paired = np.flatnonzero((np.abs(fix_t_s[j] - odom_t_s) <= tolerance_s) & known)
    if paired.size == 0:
        return None
    i, k = paired[0], j[paired[0]]
    return frame_from_known_point(lat_deg[k], lon_deg[k], alt_m[k], np.asarray(pos_enu_m, dtype=float)[i])


def _nees(err: np.ndarray, P: np.ndarray | None) -> np.ndarray:
    """[K] e^T P^-1 e for errors [K, 3] and covariances [K, 3, 3]; NaN where P is missing or not positive definite."""
    nees = np.full(len(err), np.nan)
    if P is None:
        return nees
    ok = np.all(np.isfinite(P), axis=(1, 2)) & np.all(np.isfinite(err), axis=1)
    ok[ok] = np.all(np.linalg.eigvalsh(P[ok]) > 0.0, axis=1)
    if np.any(ok):
        nees[ok] = np.einsum("ki,ki->k", err[ok], np.linalg.solve(P[ok], err[ok][:, :, None])[:, :, 0])
    return nees


@dataclass(frozen=True, eq=False)
class StateErrorSeries:
    """Per-sample errors at K scored stamps t_s [K], in the estimate's ENU frame: pos_m [K, 3] and vel_mps [K, 3]
    (estimate minus truth), att_rad [K, 3] (δθ_world, q_true = exp(δθ_world) ⊗ q_est, the filter's own error
    convention), and the NEES [K] of each (NaN without a positive definite covariance)."""

    t_s: np.ndarray
    pos_m: np.ndarray
    vel_mps: np.ndarray
    att_rad: np.ndarray
    nees_pos: np.ndarray
    nees_vel: np.ndarray
    nees_att: np.ndarray

    @classmethod
    def empty(cls) -> StateErrorSeries:
        return cls(np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3)), *([np.zeros(0)] * 3))

    def subset(self, mask: np.ndarray) -> StateErrorSeries:
        return StateErrorSeries(*(getattr(self, f.name)[mask] for f in fields(self)))


def state_error_series(truth: StateTrack, estimate: StateTrack, score_rate_hz: float | None = None,
                       max_gt_gap_s: float = DEFAULT_MAX_GT_GAP_S) -> StateErrorSeries:
    """Errors of ``estimate`` at its own stamps (thinned to score_rate_hz) against truth interpolated there:
    linearly for position and velocity, normalised-linearly for the attitude (truth at >= 10 Hz turns
    too little between samples for slerp to differ)."""
    if len(truth) == 0 or len(estimate) == 0:
        return StateErrorSeries.empty()
    keep = scored_indices(estimate.t_s, truth.t_s, score_rate_hz, max_gt_gap_s)
    if keep.size == 0:
        return StateErrorSeries.empty()
    t = estimate.t_s[keep]
    truth = truth.in_frame(estimate.frame)

    def at_t(a):
        return np.stack([np.interp(t, truth.t_s, a[:, k]) for k in range(a.shape[1])], axis=-1)
    # q and -q are one attitude: chain the truth onto one hemisphere so neighbours interpolate the short way.
    q = truth.q_world_body.copy()
    q[1:] *= np.where(np.cumsum(np.einsum("ni,ni->n", q[1:], q[:-1]) < 0.0) % 2 == 1, -1.0, 1.0)[:, None]
    q_true = at_t(q)
    q_true /= np.linalg.norm(q_true, axis=1, keepdims=True)
    err_pos = estimate.pos_enu_m[keep] - at_t(truth.pos_enu_m)
    err_vel = estimate.vel_world_mps[keep] - at_t(truth.vel_world_mps)
    err_att = rotvec_from_quat_batch(quat_multiply_batch(q_true, estimate.q_world_body[keep] * _CONJUGATE))

    def P(a):
        return None if a is None else a[keep]
    return StateErrorSeries(t, err_pos, err_vel, err_att, _nees(err_pos, P(estimate.P_pos_m2)),
                            _nees(err_vel, P(estimate.P_vel_m2ps2)), _nees(err_att, P(estimate.P_att_rad2)))


def _rms(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.sqrt(np.mean(x**2))) if x.size else math.nan


def _mean_and_within_95(nees: np.ndarray) -> tuple[float, float]:
    nees = nees[np.isfinite(nees)]
    return (float(nees.mean()), float(np.mean(nees <= CHI2_3DOF_95))) if nees.size else (math.nan, math.nan)


@dataclass(frozen=True)
class StateErrorStats:
    """Summary of a StateErrorSeries; NaN where there is nothing to summarise. RMSEs of vector norms;
    nees_*_mean is 3 for a consistent covariance and nees_*_within_95_frac then 0.95."""

    samples: int
    duration_s: float
    position_3d_rmse_m: float
    velocity_rmse_mps: float
    velocity_horizontal_rmse_mps: float
    attitude_tilt_rmse_deg: float
    yaw_rmse_deg: float
    nees_position_3d_mean: float
    nees_position_3d_within_95_frac: float
    nees_velocity_mean: float
    nees_velocity_within_95_frac: float
    nees_attitude_mean: float
    nees_attitude_within_95_frac: float

    @classmethod
    def empty(cls) -> StateErrorStats:
        return cls(0, *([math.nan] * 12))

    @classmethod
    def from_series(cls, s: StateErrorSeries) -> StateErrorStats:
        if s.t_s.size == 0:
            return cls.empty()
        return cls(int(s.t_s.size), float(s.t_s[-1] - s.t_s[0]), _rms(np.linalg.norm(s.pos_m, axis=1)),
                   _rms(np.linalg.norm(s.vel_mps, axis=1)), _rms(np.linalg.norm(s.vel_mps[:, :2], axis=1)),
                   math.degrees(_rms(np.linalg.norm(s.att_rad[:, :2], axis=1))), math.degrees(_rms(s.att_rad[:, 2])),
                   *_mean_and_within_95(s.nees_pos), *_mean_and_within_95(s.nees_vel),
                   *_mean_and_within_95(s.nees_att))
