"""Error-state Kalman filter (Solà 2017) fusing IMU with delayed absolute visual fixes, baro and GNSS.

The filter owns the nominal state x (p, v, q_world_body, accel/gyro biases, baro offset) and the 16x16
error covariance P; measurement models (`eskf_measurements`) are passed in, as in filterpy's EKF.
Delayed fusion is done by *rollback and replay* rather than by a PX4-EKF2-style fusion horizon with
an output predictor: every IMU row keeps its posterior (x, P) for `history_s`, a fix stamped at
exposure rolls back to the row before its stamp, is fused there, and the stored IMU samples and later
measurements are replayed to now. That is exactly the filter an on-time fix would have produced (the
tests check 1e-9 agreement), handles any latency inside the window and out-of-order fixes (they roll
back further) without tuning a fixed delay, and keeps the published state current with no separate
output predictor. The price, re-propagating up to a few seconds of IMU per fix, is kept small by
vectorising the nominal propagation and building all transition matrices in one batch
(`eskf_propagation`). Rollback and replay live in `eskf_timeline` (rows and events: `eskf_history`);
gating, Joseph update and reset in `eskf_update`; counters and the divergence verdict in
`eskf_diagnostics`.
"""
from __future__ import annotations

import functools
import numpy as np

from gps_denied_nav.core import eskf_measurements as models
from gps_denied_nav.core.eskf_diagnostics import (DiagnosticsLog, EskfDiagnostics, InnovationRecord,
                                                  MeasurementKind, ReinitReason, UpdateOutcome, UpdateStatus)
from gps_denied_nav.core.eskf_history import PositionReset, TimedEvent
from gps_denied_nav.core.eskf_reset import apply_reset
from gps_denied_nav.core.eskf_config import EskfConfig
from gps_denied_nav.core.eskf_guard import measurement_problem, reset_problem, state_problem
from gps_denied_nav.core.eskf_propagation import ProcessNoise
from gps_denied_nav.core.eskf_state import (E_ACCEL_BIAS, E_ATT, E_BARO, E_GYRO_BIAS, E_POS, E_VEL,
                                            ERROR_DIM, NominalState, StateEstimate, align_roll_pitch,
                                            yaw_from_velocity)
from gps_denied_nav.core.eskf_timeline import Timeline
from gps_denied_nav.core.eskf_update import ChiSquareGate, correct
from gps_denied_nav.core.rotations import quat_to_rotmat

__all__ = ["EskfConfig", "ErrorStateKalmanFilter", "MeasurementKind", "NominalState", "ProcessNoise",
           "ReinitReason", "StateEstimate", "UpdateOutcome", "UpdateStatus", "align_roll_pitch",
           "yaw_from_velocity"]


