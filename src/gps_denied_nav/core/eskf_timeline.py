"""Time management of the ESKF: IMU rows and stamped events, propagation between them, rollback and replay.

The timeline owns the `FilterHistory` and is the only code that moves the filter through time. IMU
samples append rows; a measurement is an event fused at its own stamp by rolling back to the last
row at or before it and replaying the later rows and logged events (`_rerun`). Between rows, inputs
are the two samples interpolated linearly and taken at the sub-interval midpoint, which is why a
measurement stamped after the newest IMU sample waits (DEFERRED) instead of being extrapolated: with
that rule an on-time and a late fix give the same filter to rounding. Live propagation is the same
`_rerun` over one new interval, so there is one code path for both.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from gps_denied_nav.core.eskf_diagnostics import UpdateOutcome, UpdateStatus
from gps_denied_nav.core.eskf_history import FilterHistory, TimedEvent
from gps_denied_nav.core.eskf_propagation import error_transition, propagate_covariance, propagate_nominal
from gps_denied_nav.core.eskf_state import ERROR_DIM

# fuse(x [17], P [16x16], event, first_time) -> (x, P, outcome): the filter's correction step.
FuseFn = Callable[[np.ndarray, np.ndarray, TimedEvent, bool], tuple]


class Timeline:
    """Rows and events of the last ``history_s`` seconds and the propagation that links them."""

    def __init__(self, gravity_enu_mps2: np.ndarray, q_rates: np.ndarray, history_s: float, fuse: FuseFn):
        self._gravity = np.asarray(gravity_enu_mps2, dtype=float)
        self._q_rates = q_rates
        self._history_s = history_s
        self._fuse = fuse
        self.history = FilterHistory()

    def reset(self, stamp_s: float, x: np.ndarray, P: np.ndarray) -> None:
        self.history.reset(stamp_s, x, P)

    def add_imu(self, t_s: np.ndarray, imu: np.ndarray) -> int:
        """Append samples [N] with inputs [N, 6]; fuse the pending events they pass. Returns how many
        samples were dropped (not newer than their predecessor, or not finite)."""
        hist = self.history
        t_last = hist.t_s[-1]
        finite = np.isfinite(imu).all(axis=1) & np.isfinite(t_s)
        t_s, imu = t_s[finite], imu[finite]
        if len(t_s) == 0:
            return int(np.sum(~finite))
        keep = t_s > np.maximum.accumulate(np.concatenate([[t_last], t_s[:-1]]))
        consumed = False
        if np.isnan(hist.imu[-1, 0]):
            # The first sample after a reset also serves as the input from the reset stamp on.
            hist.imu[-1] = imu[0]
            consumed = t_s[0] == t_last
        dropped = int(np.sum(~keep)) - int(consumed) + int(np.sum(~finite))
        if np.any(keep):
            first = hist.append(t_s[keep], imu[keep])
            due = hist.pop_due(hist.t_s[-1]) if hist.pending else []
            for event in due:
                hist.log_insert(event)
            self._rerun(first - 1, due, fresh={e.seq for e in due})
            cut = hist.index_at_or_before(hist.t_s[-1] - self._history_s)
            if cut > 0:
                hist.drop_before(cut)
        return dropped

    def add_event(self, event: TimedEvent) -> UpdateOutcome:
        """Fuse ``event`` at its stamp (rolling back if it is late), or defer or refuse it."""
        hist = self.history
        t = hist.t_s
        if event.stamp_s > t[-1]:
            hist.defer(event)
            return UpdateOutcome(event.kind, event.stamp_s, UpdateStatus.DEFERRED)
        j = hist.index_at_or_before(event.stamp_s)
        if j < 0 or event.stamp_s < t[-1] - self._history_s:
            return UpdateOutcome(event.kind, event.stamp_s, UpdateStatus.TOO_OLD)
        replay = hist.log_after(t[j])
        hist.log_insert(event)
        return self._rerun(j, sorted(replay + [event], key=lambda e: e.order), fresh={event.seq})

    def estimate_at(self, stamp_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(x [17], P [16x16]) at ``stamp_s`` from the row before it; ahead of the newest row the last
        sample is held. Changes nothing."""
        hist = self.history
        j = hist.index_at_or_before(stamp_s)
        if j < 0:
            raise ValueError(f"stamp {stamp_s:.3f} s precedes the filter history")
        x, P = hist.x[j].copy(), hist.P[j].copy()
        dt = stamp_s - hist.t_s[j]
        if dt > 0.0 and not np.isnan(hist.imu[j, 0]):
            start, end = np.array([hist.t_s[j]]), np.array([stamp_s])
            imu = hist.imu[j:j + 1] if j == len(hist) - 1 else self._interval_inputs(j, start, end)
            xs, Ps = self._propagate(x, P, imu, np.array([dt]))
            x, P = xs[0], Ps[0]
        return x, P

    def _propagate(self, x, P, imu: np.ndarray, dt_s: np.ndarray):
        """(x [17], P [16x16]) through N constant inputs [N, 6] over intervals [N] -> [N, 17], [N, 16, 16]."""
        run = propagate_nominal(x, imu, dt_s, self._gravity)
        P_out = np.empty((len(dt_s), ERROR_DIM, ERROR_DIM))
        propagate_covariance(P, error_transition(run), dt_s[:, None] * self._q_rates, P_out)
        return run.x, P_out

    def _interval_inputs(self, c: int, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Input [N, 6] for sub-intervals [starts, ends] of rows c, c+1, ...: the samples interpolated
        linearly at each sub-interval's midpoint (midpoint rule on a linear input: no half-sample lag,
        unlike a zero-order hold). Needs the row after each interval, which a fused event always has."""
        hist = self.history
        n = len(ends)
        t0, t1 = hist.t_s[c:c + n], hist.t_s[c + 1:c + n + 1]
        u0, u1 = hist.imu[c:c + n], hist.imu[c + 1:c + n + 1]
        weight = (0.5 * (starts + ends) - t0) / (t1 - t0)
        return u0 + weight[:, None] * (u1 - u0)

    def _advance(self, x, P, t_cur: float, c: int, r: int, stamp_s: float):
        """From (x, P) at t_cur inside row c's interval, rewrite rows c+1..r, then go on to stamp_s >= t_r
        (stamp_s <= the newest row). One vectorised run per call: this is what replay costs."""
        hist = self.history
        ends = hist.t_s[c:r + 1].copy()
        if stamp_s > ends[-1] or r == c:
            ends = np.append(ends, stamp_s)
        starts = ends[:-1].copy()
        starts[0] = t_cur
        ends = ends[1:]
        xs, Ps = self._propagate(x, P, self._interval_inputs(c, starts, ends), ends - starts)
        hist.x[c + 1:r + 1], hist.P[c + 1:r + 1] = xs[:r - c], Ps[:r - c]
        return xs[-1].copy(), Ps[-1]

    def _rerun(self, j: int, events: list[TimedEvent], fresh: set[int]) -> UpdateOutcome | None:
        """Restart from row j, fuse ``events`` (sorted, stamps >= t_j) at their stamps, propagate to now.

        Returns the outcome of the last fresh event; replayed events are re-gated but not re-counted.
        """
        hist = self.history
        t = hist.t_s
        last = len(t) - 1
        x, P, t_cur, c = hist.x[j].copy(), hist.P[j].copy(), t[j], j
        outcome = None
        for event in events:
            if event.stamp_s > t_cur:
                r = c + int(np.searchsorted(t[c + 1:], event.stamp_s, side="right"))
                x, P = self._advance(x, P, t_cur, c, r, event.stamp_s)
                t_cur, c = event.stamp_s, r
            first_time = event.seq in fresh
            x, P, result = self._fuse(x, P, event, first_time)
            outcome = result if first_time else outcome
            if t_cur == t[c]:
                hist.x[c], hist.P[c] = x, P
        if c < last:
            self._advance(x, P, t_cur, c, last, t[last])
        return outcome
