"""Resets of the ESKF: re-localisation after divergence, and heading alignment.

After a run of rejected fixes the position is wrong, and usually the velocity and heading too (that is
what made the position drift). Replacing the position alone leaves a filter that rejects the next fix
again. A visual fix measures the heading as well, so the reset can set it; the velocity keeps its value
(turned with the heading, i.e. kept in the body frame) but gets a wide uncertainty that the next fixes
shrink. Blocks that are replaced lose their correlations; biases and baro offset are kept.

A heading reset alone aligns a filter started on a coarse heading (the GNSS course, ±10°) with the first
precise one (a visual fix, ±0.1°). Fused as a linear update, a correction that large leaks into roll and
pitch through the linearisation: in the demo flight an 11° correction left a 1.5° tilt error for 30 s
against a claimed 0.35° (an accelerometer bias 0.25 m/s² off to match); with the reset, 0.3° against
0.2-0.25°. PX4's EKF2 resets its yaw for the same reason.
"""
from __future__ import annotations

import numpy as np

from gps_denied_nav.core.eskf_history import PositionReset
from gps_denied_nav.core.eskf_state import E_ATT, E_POS, E_VEL, X_POS, X_QUAT, X_VEL
from gps_denied_nav.core.rotations import euler_from_quat, quat_from_rotvec, quat_multiply, quat_to_rotmat, wrap_angle


def _replace_block(P: np.ndarray, block: slice, cov: np.ndarray) -> None:
    P[block, :] = 0.0
    P[:, block] = 0.0
    P[block, block] = cov


def apply_reset(x: np.ndarray, P: np.ndarray, reset: PositionReset) -> tuple[np.ndarray, np.ndarray]:
    """-> (x, P) after ``reset``; the inputs are not modified."""
    x, P = x.copy(), P.copy()
    if reset.pos_enu_m is not None:
        x[X_POS] = reset.pos_enu_m
        _replace_block(P, E_POS, reset.cov_enu_m2)
    if reset.yaw_rad is not None:
        q = x[X_QUAT]
        R_old = quat_to_rotmat(q)
        turn = quat_from_rotvec(np.array([0.0, 0.0, wrap_angle(reset.yaw_rad - euler_from_quat(q)[2])]))
        x[X_QUAT] = quat_multiply(turn, q)          # about the world vertical: roll and pitch are kept
        if reset.rotate_velocity:
            x[X_VEL] = quat_to_rotmat(turn) @ x[X_VEL]
        # The filter's angle error is local (body): δθ_world = R δθ_local.
        R = quat_to_rotmat(x[X_QUAT])
        if reset.tilt_sigma_rad is None:
            # Heading only: in the world frame the vertical component of the angle error is replaced
            # (with its correlations); the tilt's variance and correlations are carried over.
            J = np.eye(P.shape[0])
            J[E_ATT, E_ATT] = R.T @ np.diag([1.0, 1.0, 0.0]) @ R_old
            P = J @ P @ J.T
            P[E_ATT, E_ATT] += R.T @ np.diag([0.0, 0.0, reset.yaw_var_rad2]) @ R
        else:
            world = np.diag([reset.tilt_sigma_rad**2, reset.tilt_sigma_rad**2, reset.yaw_var_rad2])
            _replace_block(P, E_ATT, R.T @ world @ R)
    if reset.vel_enu_mps is not None:
        x[X_VEL] = reset.vel_enu_mps
    if reset.vel_sigma_mps is not None:
        _replace_block(P, E_VEL, np.eye(3) * reset.vel_sigma_mps**2)
    return x, P