class ErrorStateKalmanFilter:
    """IMU-driven ESKF with stamped (possibly late, possibly out-of-order) measurement updates."""

    def __init__(self, config: EskfConfig | None = None):
        self.config = config or EskfConfig()
        self._gate = ChiSquareGate(self.config.gate_probability)
        self._timeline = Timeline(self.config, self._fuse)
        self._hist = self._timeline.history
        self._diag = DiagnosticsLog()
        self._seq = 0
        self._initialized = False

    # ------------------------------------------------------------------ initialisation
    def initialize(self, stamp_s: float, pos_enu_m, vel_enu_mps, q_world_body, *,
                   pos_sigma_m=5.0, vel_sigma_mps=0.5, att_sigma_rad=(0.02, 0.02, 0.1),
                   accel_bias_sigma_mps2=0.1, gyro_bias_sigma_radps=5e-3,
                   baro_offset_m: float = 0.0, baro_offset_sigma_m: float = 1e3,
                   accel_bias_mps2=(0.0, 0.0, 0.0), gyro_bias_radps=(0.0, 0.0, 0.0)) -> None:
        """Start the filter at ``stamp_s`` with a diagonal covariance from the given 1σ values.

        Sigmas are scalars or per-axis [3]; ``att_sigma_rad`` is about the body axes (roll, pitch,
        yaw for a level vehicle). The default baro offset sigma is so wide that the first baro
        altitude sets the offset (the exact limit of augmenting the state with that reading).
        """
        state = NominalState(np.asarray(pos_enu_m, float), np.asarray(vel_enu_mps, float),
                             np.asarray(q_world_body, float), np.asarray(accel_bias_mps2, float),
                             np.asarray(gyro_bias_radps, float), float(baro_offset_m))
        sigmas = np.empty(ERROR_DIM)
        for block, value in ((E_POS, pos_sigma_m), (E_VEL, vel_sigma_mps), (E_ATT, att_sigma_rad),
                             (E_ACCEL_BIAS, accel_bias_sigma_mps2), (E_GYRO_BIAS, gyro_bias_sigma_radps)):
            sigmas[block] = value
        sigmas[E_BARO] = baro_offset_sigma_m
        self._timeline.reset(float(stamp_s), state.to_vector(), np.diag(sigmas**2))
        self._diag = DiagnosticsLog()
        self._initialized = True

    @property
    def initialized(self) -> bool:
        return self._initialized

    # ------------------------------------------------------------------ propagation
    def propagate(self, stamp_s: float, accel_body_mps2, gyro_body_radps) -> None:
        """Add one IMU sample: specific force (m/s², body FLU, gravity included) and rate (rad/s)."""
        self.propagate_batch(np.array([stamp_s], float), np.reshape(accel_body_mps2, (1, 3)),
                             np.reshape(gyro_body_radps, (1, 3)))

    def propagate_batch(self, stamp_s: np.ndarray, accel_body_mps2: np.ndarray,
                        gyro_body_radps: np.ndarray) -> None:
        """Add IMU samples [N] (stamps increasing), [N, 3], [N, 3] in one vectorised step.

        Samples not newer than the last one, more than ``history_s`` after it, not finite or beyond the
        sensor's range (config) are dropped and counted. Measurements waiting for the IMU
        are fused when it passes them.
        """
        self._require_init()
        imu = np.hstack([np.reshape(accel_body_mps2, (-1, 3)), np.reshape(gyro_body_radps, (-1, 3))])
        self._diag.imu_samples_dropped += self._timeline.add_imu(np.asarray(stamp_s, dtype=float), imu)

    # ------------------------------------------------------------------ corrections
    def _fuse(self, x, P, event: TimedEvent, record: bool):
        """Correction step handed to the timeline: gate + Joseph update, or a position reset."""
        if event.reset is not None:
            problem = reset_problem(event.reset)
            x_new, P_new = (x, P) if problem else apply_reset(x, P, event.reset)
            return self._guarded(x, P, x_new, P_new, UpdateOutcome(event.kind, event.stamp_s, UpdateStatus.ACCEPTED),
                                 problem, record)
        measurement = event.model(NominalState.from_vector(x))
        problem = measurement_problem(measurement)
        if problem:
            return self._guarded(x, P, x, P, UpdateOutcome(event.kind, event.stamp_s, UpdateStatus.INVALID),
                                 problem, record)
        threshold = self._gate.threshold(measurement.dof) if event.gated else np.inf
        result = correct(x, P, measurement, threshold)
        if result.accepted and not (np.all(np.isfinite(result.x)) and np.all(np.isfinite(result.P))):
            return self._guarded(x, P, x, P, UpdateOutcome(event.kind, event.stamp_s, UpdateStatus.INVALID),
                                 "posterior not finite", record)
        status = UpdateStatus.ACCEPTED if result.accepted else UpdateStatus.REJECTED
        outcome = UpdateOutcome(event.kind, event.stamp_s, status, result.nis, measurement.dof, threshold)
        if record:
            self._diag.record(outcome, InnovationRecord(event.stamp_s, measurement.residual,
                                                        result.innovation_cov, result.nis, threshold,
                                                        result.accepted))
        return result.x, result.P, outcome

    def _guarded(self, x, P, x_new, P_new, outcome: UpdateOutcome, problem: str | None, record: bool):
        """A reset's result, or the unchanged (x, P) with status INVALID when ``problem`` or a non-finite
        result says it must not be applied."""
        if problem is None and not (np.all(np.isfinite(x_new)) and np.all(np.isfinite(P_new))):
            problem = "result not finite"
        if problem is not None:
            outcome = UpdateOutcome(outcome.kind, outcome.stamp_s, UpdateStatus.INVALID)
            x_new, P_new = x, P
            if record:
                self._diag.last_invalid = f"{outcome.kind.value}: {problem}"
        if record:
            self._diag.record(outcome, None)
        return x_new, P_new, outcome

    def update_at(self, stamp_s: float, kind: MeasurementKind, model=None, *, reset: PositionReset | None = None,
                  gated: bool = True) -> UpdateOutcome:
        """Fuse ``model(state) -> Measurement`` (or a position ``reset``) valid at ``stamp_s``.

        Stamps older than the history (or than ``history_s`` before the newest IMU sample) are refused
        and counted; stamps after the newest IMU sample wait for it (status DEFERRED).
        """
        self._require_init()
        self._seq += 1
        outcome = self._timeline.add_event(TimedEvent(float(stamp_s), self._seq, kind, model, reset, gated))
        if outcome.status in (UpdateStatus.TOO_OLD, UpdateStatus.TOO_NEW):
            self._diag.record(outcome, None)
        return outcome

    def update(self, residual, H, R, kind: MeasurementKind, gated: bool = True) -> UpdateOutcome:
        """Generic correction at the current time with a ready (residual [m], H [m,16], R [m,m]).

        Not logged for replay (a fixed residual cannot be re-linearised): prefer `update_at` with a
        model for anything a late fix may roll back past.
        """
        self._require_init()
        hist = self._hist
        measurement = models.Measurement(np.asarray(residual, float), np.asarray(H, float), np.asarray(R, float))
        event = TimedEvent(float(hist.t_s[-1]), -1, kind, lambda _state: measurement, None, gated)
        x, P, outcome = self._fuse(hist.x[-1], hist.P[-1], event, record=True)
        hist.x[-1], hist.P[-1] = x, P
        return outcome

    def update_visual_fix(self, stamp_s: float, pos_enu_m, cov_enu_m2, yaw_rad: float | None = None,
                          yaw_var_rad2: float | None = None) -> UpdateOutcome:
        """Absolute visual fix at exposure ``stamp_s``: EN [2] or ENU [3] position, optional heading."""
        model = functools.partial(models.visual_fix_measurement, pos_enu_m=np.asarray(pos_enu_m, float),
                                  cov_enu_m2=np.asarray(cov_enu_m2, float), yaw_rad=yaw_rad,
                                  yaw_var_rad2=yaw_var_rad2)
        return self.update_at(stamp_s, MeasurementKind.VISUAL_FIX, model)

    def update_gnss(self, stamp_s: float, pos_enu_m, cov_enu_m2, vel_enu_mps=None,
                    vel_cov_m2ps2=None) -> UpdateOutcome:
        """GNSS position [3] (and velocity [3]) in ENU, for initialisation and flight before loss."""
        model = functools.partial(models.gnss_measurement, pos_enu_m=np.asarray(pos_enu_m, float),
                                  cov_enu_m2=np.asarray(cov_enu_m2, float), vel_enu_mps=vel_enu_mps,
                                  vel_cov_m2ps2=vel_cov_m2ps2)
        return self.update_at(stamp_s, MeasurementKind.GNSS, model)

    def update_yaw(self, stamp_s: float, yaw_rad: float, var_rad2: float) -> UpdateOutcome:
        """Heading alone (rad, 0 = east, CCW positive; residual wrapped), e.g. a magnetometer."""
        model = functools.partial(models.yaw_measurement, yaw_rad=float(yaw_rad), var_rad2=float(var_rad2))
        return self.update_at(stamp_s, MeasurementKind.YAW, model)

    def update_baro(self, stamp_s: float, baro_alt_m: float, var_m2: float) -> UpdateOutcome:
        """Barometric altitude (m, any datum: the baro offset state absorbs it) with variance (m²)."""
        model = functools.partial(models.baro_measurement, baro_alt_m=float(baro_alt_m), var_m2=float(var_m2))
        return self.update_at(stamp_s, MeasurementKind.BARO, model)

    def update_zero_velocity(self, stamp_s: float, sigma_mps: float = 0.05) -> UpdateOutcome:
        """Vehicle known to be at rest (on the ground before take-off): v = 0 with 1σ ``sigma_mps``."""
        model = functools.partial(models.velocity_measurement, vel_enu_mps=np.zeros(3),
                                  cov_enu_m2ps2=np.eye(3) * sigma_mps**2)
        return self.update_at(stamp_s, MeasurementKind.ZERO_VELOCITY, model)

    def reinitialize_position(self, stamp_s: float, pos_enu_m, cov_enu_m2, *, yaw_rad: float | None = None,
                              yaw_var_rad2: float = 0.0, vel_sigma_mps: float | None = None,
                              tilt_sigma_rad: float = 0.05, vel_enu_mps=None) -> UpdateOutcome:
        """Accept a confident fix without gating (after a global re-localisation): the position and
        its covariance are replaced at ``stamp_s`` and their correlations dropped. With ``yaw_rad`` the
        heading is replaced too (the velocity turns with it) and roll/pitch get ``tilt_sigma_rad``; with
        ``vel_sigma_mps`` the velocity gets that uncertainty and, with ``vel_enu_mps`` (e.g. from two
        consecutive fixes), that value, else it keeps its estimate: a filter that diverged has wrong
        velocity and attitude as well, and a position alone would be rejected again at the next fix.
        Biases are kept. Clears the consecutive-rejection count. Like any fix it is refused (TOO_OLD) when
        stamped before the history window."""
        reset = PositionReset(np.asarray(pos_enu_m, float).reshape(3), np.asarray(cov_enu_m2, float).reshape(3, 3),
                              None if yaw_rad is None else float(yaw_rad), float(yaw_var_rad2),
                              None if vel_sigma_mps is None else float(vel_sigma_mps), float(tilt_sigma_rad),
                              vel_enu_mps=None if vel_enu_mps is None else np.asarray(vel_enu_mps, float).reshape(3))
        return self.update_at(stamp_s, MeasurementKind.POSITION_RESET, reset=reset, gated=False)

    def reset_heading(self, stamp_s: float, yaw_rad: float, yaw_var_rad2: float) -> UpdateOutcome:
        """Set the heading (ENU yaw) at ``stamp_s`` without gating or linearising: roll, pitch, position
        and velocity keep their estimates and the tilt its covariance (see eskf_reset). For a first precise
        heading on a coarse one; fuse the same fix's position separately, not its heading again."""
        reset = PositionReset(None, None, float(yaw_rad), float(yaw_var_rad2), None, None, rotate_velocity=False)
        return self.update_at(stamp_s, MeasurementKind.HEADING_RESET, reset=reset, gated=False)

    @property
    def yaw_sigma_rad(self) -> float:
        """1σ of the heading about the world vertical (rad)."""
        R = quat_to_rotmat(self.q_world_body)
        return float(np.sqrt(max((R @ self._hist.P[-1][E_ATT, E_ATT] @ R.T)[2, 2], 0.0)))

    # ------------------------------------------------------------------ outputs
    def _require_init(self) -> None:
        if not self._initialized:
            raise RuntimeError("ErrorStateKalmanFilter used before initialize()")

    @property
    def stamp_s(self) -> float:
        """Stamp of the current estimate (the newest IMU sample, or the initialisation stamp)."""
        return float(self._hist.t_s[-1])

    @property
    def state(self) -> NominalState:
        return NominalState.from_vector(self._hist.x[-1])

    pos_enu_m = property(lambda self: self.state.pos_enu_m)
    vel_enu_mps = property(lambda self: self.state.vel_enu_mps)
    q_world_body = property(lambda self: self.state.q_world_body)
    accel_bias_mps2 = property(lambda self: self.state.accel_bias_mps2)
    gyro_bias_radps = property(lambda self: self.state.gyro_bias_radps)
    baro_offset_m = property(lambda self: self.state.baro_offset_m)

    @property
    def covariance(self) -> np.ndarray:
        """[16x16] error covariance, order (δp, δv, δθ, δab, δωb, δbaro)."""
        return self._hist.P[-1].copy()

    position_cov_m2 = property(lambda self: self._hist.P[-1][E_POS, E_POS].copy(), doc="[3x3] ENU m².")
    velocity_cov_m2ps2 = property(lambda self: self._hist.P[-1][E_VEL, E_VEL].copy(), doc="[3x3] ENU (m/s)².")
    attitude_cov_rad2 = property(lambda self: self._hist.P[-1][E_ATT, E_ATT].copy(),
                                 doc="[3x3] rad² of the local (body-frame) angle error.")

    def estimate_at(self, stamp_s: float) -> StateEstimate:
        """State and covariance at any stamp inside the history or ahead of it, without changing the filter.

        Ahead of the newest IMU sample the last sample is held (output prediction at any rate); in the
        past it starts from the stored row before the stamp (e.g. attitude at a camera exposure) and
        does not include measurements stamped between that row and ``stamp_s``.
        """
        self._require_init()
        x, P = self._timeline.estimate_at(float(stamp_s))
        return StateEstimate(float(stamp_s), NominalState.from_vector(x), P.copy())

    @property
    def pending_events(self) -> int:
        """Measurements waiting for the IMU to reach their stamps."""
        return len(self._hist.pending)

    @property
    def state_problem(self) -> str | None:
        """Why the current state or covariance cannot be trusted (eskf_guard), or None."""
        return state_problem(self._hist.x[-1], self._hist.P[-1], self.config.max_speed_mps)

    @property
    def reinit_reason(self) -> ReinitReason:
        if self.state_problem is not None:
            return ReinitReason.INVALID_STATE
        if np.trace(self.position_cov_m2) > self.config.max_position_cov_trace_m2:
            return ReinitReason.POSITION_COVARIANCE
        if self._diag.consecutive_visual_rejections >= self.config.max_consecutive_visual_rejections:
            return ReinitReason.CONSECUTIVE_REJECTIONS
        return ReinitReason.NONE

    @property
    def needs_reinit(self) -> bool:
        return self.reinit_reason is not ReinitReason.NONE

    @property
    def diagnostics(self) -> EskfDiagnostics:
        return self._diag.snapshot(float(np.trace(self.position_cov_m2)), self.reinit_reason)
