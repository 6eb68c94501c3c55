"""IMU propagation of the ESKF: nominal kinematics, error-state transition and discrete process noise.

Every function works on a run of N IMU intervals at once, so that re-propagating a second of stored
samples after a delayed fix is a handful of vectorised numpy calls plus one short covariance loop; the
live filter calls the same code with N = 1, so in-time and delayed fusion share one implementation.
The caller supplies one constant input per interval (the filter interpolates the samples linearly
and takes the value at mid-interval, removing the half-sample lag of a zero-order hold). Within an
interval the nominal kinematics are Solà 2017 eq. 260 with the rotation evaluated at mid-interval,
second order in ω·Δt, which removes the systematic velocity error of the start-of-interval rotation
during roll manoeuvres. The error-state transition is the truncated series Φ ≈ I + AΔt + ½A²Δt² of the
continuous error dynamics (the first-order part is eq. 269-270), with the exact rotation block
R{ωΔt}^T; the process noise is eq. 271 built from continuous noise densities.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gps_denied_nav.core.eskf_state import (E_ACCEL_BIAS, E_ATT, E_GYRO_BIAS, E_POS, E_VEL, ERROR_DIM,
                                            NOMINAL_DIM, X_ACCEL_BIAS, X_GYRO_BIAS, X_POS, X_QUAT, X_VEL)
from gps_denied_nav.core.rotations import (quat_cumulative_product, quat_from_rotvec_batch,
                                           quat_multiply_batch, quat_to_rotmat_batch, skew_batch)

GRAVITY_ENU_MPS2 = (0.0, 0.0, -9.80665)
_IDENTITY = np.eye(ERROR_DIM)
_EYE3 = np.eye(3)
_DIAG = np.arange(ERROR_DIM)


@dataclass(frozen=True)
class ProcessNoise:
    """Continuous-time noise densities of the IMU error model and the baro offset.

    Defaults are the "Bosch BMI088 class" of `sim/imu_model.py` (see there for the figures' sources).
    """

    accel_noise_density_mps2_rthz: float = 1.7e-3      # velocity random walk
    gyro_noise_density_radps_rthz: float = 2.4e-4      # angle random walk (0.014 deg/s/sqrt(Hz))
    accel_bias_random_walk_mps3_rthz: float = 5e-4
    gyro_bias_random_walk_radps2_rthz: float = 1e-5
    baro_offset_random_walk_m_rts: float = 0.02        # m/sqrt(s): weather and thermal drift

    def variance_rates(self) -> np.ndarray:
        """[16] diagonal of Fi Qi Fi^T per second of interval (Solà eq. 271): Q_k = rates * Δt_k.

        A white density σ (unit/√Hz) sampled over Δt is an impulse of variance σ²Δt on the integrated
        quantity; bias random walks likewise add σ²Δt. No position noise: it enters through δv.
        """
        return np.array([0.0, 0.0, 0.0]
                        + [self.accel_noise_density_mps2_rthz] * 3
                        + [self.gyro_noise_density_radps_rthz] * 3
                        + [self.accel_bias_random_walk_mps3_rthz] * 3
                        + [self.gyro_bias_random_walk_radps2_rthz] * 3
                        + [self.baro_offset_random_walk_m_rts]) ** 2


@dataclass(frozen=True)
class NominalRun:
    """Nominal states after each of N intervals and the quantities the error Jacobians need.

    ``x`` [N, 17] nominal states at the interval ends; ``R_mid`` [N, 3, 3] body->world rotation at
    mid-interval; ``accel_body_mps2``/``omega_body_radps`` [N, 3] bias-corrected IMU readings;
    ``dq`` [N, 4] attitude increment of each interval; ``dt_s`` [N].
    """

    x: np.ndarray
    R_mid: np.ndarray
    accel_body_mps2: np.ndarray
    omega_body_radps: np.ndarray
    dq: np.ndarray
    dt_s: np.ndarray


def propagate_nominal(x0: np.ndarray, imu: np.ndarray, dt_s: np.ndarray,
                      gravity_enu_mps2: np.ndarray) -> NominalRun:
    """Integrate N constant IMU inputs from nominal state x0 [17].

    ``imu`` [N, 6] = (specific force m/s², angular rate rad/s) in body FLU; ``dt_s`` [N] > 0.
    Biases and baro offset are constant between updates, so every interval is known up front and the
    recursion vectorises: attitude by a prefix product, velocity and position by cumulative sums.
    """
    dt = np.asarray(dt_s, dtype=float)
    dt_col = dt[:, None]
    f_body = imu[:, :3] - x0[X_ACCEL_BIAS]
    w_body = imu[:, 3:] - x0[X_GYRO_BIAS]
    half = quat_from_rotvec_batch(0.5 * dt_col * w_body)
    # Exp(ωΔt) = Exp(ωΔt/2)²; for h = [c, s·u] that square is [1 - 2 s², 2 c s·u].
    dq = np.empty_like(half)
    dq[:, 0] = 1.0 - 2.0 * np.einsum("ni,ni->n", half[:, 1:], half[:, 1:])
    dq[:, 1:] = 2.0 * half[:, :1] * half[:, 1:]
    q_end = quat_multiply_batch(x0[X_QUAT], quat_cumulative_product(dq))
    # Renormalise once per run; the scan's rounding drift is ~1e-16 per pass.
    q_end /= np.sqrt(np.einsum("ni,ni->n", q_end, q_end))[:, None]
    q_start = np.concatenate([x0[None, X_QUAT], q_end[:-1]])
    R_mid = quat_to_rotmat_batch(quat_multiply_batch(q_start, half))
    dv = ((R_mid @ f_body[:, :, None])[:, :, 0] + gravity_enu_mps2) * dt_col
    v_end = x0[X_VEL] + np.cumsum(dv, axis=0)
    x = np.empty((len(dt), NOMINAL_DIM))
    x[:] = x0
    # p_k = p_{k-1} + v_{k-1} Δt + ½ a Δt² = p_{k-1} + (v_k - ½ a Δt) Δt (eq. 260).
    x[:, X_POS] = x0[X_POS] + np.cumsum((v_end - 0.5 * dv) * dt_col, axis=0)
    x[:, X_VEL] = v_end
    x[:, X_QUAT] = q_end
    return NominalRun(x, R_mid, f_body, w_body, dq, dt)


def error_transition(run: NominalRun) -> np.ndarray:
    """-> [N, 16, 16] error-state transitions Φ_k of the intervals of ``run``.

    With A the continuous error dynamics (δv̇ = -R[a]×δθ - Rδab, δθ̇ = -[ω]×δθ - δωb,
    δṗ = δv), the first-order terms are Solà eq. 270; the ½A²Δt² terms add the δp <- (δθ, δab) and
    δv <- δωb couplings that a first-order Φ misses within one interval.
    """
    n = len(run.dt_s)
    dt = run.dt_s[:, None, None]
    dt2 = 0.5 * dt * dt
    R = run.R_mid
    R_fx = R @ skew_batch(run.accel_body_mps2)
    w_x = skew_batch(run.omega_body_radps)
    F = np.zeros((n, ERROR_DIM, ERROR_DIM))
    F[:] = _IDENTITY
    F[:, E_POS, E_VEL] = _EYE3 * dt
    F[:, E_POS, E_ATT] = -dt2 * R_fx
    F[:, E_POS, E_ACCEL_BIAS] = -dt2 * R
    F[:, E_VEL, E_ATT] = R_fx @ (dt2 * w_x - dt * _EYE3)
    F[:, E_VEL, E_ACCEL_BIAS] = -dt * R
    F[:, E_VEL, E_GYRO_BIAS] = dt2 * R_fx
    F[:, E_ATT, E_ATT] = np.swapaxes(quat_to_rotmat_batch(run.dq), 1, 2)
    F[:, E_ATT, E_GYRO_BIAS] = dt2 * w_x - dt * _EYE3
    return F


def propagate_constant_velocity(x0: np.ndarray, dt_s: np.ndarray) -> NominalRun:
    """The constant-velocity model's nominal run over N intervals: p += v Δt, everything else held.

    For flights without an IMU (a photo clip): the filter's inputs are then clock ticks, not samples."""
    dt = np.asarray(dt_s, dtype=float)
    x = np.empty((len(dt), NOMINAL_DIM))
    x[:] = x0
    x[:, X_POS] = x0[X_POS] + np.cumsum(dt)[:, None] * x0[X_VEL]
    zeros = np.zeros((len(dt), 3))
    unit = np.tile([1.0, 0.0, 0.0, 0.0], (len(dt), 1))
    return NominalRun(x, np.tile(_EYE3, (len(dt), 1, 1)), zeros, zeros, unit, dt)


def constant_velocity_transition(dt_s: np.ndarray) -> np.ndarray:
    """[N, 16, 16] transitions of the constant-velocity model: δp += δv Δt, nothing else couples (no specific
    force ties the tilt to the velocity: none is measured)."""
    F = np.zeros((len(dt_s), ERROR_DIM, ERROR_DIM))
    F[:] = _IDENTITY
    F[:, E_POS, E_VEL] = _EYE3 * np.asarray(dt_s, float)[:, None, None]
    return F


@dataclass(frozen=True)
class ConstantVelocityNoise:
    """Process noise of the constant-velocity model (white acceleration and attitude rates), per second.

    A survey flies straight legs and turns at their ends: 1.5 m/s² per √Hz of unmodelled acceleration holds
    a 90° turn at 10 m/s in 6 s (2.6 m/s²) with fixes every 2 s inside the gate (position NEES 1.9 averaged
    over such flights, 3 if honest: tests/core/test_eskf_constant_velocity.py; 1.0 gave 3.8, over 10 in
    the turn). The heading may change anywhere between two photos (0.5 rad/s/√Hz: 75° 1σ over 7 s; at
    0.05 a turn's first fix failed the gate on its heading and every later one with it); a gimbal holds
    the camera's tilt."""

    accel_density_mps2_rthz: float = 1.5
    yaw_rate_density_radps_rthz: float = 0.5
    tilt_rate_density_radps_rthz: float = 0.002

    def variance_rates(self) -> np.ndarray:
        """[16] diagonal of Q per second: velocity and attitude only (biases are not estimated)."""
        rates = np.zeros(ERROR_DIM)
        rates[E_VEL] = self.accel_density_mps2_rthz**2
        rates[E_ATT] = np.array([self.tilt_rate_density_radps_rthz] * 2 + [self.yaw_rate_density_radps_rthz]) ** 2
        return rates


def propagate_covariance(P0: np.ndarray, F: np.ndarray, q_diag: np.ndarray, out: np.ndarray) -> None:
    """P_k = Φ_k P_{k-1} Φ_k^T + Q_k for k = 1..N (Q_k diagonal [N, 16]), written into ``out`` [N, 16, 16].

    The loop is inherently sequential; everything it needs was built vectorised beforehand, so each
    step is two 16x16 products and a diagonal add.
    """
    Q = np.zeros((len(F), ERROR_DIM, ERROR_DIM))
    Q[:, _DIAG, _DIAG] = q_diag
    F_T = F.transpose(0, 2, 1)
    P = P0
    for k in range(len(F)):
        P = F[k] @ P @ F_T[k] + Q[k]
        out[k] = P
