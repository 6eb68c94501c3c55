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

from gps_denied_nav.core.eskf_config import EskfConfig
from gps_denied_nav.core.eskf_diagnostics import UpdateOutcome, UpdateStatus
from gps_denied_nav.core.eskf_history import FilterHistory, TimedEvent
from gps_denied_nav.core.eskf_propagation import (constant_velocity_transition, error_transition,
                                                   propagate_constant_velocity, propagate_covariance,
                                                   propagate_nominal)
from gps_denied_nav.core.eskf_state import E_ATT, E_POS, E_VEL, ERROR_DIM

# fuse(x [17], P [16x16], event, first_time) -> (x, P, outcome): the filter's correction step.
FuseFn = Callable[[np.ndarray, np.ndarray, TimedEvent, bool], tuple]


class Timeline:
    """Rows and events of the last ``history_s`` seconds and the propagation that links them."""

    def __init__(self, config: EskfConfig, fuse: FuseFn):
        self._config = config
        self._gravity = np.asarray(config.gravity_enu_mps2, dtype=float)
        self._constant_velocity = config.motion_model == "constant_velocity"
        self._q_rates = (config.constant_velocity if self._constant_velocity else config.process_noise).variance_rates()
        self._history_s = config.history_s
        self._limits = np.array([config.max_accel_mps2] * 3 + [config.max_gyro_radps] * 3)
        self._fuse = fuse
        self.history = FilterHistory()

    def reset(self, stamp_s: float, x: np.ndarray, P: np.ndarray) -> None:
        self.history.reset(stamp_s, x, P)

    def add_imu(self, t_s: np.ndarray, imu: np.ndarray) -> int:
        """Append samples [N] with inputs [N, 6]; fuse the pending events they pass. Returns how many
        samples were dropped: not finite, beyond the sensor's range, not newer than the last kept sample,
        or more than ``history_s`` after it (a stamp that jumped: integrating one sample over the jump
        would wreck the state, and the caller re-anchors a stream that really jumped)."""
        hist = self.history
        t_last = hist.t_s[-1]
        finite = np.isfinite(imu).all(axis=1) & np.isfinite(t_s) & (np.abs(imu) <= self._limits).all(axis=1)
        t_s, imu = t_s[finite], imu[finite]
        if len(t_s) == 0:
            return int(np.sum(~finite))
        keep = self._in_sequence(t_last, t_s)
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

    def _in_sequence(self, t_last: float, t_s: np.ndarray) -> np.ndarray:
        """Mask of the stamps that follow the last kept one, each within ``history_s`` of it."""
        steps = np.diff(np.concatenate([[t_last], t_s]))
        if np.all((steps > 0.0) & (steps <= self._history_s)):
            return np.ones(len(t_s), dtype=bool)   # the usual case, without the loop below
        keep = np.zeros(len(t_s), dtype=bool)
        for i, t in enumerate(t_s):
            if t_last < t <= t_last + self._history_s:
                keep[i], t_last = True, t
        return keep

    def add_event(self, event: TimedEvent) -> UpdateOutcome:
        """Fuse ``event`` at its stamp (rolling back if it is late), or defer or refuse it. Events stamped
        more than ``max_future_s`` ahead of the IMU, or arriving while ``max_pending_events`` wait, are
        refused (TOO_NEW): an unbounded waiting list is memory a clock fault can fill."""
        hist = self.history
        t = hist.t_s
        if event.stamp_s > t[-1] + self._config.max_future_s or (
                event.stamp_s > t[-1] and len(hist.pending) >= self._config.max_pending_events):
            return UpdateOutcome(event.kind, event.stamp_s, UpdateStatus.TOO_NEW)
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
            ahead = j == len(hist) - 1  # beyond the newest sample: held, and the time ahead counts as a gap
            imu = hist.imu[j:j + 1] if ahead else self._interval_inputs(j, start, end)
            row_dt = dt if ahead else hist.t_s[j + 1] - hist.t_s[j]
            xs, Ps = self._propagate(x, P, imu, np.array([dt]), np.array([row_dt]))
            x, P = xs[0], Ps[0]
        return x, P

    def _propagate(self, x, P, imu: np.ndarray, dt_s: np.ndarray, sample_dt_s: np.ndarray):
        """(x [17], P [16x16]) through N constant inputs [N, 6] over intervals [N] -> [N, 17], [N, 16, 16];
        ``sample_dt_s`` [N]: the spacing of the IMU samples each interval lies between."""
        P_out = np.empty((len(dt_s), ERROR_DIM, ERROR_DIM))
        if self._constant_velocity:  # clock ticks: no IMU gaps, no specific force
            run = propagate_constant_velocity(x, dt_s)
            propagate_covariance(P, constant_velocity_transition(dt_s), dt_s[:, None] * self._q_rates, P_out)
            return run.x, P_out
        run = propagate_nominal(x, imu, dt_s, self._gravity)
        propagate_covariance(P, error_transition(run), self._process_noise(dt_s, sample_dt_s), P_out)
        return run.x, P_out

    def _process_noise(self, dt_s: np.ndarray, sample_dt_s: np.ndarray) -> np.ndarray:
        """[N, 16] diagonal process noise of each interval, with the unknown motion of IMU gaps added.

        Whether an interval is in a gap depends on the spacing of the IMU samples around it, not on its
        own length: measurements fused inside a gap (baro at 50 Hz, deferred until the IMU is back) cut
        it into pieces shorter than a nominal interval, and each piece gets its share of the gap."""
        Q = dt_s[:, None] * self._q_rates
        gap = self._config.imu_gap
        gap_s = dt_s * np.maximum(sample_dt_s - gap.nominal_max_s, 0.0) / np.maximum(sample_dt_s, 1e-12)
        if np.any(gap_s > 0.0):
            # White input noise over the missing time; position gets its integral's share (q·T³/3) here
            # because the transition's velocity coupling sees only the end-of-interval velocity noise.
            Q[:, E_POS] += (gap.accel_density_mps2_rthz**2 * gap_s**3 / 3.0)[:, None]
            Q[:, E_VEL] += (gap.accel_density_mps2_rthz**2 * gap_s)[:, None]
            Q[:, E_ATT] += (gap.gyro_density_radps_rthz**2 * gap_s)[:, None]
        return Q

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
        xs, Ps = self._propagate(x, P, self._interval_inputs(c, starts, ends), ends - starts,
                                 np.diff(hist.t_s[c:c + len(ends) + 1]))
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
