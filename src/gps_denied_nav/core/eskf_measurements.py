"""Measurement models of the ESKF: each builds (residual, H, R) from the nominal state.

A model is a plain function ``model(state: NominalState, ...) -> Measurement``; the filter binds the
measured values with `functools.partial` so that a delayed fix can be re-linearised at whatever
nominal state the rollback produces. H is the Jacobian with respect to the 16-dim error state
(Solà 2017, §6.1.1: the nominal-state Jacobian chained with X_δx, here written directly in δx).
Position fixes refer to the body origin (camera lever arm neglected: centimetres against metres).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gps_denied_nav.core.eskf_state import E_ATT, E_BARO, E_POS, E_VEL, ERROR_DIM, NominalState
from gps_denied_nav.core.rotations import quat_to_rotmat, skew, wrap_angle


@dataclass(frozen=True)
class Measurement:
    """Linearised measurement: ``residual`` [m] = z - h(x), ``H`` [m, 16], ``R`` [m, m]."""

    residual: np.ndarray
    H: np.ndarray
    R: np.ndarray

    @property
    def dof(self) -> int:
        return len(self.residual)


def position_measurement(state: NominalState, pos_enu_m: np.ndarray, cov_enu_m2: np.ndarray) -> Measurement:
    """Horizontal (east, north: [2], cov [2x2]) or 3D ENU ([3], cov [3x3]) position in metres."""
    z = np.asarray(pos_enu_m, dtype=float)
    m = len(z)
    H = np.zeros((m, ERROR_DIM))
    H[:, E_POS.start:E_POS.start + m] = np.eye(m)
    return Measurement(z - state.pos_enu_m[:m], H, np.asarray(cov_enu_m2, dtype=float).reshape(m, m))


def yaw_measurement(state: NominalState, yaw_rad: float, var_rad2: float) -> Measurement:
    """Heading (rad, 0 = east, CCW positive); the residual is wrapped to (-π, π].

    yaw = atan2(R[1,0], R[0,0]); with R <- R Exp(δθ) the nose column c = R e_x moves by
    dc = -R [e_x]× δθ, so dyaw = (c_x dc_y - c_y dc_x) / (c_x² + c_y²) (singular only nose-vertical).
    """
    R = quat_to_rotmat(state.q_world_body)
    c = R[:, 0]
    dc_dtheta = -R @ skew(np.array([1.0, 0.0, 0.0]))
    H = np.zeros((1, ERROR_DIM))
    H[0, E_ATT] = (c[0] * dc_dtheta[1] - c[1] * dc_dtheta[0]) / (c[0] ** 2 + c[1] ** 2)
    residual = wrap_angle(yaw_rad - np.arctan2(c[1], c[0]))
    return Measurement(np.array([residual]), H, np.array([[var_rad2]]))


def baro_measurement(state: NominalState, baro_alt_m: float, var_m2: float) -> Measurement:
    """Barometric altitude (m, e.g. `core.baro.pressure_to_altitude_m`) = ENU up + baro offset."""
    H = np.zeros((1, ERROR_DIM))
    H[0, E_POS.start + 2] = 1.0
    H[0, E_BARO] = 1.0
    residual = baro_alt_m - (state.pos_enu_m[2] + state.baro_offset_m)
    return Measurement(np.array([residual]), H, np.array([[var_m2]]))


def velocity_measurement(state: NominalState, vel_enu_mps: np.ndarray, cov_enu_m2ps2: np.ndarray) -> Measurement:
    """ENU velocity [3] (m/s) with covariance [3x3]; zero-velocity updates pass zeros."""
    H = np.zeros((3, ERROR_DIM))
    H[:, E_VEL] = np.eye(3)
    return Measurement(np.asarray(vel_enu_mps, dtype=float) - state.vel_enu_mps, H,
                       np.asarray(cov_enu_m2ps2, dtype=float).reshape(3, 3))


def stack_measurements(*parts: Measurement) -> Measurement:
    """Concatenate independent measurements into one (block-diagonal R), gated jointly."""
    m = sum(p.dof for p in parts)
    R = np.zeros((m, m))
    i = 0
    for p in parts:
        R[i:i + p.dof, i:i + p.dof] = p.R
        i += p.dof
    return Measurement(np.concatenate([p.residual for p in parts]), np.vstack([p.H for p in parts]), R)


def visual_fix_measurement(state: NominalState, pos_enu_m: np.ndarray, cov_enu_m2: np.ndarray,
                           yaw_rad: float | None = None, yaw_var_rad2: float | None = None) -> Measurement:
    """Absolute visual fix: horizontal or 3D position, plus heading when the matcher provides it.

    Position and heading come from the same homography, so they are fused and gated as one vector: a
    wrong tile fails the gate as a whole instead of leaking its heading into the attitude.
    """
    pos = position_measurement(state, pos_enu_m, cov_enu_m2)
    if yaw_rad is None or yaw_var_rad2 is None:
        return pos
    return stack_measurements(pos, yaw_measurement(state, yaw_rad, yaw_var_rad2))


def gnss_measurement(state: NominalState, pos_enu_m: np.ndarray, cov_enu_m2: np.ndarray,
                     vel_enu_mps: np.ndarray | None = None,
                     vel_cov_m2ps2: np.ndarray | None = None) -> Measurement:
    """GNSS position [3] (ENU m, cov [3x3]) and, when given, velocity [3] (m/s, cov [3x3])."""
    pos = position_measurement(state, pos_enu_m, cov_enu_m2)
    if vel_enu_mps is None or vel_cov_m2ps2 is None:
        return pos
    return stack_measurements(pos, velocity_measurement(state, vel_enu_mps, vel_cov_m2ps2))
