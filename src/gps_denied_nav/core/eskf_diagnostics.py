"""Diagnostics of the ESKF: measurement kinds, update outcomes, counters and the divergence verdict.

Everything a node needs for `/diagnostics` and for deciding to re-localise globally, as small
dataclasses (no string-keyed dicts): per-kind accepted/rejected/too-old counts, the last innovation
of each kind with its NIS and gate, and `needs_reinit` with the reason that raised it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np


class MeasurementKind(Enum):
    VISUAL_FIX = "visual_fix"
    GNSS = "gnss"
    BARO = "baro"
    YAW = "yaw"
    ZERO_VELOCITY = "zero_velocity"
    POSITION_RESET = "position_reset"
    HEADING_RESET = "heading_reset"


class UpdateStatus(Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"      # failed the chi-square gate
    TOO_OLD = "too_old"        # stamped before the stored history
    DEFERRED = "deferred"      # stamped after the newest IMU sample: fused when the IMU catches up
    TOO_NEW = "too_new"        # stamped beyond max_future_s ahead of the IMU, or the waiting queue is full
    INVALID = "invalid"        # non-finite values or a noise covariance that is not positive definite


class ReinitReason(Enum):
    NONE = "none"
    POSITION_COVARIANCE = "position_covariance"          # trace(P_pos) above the configured bound
    CONSECUTIVE_REJECTIONS = "consecutive_rejections"    # N visual fixes in a row failed the gate
    INVALID_STATE = "invalid_state"                      # state or covariance not finite / not PD (eskf_guard)


@dataclass(frozen=True)
class UpdateOutcome:
    """What happened to one measurement; ``nis``/``gate_threshold`` are NaN unless it was gated."""

    kind: MeasurementKind
    stamp_s: float
    status: UpdateStatus
    nis: float = float("nan")
    dof: int = 0
    gate_threshold: float = float("nan")


@dataclass(frozen=True)
class InnovationRecord:
    """Last innovation of a kind: residual [m], its covariance S [m x m], NIS and the gate."""

    stamp_s: float
    residual: np.ndarray
    innovation_cov: np.ndarray
    nis: float
    gate_threshold: float
    accepted: bool


@dataclass
class KindCounters:
    accepted: int = 0
    rejected: int = 0
    too_old: int = 0
    too_new: int = 0
    invalid: int = 0


@dataclass(frozen=True)
class EskfDiagnostics:
    """Snapshot of the filter's health (counters count first arrivals, not replays)."""

    counters: dict[MeasurementKind, KindCounters]
    last_innovation: dict[MeasurementKind, InnovationRecord]
    consecutive_visual_rejections: int
    position_cov_trace_m2: float
    needs_reinit: bool
    reinit_reason: ReinitReason
    imu_samples_dropped: int
    position_resets: int
    last_invalid: str


@dataclass
class DiagnosticsLog:
    """Mutable counterpart of `EskfDiagnostics`, owned by the filter."""

    counters: dict[MeasurementKind, KindCounters] = field(
        default_factory=lambda: {kind: KindCounters() for kind in MeasurementKind})
    last_innovation: dict[MeasurementKind, InnovationRecord] = field(default_factory=dict)
    consecutive_visual_rejections: int = 0
    imu_samples_dropped: int = 0
    position_resets: int = 0
    last_invalid: str = ""  # what the last INVALID measurement had wrong

    def record(self, outcome: UpdateOutcome, innovation: InnovationRecord | None) -> None:
        counters = self.counters[outcome.kind]
        refused = {UpdateStatus.TOO_OLD: "too_old", UpdateStatus.TOO_NEW: "too_new", UpdateStatus.INVALID: "invalid"}
        if outcome.status in refused:
            name = refused[outcome.status]
            setattr(counters, name, getattr(counters, name) + 1)
            return
        accepted = outcome.status is UpdateStatus.ACCEPTED
        counters.accepted += accepted
        counters.rejected += not accepted
        if innovation is not None:
            self.last_innovation[outcome.kind] = innovation
        if outcome.kind is MeasurementKind.VISUAL_FIX:
            self.consecutive_visual_rejections = 0 if accepted else self.consecutive_visual_rejections + 1
        if outcome.kind is MeasurementKind.POSITION_RESET:
            self.position_resets += 1
            self.consecutive_visual_rejections = 0

    def snapshot(self, position_cov_trace_m2: float, reason: ReinitReason) -> EskfDiagnostics:
        return EskfDiagnostics(
            counters={k: KindCounters(c.accepted, c.rejected, c.too_old, c.too_new, c.invalid)
                      for k, c in self.counters.items()},
            last_innovation=dict(self.last_innovation),
            consecutive_visual_rejections=self.consecutive_visual_rejections,
            position_cov_trace_m2=position_cov_trace_m2, needs_reinit=reason is not ReinitReason.NONE,
            reinit_reason=reason, imu_samples_dropped=self.imu_samples_dropped,
            position_resets=self.position_resets, last_invalid=self.last_invalid)
