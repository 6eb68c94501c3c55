"""Spots IMU samples lost before they reached the filter.

A full DDS queue or a driver hiccup loses samples silently: the filter then integrates one sample
over the whole gap. The stamps show it: an interval of more than ``gap_factor`` nominal periods. The
nominal period is the median of recent normal intervals, so a change of IMU rate is followed.
"""
from __future__ import annotations

from collections import deque

import numpy as np


class ImuGapMonitor:
    """Feed every IMU stamp to ``add``; it counts gaps, the samples they lost and the longest one."""

    def __init__(self, gap_factor: float = 1.8, window: int = 64):
        self.gap_factor = gap_factor
        self._intervals_s: deque = deque(maxlen=window)
        self._last_s: float | None = None
        self._count = 0
        self.period_s: float | None = None  # nominal sample period, once 8 intervals were seen
        self.gaps = 0
        self.samples_missing = 0
        self.max_gap_s = 0.0

    def add(self, stamp_s: float) -> int:
        """Register a stamp (increasing); returns how many samples went missing just before it."""
        last, self._last_s = self._last_s, stamp_s
        if last is None:
            return 0
        dt_s = stamp_s - last
        missing = 0
        if self.period_s is not None and dt_s > self.gap_factor * self.period_s:
            missing = max(1, int(round(dt_s / self.period_s)) - 1)
            self.gaps += 1
            self.samples_missing += missing
            self.max_gap_s = max(self.max_gap_s, dt_s)
        # Gaps enter the window too: while they are rare the median ignores them, and a lasting drop of
        # the rate takes over the median after half a window instead of being counted as gaps forever.
        self._intervals_s.append(dt_s)
        self._count += 1
        if len(self._intervals_s) >= 8 and (self.period_s is None or self._count % 8 == 0):  # ~10 µs: not always
            self.period_s = float(np.median(self._intervals_s))
        return missing
