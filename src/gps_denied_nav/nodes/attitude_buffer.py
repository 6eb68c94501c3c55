"""Recent filter outputs (attitude and altitude) looked up at a camera frame's exposure stamp."""
from __future__ import annotations

import bisect
import threading
from collections import deque

import numpy as np


class PoseBuffer:
    """Time-ordered (stamp_s, q_world_body [4], alt_m) samples; nearest lookup within a tolerance."""

    def __init__(self, maxlen: int = 2000):
        self._lock = threading.Condition()
        self._t: deque[float] = deque(maxlen=maxlen)
        self._q: deque[np.ndarray] = deque(maxlen=maxlen)
        self.altitude_m = float("nan")  # latest fused altitude (ellipsoidal), from NavSatFix

    def add(self, t_s: float, q_world_body: np.ndarray) -> None:
        with self._lock:
            if self._t and t_s < self._t[-1]:
                return  # out of order (e.g. a bag restarted): ignore rather than corrupt the order
            self._t.append(t_s)
            self._q.append(q_world_body)
            self._lock.notify_all()

    def clear(self) -> None:
        with self._lock:
            self._t.clear()
            self._q.clear()

    @property
    def empty(self) -> bool:
        with self._lock:
            return not self._t

    def lookup(self, t_s: float, tolerance_s: float, wait_s: float = 0.0, lag_s: float = 0.0) -> np.ndarray | None:
        """Nearest sample to t_s within tolerance_s; waits up to wait_s for the filter to reach t_s - lag_s
        (its output trails the camera by the IMU queue) before settling for an older sample."""
        with self._lock:
            self._lock.wait_for(lambda: bool(self._t) and self._t[-1] >= t_s - lag_s, timeout=wait_s)
            if not self._t:
                return None
            times = list(self._t)
            i = bisect.bisect_left(times, t_s)
            best = min((j for j in (i - 1, i) if 0 <= j < len(times)), key=lambda j: abs(times[j] - t_s))
            return self._q[best] if abs(times[best] - t_s) <= tolerance_s else None
