"""State layout of the error-state Kalman filter, error injection/reset, and initial alignment.

The nominal state is kept as one flat 17-vector ``[p_enu_m(3), v_enu_mps(3), q_world_body(4),
accel_bias_mps2(3), gyro_bias_radps(3), baro_offset_m(1)]`` so that a history row is a single copy;
`NominalState` is the readable view handed to measurement models and callers. The error state has 16
dimensions ``[δp, δv, δθ, δab, δωb, δbaro]`` with a *local* (body-frame) angular error,
``q_true = q ⊗ Exp(δθ)`` (Solà 2017, §5.1 and eq. 282-287 for injection and reset).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gps_denied_nav.core.rotations import quat_from_rotvec, quat_multiply, quat_normalize, skew

NOMINAL_DIM = 17
ERROR_DIM = 16

# Nominal-state slices.
X_POS = slice(0, 3)
X_VEL = slice(3, 6)
X_QUAT = slice(6, 10)
X_ACCEL_BIAS = slice(10, 13)
X_GYRO_BIAS = slice(13, 16)
X_BARO = 16

# Error-state slices (rows/columns of P).
E_POS = slice(0, 3)
E_VEL = slice(3, 6)
E_ATT = slice(6, 9)
E_ACCEL_BIAS = slice(9, 12)
E_GYRO_BIAS = slice(12, 15)
E_BARO = 15


@dataclass(frozen=True)
class NominalState:
    """Readable nominal state: ENU position/velocity, attitude, IMU biases (body FLU), baro offset.

    ``baro_offset_m`` is what a barometric altitude reads above the ENU up coordinate
    (origin altitude, weather and sensor offset together).
    """

    pos_enu_m: np.ndarray
    vel_enu_mps: np.ndarray
    q_world_body: np.ndarray
    accel_bias_mps2: np.ndarray
    gyro_bias_radps: np.ndarray
    baro_offset_m: float

    @classmethod
    def from_vector(cls, x: np.ndarray) -> NominalState:
        """Flat [17] nominal vector -> NominalState (copies, so the filter's buffers stay private)."""
        x = np.array(x, dtype=float)
        return cls(x[X_POS], x[X_VEL], x[X_QUAT], x[X_ACCEL_BIAS], x[X_GYRO_BIAS], float(x[X_BARO]))

    def to_vector(self) -> np.ndarray:
        """-> flat [17] nominal vector."""
        return np.concatenate([self.pos_enu_m, self.vel_enu_mps, quat_normalize(self.q_world_body),
                               self.accel_bias_mps2, self.gyro_bias_radps, [self.baro_offset_m]])


@dataclass(frozen=True)
class StateEstimate:
    """Nominal state with its 16x16 error covariance at ``stamp_s``."""

    stamp_s: float
    state: NominalState
    covariance: np.ndarray


def inject_error(x: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Nominal [17] ⊕ error [16] -> nominal [17] (Solà eq. 282-283; attitude composed on the right)."""
    out = x.copy()
    out[X_POS] += dx[E_POS]
    out[X_VEL] += dx[E_VEL]
    out[X_QUAT] = quat_normalize(quat_multiply(x[X_QUAT], quat_from_rotvec(dx[E_ATT])))
    out[X_ACCEL_BIAS] += dx[E_ACCEL_BIAS]
    out[X_GYRO_BIAS] += dx[E_GYRO_BIAS]
    out[X_BARO] += dx[E_BARO]
    return out


def reset_jacobian(dtheta_rad: np.ndarray) -> np.ndarray:
    """[3] injected angle -> [16x16] G of the ESKF reset, P <- G P G^T (Solà eq. 285-287).

    Only the attitude block differs from identity: after injection the new local error is measured
    from the corrected nominal attitude, which rotates the old error by -δθ/2 to first order.
    """
    G = np.eye(ERROR_DIM)
    G[E_ATT, E_ATT] -= skew(0.5 * dtheta_rad)
    return G


def align_roll_pitch(accel_samples_body_mps2: np.ndarray) -> tuple[float, float]:
    """Roll and pitch (rad) from accelerometer samples [N, 3] (body FLU, m/s²) taken at rest.

    At rest the specific force is gravity's reaction, R^T [0, 0, g], so its direction in the body gives
    roll and pitch (yaw is unobservable from it). Averaging first suppresses the white noise; a
    horizontal accelerometer bias b tilts the result by about b/g rad.
    """
    f = np.mean(np.atleast_2d(accel_samples_body_mps2), axis=0)
    roll = np.arctan2(f[1], f[2])
    pitch = np.arctan2(-f[0], np.hypot(f[1], f[2]))
    return float(roll), float(pitch)


def yaw_from_velocity(vel_enu_mps: np.ndarray) -> float:
    """Course over ground (rad, 0 = east, CCW positive) from an ENU velocity [2 or 3] (m/s).

    Equals the yaw of a vehicle flying without sideslip or wind, e.g. a fixed wing on GNSS before loss.
    """
    return float(np.arctan2(vel_enu_mps[1], vel_enu_mps[0]))
