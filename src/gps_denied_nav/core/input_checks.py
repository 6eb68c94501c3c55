"""Plausibility of the filter's inputs: finite is not enough.

Each check returns why a value is refused (a short reason the node counts under its own key on
/diagnostics), or None. Finite but absurd values are what used to get through: an IMU sample of
1e12 m/s², a stamp two hours ahead that every later sample then looked "backwards" against, a first
GNSS fix at latitude 200 that became the map origin for good.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gps_denied_nav.core.eskf_guard import positive_definite
from gps_denied_nav.core.geodesy import LocalTangentPlane

MIN_ALTITUDE_M, MAX_ALTITUDE_M = -1000.0, 20000.0  # WGS84 heights a UAV and its map can have


def imu_problem(accel_mps2, gyro_radps, max_accel_mps2: float, max_gyro_radps: float) -> str | None:
    values = np.concatenate([np.asarray(accel_mps2, float), np.asarray(gyro_radps, float)])
    if not np.all(np.isfinite(values)):
        return "imu_not_finite"
    if np.max(np.abs(values[:3])) > max_accel_mps2:
        return "imu_accel_out_of_range"
    if np.max(np.abs(values[3:])) > max_gyro_radps:
        return "imu_gyro_out_of_range"
    return None


def geodetic_problem(lat_deg: float, lon_deg: float, alt_m: float) -> str | None:
    if not all(math.isfinite(v) for v in (lat_deg, lon_deg, alt_m)):
        return "position_not_finite"
    if not (-90.0 <= lat_deg <= 90.0 and -180.0 <= lon_deg <= 180.0):
        return "latlon_out_of_range"
    if not MIN_ALTITUDE_M <= alt_m <= MAX_ALTITUDE_M:
        return "altitude_out_of_range"
    return None


def covariance_problem(cov: np.ndarray, max_sigma_m: float) -> str | None:
    """A position covariance must be finite, positive definite, and not claim less than 1 mm or more
    than ``max_sigma_m`` on any axis."""
    cov = np.asarray(cov, dtype=float)
    if not positive_definite(cov):
        return "covariance_not_positive_definite"
    eig = np.linalg.eigvalsh(cov)
    if eig[0] < 1e-6 or eig[-1] > max_sigma_m**2:
        return "covariance_implausible"
    return None


def variance_problem(var: float, max_var: float) -> str | None:
    return None if math.isfinite(var) and 0.0 < var <= max_var else "variance_not_positive"


class StampGuard:
    """Accepts a stream's stamps while they move forward in ordinary steps; decides what a jump means.

    A step of at most ``hold_step_s`` is accepted. A longer step forward could be a real gap (samples lost
    upstream) or one wild stamp, and the two look the same when the sample arrives; so it is refused and
    kept as a candidate, and accepted only when ``confirm_samples`` more stamps continue from it (each at
    most ``hold_step_s`` after the one before). A wild stamp is then one refused sample, while the stream
    keeps going; a real gap costs the samples that confirm it. Beyond ``max_step_s`` (or backwards) a
    continuing candidate needs ``reanchor_samples`` stamps: then the source's clock really jumped and
    ``check`` returns "reanchored" (the caller restarts whatever depends on the old time base). A stamp
    that continues the accepted stream drops any candidate.
    """

    def __init__(self, max_step_s: float, reanchor_samples: int = 20, hold_step_s: float = 0.1,
                 confirm_samples: int = 2):
        self.max_step_s, self.hold_step_s = max_step_s, min(hold_step_s, max_step_s)
        self.reanchor_samples, self.confirm_samples = reanchor_samples, confirm_samples
        self.last_s: float | None = None
        self._candidate: list[float] = []  # stamps continuing a jump, oldest first

    def check(self, stamp_s: float) -> str:
        """-> "ok", "reanchored", "stamp_backwards" or "stamp_jump" (the last two: refuse the sample)."""
        if not math.isfinite(stamp_s):
            return "stamp_jump"
        if self.last_s is None or self.last_s < stamp_s <= self.last_s + self.hold_step_s:
            self.last_s, self._candidate = stamp_s, []
            return "ok"
        verdict = "stamp_backwards" if stamp_s <= self.last_s else "stamp_jump"
        c = self._candidate
        self._candidate = c + [stamp_s] if c and c[-1] < stamp_s <= c[-1] + self.hold_step_s else [stamp_s]
        first = self._candidate[0]
        gap = self.last_s < first <= self.last_s + self.max_step_s
        if len(self._candidate) > (self.confirm_samples if gap else self.reanchor_samples - 1):
            self.last_s, self._candidate = stamp_s, []
            return "ok" if gap else "reanchored"
        return verdict


@dataclass
class _Fix:
    stamp_s: float
    geodetic: tuple[float, float, float]
    sigma_m: float


class ConsistentFixes:
    """A run of GNSS fixes that agree with each other: the map origin and the initial velocity come only
    from ``required`` consecutive fixes whose steps a vehicle slower than ``max_speed_mps`` could make
    (within 5σ of their noise). One wild fix, however plausible its numbers, resets the run instead of
    becoming the origin."""

    def __init__(self, required: int = 3, max_speed_mps: float = 100.0, maxlen: int = 50):
        self.required, self.max_speed_mps, self.maxlen = required, max_speed_mps, maxlen
        self.run: list[_Fix] = []

    def add(self, stamp_s: float, lat_deg: float, lon_deg: float, alt_m: float, sigma_m: float) -> bool:
        """Add a fix; returns whether it continued the run (False: the run restarts from it)."""
        fix = _Fix(stamp_s, (lat_deg, lon_deg, alt_m), sigma_m)
        consistent = bool(self.run) and self._agree(self.run[-1], fix)
        self.run = (self.run + [fix])[-self.maxlen:] if consistent else [fix]
        return consistent

    @property
    def trusted(self) -> bool:
        return len(self.run) >= self.required

    def _agree(self, a: _Fix, b: _Fix) -> bool:
        dt_s = b.stamp_s - a.stamp_s
        if not 0.0 < dt_s <= 10.0:
            return False
        step_m = float(np.linalg.norm(LocalTangentPlane(*a.geodetic).to_enu(*b.geodetic)))
        return step_m <= self.max_speed_mps * dt_s + 5.0 * math.hypot(a.sigma_m, b.sigma_m)
