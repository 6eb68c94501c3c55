"""Checks that keep the ESKF from being poisoned: what it refuses to fuse and when it must say it is lost.

A Kalman filter trusts its inputs: one measurement with a NaN variance, or an ungated reset with a
negative one, turns P into NaN, and the filter goes on "tracking" with it. So every correction is
checked before and after (finite residual, noise covariance finite and positive definite, posterior
finite) and refused otherwise, and the state itself is checked where health is reported: a state or a
covariance that is not finite or not positive definite, a quaternion that is not unit length, or a speed
no UAV flies means lost, never tracking.
"""
from __future__ import annotations

import numpy as np

from gps_denied_nav.core.eskf_history import PositionReset
from gps_denied_nav.core.eskf_measurements import Measurement
from gps_denied_nav.core.eskf_state import X_QUAT, X_VEL


def positive_definite(M: np.ndarray) -> bool:
    """Finite, symmetric to rounding and Cholesky-factorisable."""
    if M.size == 0 or not np.all(np.isfinite(M)):
        return False
    scale = max(float(np.max(np.abs(M))), 1e-300)
    if np.max(np.abs(M - M.T)) > 1e-9 * scale:
        return False
    try:
        np.linalg.cholesky(M)
    except np.linalg.LinAlgError:
        return False
    return True


def measurement_problem(m: Measurement) -> str | None:
    """Why ``m`` cannot be fused, or None."""
    if not (np.all(np.isfinite(m.residual)) and np.all(np.isfinite(m.H))):
        return "residual or Jacobian not finite"
    if not positive_definite(np.asarray(m.R, dtype=float)):
        return "noise covariance not finite and positive definite"
    return None


def reset_problem(reset: PositionReset) -> str | None:
    """Why an ungated reset cannot be applied, or None (it bypasses the gate, so it is checked harder)."""
    if reset.pos_enu_m is not None:
        if not np.all(np.isfinite(reset.pos_enu_m)) or not positive_definite(np.asarray(reset.cov_enu_m2)):
            return "reset position or covariance not finite and positive definite"
    if reset.yaw_rad is not None and not (np.isfinite(reset.yaw_rad) and 0.0 < reset.yaw_var_rad2 < np.inf):
        return "reset heading or its variance not finite and positive"
    for sigma in (reset.vel_sigma_mps, reset.tilt_sigma_rad):
        if sigma is not None and not 0.0 < sigma < np.inf:
            return "reset velocity or tilt sigma not finite and positive"
    if reset.vel_enu_mps is not None and not np.all(np.isfinite(reset.vel_enu_mps)):
        return "reset velocity not finite"
    return None


def state_problem(x: np.ndarray, P: np.ndarray, max_speed_mps: float) -> str | None:
    """Why the filter's (x [17], P [16x16]) cannot be trusted, or None."""
    if not np.all(np.isfinite(x)):
        return "state not finite"
    if abs(float(np.linalg.norm(x[X_QUAT])) - 1.0) > 1e-6:
        return "attitude quaternion not unit length"
    if float(np.linalg.norm(x[X_VEL])) > max_speed_mps:
        return f"speed {np.linalg.norm(x[X_VEL]):.0f} m/s above {max_speed_mps:.0f} m/s"
    if not positive_definite(P):
        return "covariance not finite and positive definite"
    return None
