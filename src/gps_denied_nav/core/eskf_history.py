"""Bounded history of the ESKF for delayed fusion: IMU rows with their posterior states, and events.

A row k holds the IMU sample stamped t_k (interpolated linearly to t_{k+1}) and the filter's nominal state and
covariance at t_k *after* every measurement stamped <= t_k. The event log holds every measurement
fused inside the window, sorted by (stamp, arrival order), so that a late fix can roll back to the
last row at or before its stamp and replay the later events in the order an on-time filter would
have seen them. Measurements stamped after the newest IMU sample wait in a pending list. Rows live
in preallocated arrays (one contiguous slice, compacted when the end is reached) so that rollback and
re-propagation work on array views without copying the window.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable

import numpy as np

from gps_denied_nav.core.eskf_diagnostics import MeasurementKind
from gps_denied_nav.core.eskf_measurements import Measurement
from gps_denied_nav.core.eskf_state import ERROR_DIM, NOMINAL_DIM, NominalState


@dataclass(frozen=True)
class PositionReset:
    """Replace the position and its covariance block, dropping its correlations (no gating); optionally
    also the heading (turning the velocity with it) and loosen the velocity and tilt (see eskf_reset)."""

    pos_enu_m: np.ndarray | None        # None: keep the position (a heading reset)
    cov_enu_m2: np.ndarray | None
    yaw_rad: float | None = None        # None: keep the attitude
    yaw_var_rad2: float = 0.0
    vel_sigma_mps: float | None = None  # None: keep the velocity covariance
    tilt_sigma_rad: float | None = 0.05  # roll/pitch 1σ when the heading is replaced; None: keep the tilt's
    rotate_velocity: bool = True        # turn the velocity with the heading (it was integrated with it)
    vel_enu_mps: np.ndarray | None = None  # replaces the velocity (after any turn); None: keep it


@dataclass(frozen=True)
class TimedEvent:
    """One measurement (``model`` bound to its values) or a position reset, stamped at its validity time."""

    stamp_s: float
    seq: int
    kind: MeasurementKind
    model: Callable[[NominalState], Measurement] | None = None
    reset: PositionReset | None = None
    gated: bool = True

    @property
    def order(self) -> tuple[float, int]:
        return (self.stamp_s, self.seq)


class FilterHistory:
    """Rows [t_s, imu(6), x(17), P(16x16)] plus the event log and the pending list."""

    def __init__(self, initial_capacity: int = 1024):
        self._alloc(initial_capacity)
        self._head = self._tail = 0
        self.log: list[TimedEvent] = []
        self.pending: list[TimedEvent] = []

    def _alloc(self, capacity: int) -> None:
        self._t = np.empty(capacity)
        self._imu = np.empty((capacity, 6))
        self._x = np.empty((capacity, NOMINAL_DIM))
        self._P = np.empty((capacity, ERROR_DIM, ERROR_DIM))

    def reset(self, t_s: float, x: np.ndarray, P: np.ndarray) -> None:
        """Start over with a single row whose IMU input is not yet known (NaN)."""
        self._head, self._tail = 0, 1
        self._t[0], self._imu[0], self._x[0], self._P[0] = t_s, np.nan, x, P
        self.log.clear()
        self.pending.clear()

    def __len__(self) -> int:
        return self._tail - self._head

    # Views over the live rows (invalidated by `append`, which may move the buffer).
    @property
    def t_s(self) -> np.ndarray:
        return self._t[self._head:self._tail]

    @property
    def imu(self) -> np.ndarray:
        return self._imu[self._head:self._tail]

    @property
    def x(self) -> np.ndarray:
        return self._x[self._head:self._tail]

    @property
    def P(self) -> np.ndarray:
        return self._P[self._head:self._tail]

    def append(self, t_s: np.ndarray, imu: np.ndarray) -> int:
        """Add rows [k] with IMU inputs [k, 6]; returns the index of the first new row (x, P unset)."""
        k = len(t_s)
        if self._tail + k > len(self._t):
            n = len(self)
            old = (self._t, self._imu, self._x, self._P)
            if n + k > len(self._t) // 2:
                self._alloc(max(2 * len(self._t), 2 * (n + k)))
            for new, src in zip((self._t, self._imu, self._x, self._P), old):
                new[:n] = src[self._head:self._tail]
            self._head, self._tail = 0, n
        first = len(self)
        self._t[self._tail:self._tail + k] = t_s
        self._imu[self._tail:self._tail + k] = imu
        self._tail += k
        return first

    def index_at_or_before(self, stamp_s: float) -> int:
        """Index of the last row with t <= stamp_s, or -1 when the stamp precedes the history."""
        return int(np.searchsorted(self.t_s, stamp_s, side="right")) - 1

    def drop_before(self, index: int) -> None:
        """Forget rows before ``index`` and the events already contained in the new first row."""
        self._head += max(index, 0)
        t_first = self._t[self._head]
        cut = bisect.bisect_right(self.log, t_first, key=lambda e: e.stamp_s)
        del self.log[:cut]

    def log_after(self, stamp_s: float) -> list[TimedEvent]:
        """Logged events stamped strictly after ``stamp_s``, in replay order."""
        return self.log[bisect.bisect_right(self.log, stamp_s, key=lambda e: e.stamp_s):]

    def log_insert(self, event: TimedEvent) -> None:
        bisect.insort(self.log, event, key=lambda e: e.order)

    def defer(self, event: TimedEvent) -> None:
        bisect.insort(self.pending, event, key=lambda e: e.order)

    def pop_due(self, t_s: float) -> list[TimedEvent]:
        """Remove and return the pending events stamped at or before ``t_s``."""
        cut = bisect.bisect_right(self.pending, t_s, key=lambda e: e.stamp_s)
        due, self.pending = self.pending[:cut], self.pending[cut:]
        return due
