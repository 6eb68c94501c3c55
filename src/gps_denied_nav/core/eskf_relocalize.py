"""Re-localisation of a lost filter from two consecutive strong visual fixes.

A filter that diverged has a wrong velocity too: that is what carried the position away. Resetting the
position and heading but keeping that velocity (only loosened) made the error regrow after every
re-initialisation (a held-out flight: ~100 m/s wrong). Two strong fixes a short time apart measure the
velocity directly: their chord is the mean velocity at mid-chord, turned forward by half the heading
change between them to the newer one (the same correction the GNSS start-up applies,
core.eskf_alignment), with an uncertainty from the fixes' noise and the unknown acceleration over the
chord. Fixes that do not agree (faster than any UAV, or turning too much) restart the pair.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gps_denied_nav.core.rotations import wrap_angle


@dataclass(frozen=True)
class StrongFix:
    stamp_s: float
    pos_enu_m: np.ndarray   # [3]
    cov_enu_m2: np.ndarray  # [3x3]
    yaw_rad: float
    yaw_var_rad2: float


@dataclass(frozen=True)
class Relocalization:
    fix: StrongFix          # the newer fix: position and heading
    vel_enu_mps: np.ndarray  # [3] at the newer fix
    vel_sigma_mps: float


class Relocalizer:
    """Pairs strong fixes while the filter is lost; `offer` returns a re-localisation once two agree."""

    def __init__(self, min_chord_s: float = 0.2, max_chord_s: float = 3.0, max_speed_mps: float = 100.0,
                 max_turn_rad: float = 0.6, accel_sigma_mps2: float = 2.0):
        self.min_chord_s, self.max_chord_s = min_chord_s, max_chord_s
        self.max_speed_mps, self.max_turn_rad = max_speed_mps, max_turn_rad
        self.accel_sigma_mps2 = accel_sigma_mps2  # manoeuvre acceleration the chord cannot see
        self._last: StrongFix | None = None

    def clear(self) -> None:
        self._last = None

    def offer(self, fix: StrongFix) -> Relocalization | None:
        prev, self._last = self._last, fix
        if prev is None:
            return None
        dt_s = fix.stamp_s - prev.stamp_s
        turn_rad = wrap_angle(fix.yaw_rad - prev.yaw_rad)
        if not self.min_chord_s <= dt_s <= self.max_chord_s or abs(turn_rad) > self.max_turn_rad:
            return None
        chord = (fix.pos_enu_m - prev.pos_enu_m) / dt_s
        if float(np.linalg.norm(chord)) > self.max_speed_mps:
            return None
        c, s = math.cos(0.5 * turn_rad), math.sin(0.5 * turn_rad)
        vel = np.array([c * chord[0] - s * chord[1], s * chord[0] + c * chord[1], chord[2]])
        noise_mps = math.sqrt(np.max(np.linalg.eigvalsh(fix.cov_enu_m2 + prev.cov_enu_m2))) / dt_s
        sigma = math.hypot(noise_mps, 0.5 * self.accel_sigma_mps2 * dt_s)
        self._last = None  # used: the next loss starts a new pair
        return Relocalization(fix, vel, max(sigma, 0.3))
