"""Start-up and re-initialisation of the filter node's ESKF (a mixin of EskfNode, which owns the state).

The filter starts from two GNSS fixes INIT_BASELINE_S apart (position, velocity and course) or, with no
GNSS ever, from a visual fix (position and heading, velocity unknown); roll and pitch come from the
accelerometer with the manoeuvre modelled (core.eskf_alignment). A lost filter re-initialises from two
consecutive strong visual fixes (core.eskf_relocalize). Nothing before initialisation checks a fix's stamp
against the IMU clock, so `_refused_clock` does: a fix an hour ahead would start the filter there, and
every IMU sample after it would lie before the start.
"""
from __future__ import annotations

import math

import numpy as np

from gps_denied_nav.core.eskf_alignment import gnss_chord, initial_attitude
from gps_denied_nav.core.eskf_diagnostics import ReinitReason
from gps_denied_nav.core.eskf_relocalize import StrongFix
from gps_denied_nav.core.rotations import quat_from_euler
from gps_denied_nav.nodes.eskf_inputs import Refused, check_clock
from gps_denied_nav.nodes.eskf_params import INIT_BASELINE_S


class FilterStart:
    def _refused_clock(self, kind: str, stamp_s: float) -> bool:
        """Drop (and count) a fix before initialisation whose stamp is not near the IMU's."""
        try:
            check_clock(kind, stamp_s, self.imu_stamps.last_s, self.params.history_s, self.params.max_future_s)
        except Refused as exc:
            self.status.drop(exc.reason, exc)
            return True
        return False

    def _try_initialize_from_gnss(self) -> None:
        """Position from the newest fix; velocity and course from it and a fix INIT_BASELINE_S older."""
        chord = gnss_chord(self.gnss_fixes, INIT_BASELINE_S)
        if chord is None:
            return
        t0, t1, p1, vel = chord
        if np.hypot(vel[0], vel[1]) < self.params.init_min_speed_mps:
            self.status.count("waiting_for_motion")
            return
        sigma_m = math.sqrt(max(np.trace(self.gnss_fixes[-1][2][:2, :2]) / 2.0, 0.25))
        self._initialize(t1, p1, vel, math.atan2(vel[1], vel[0]), pos_sigma_m=sigma_m,
                         vel_sigma_mps=max(2.0 * sigma_m / INIT_BASELINE_S, 0.5), chord_s=t1 - t0)

    def _initialize(self, stamp_s: float, pos, vel, yaw_rad: float, pos_sigma_m: float = 5.0,
                    vel_sigma_mps: float = 1.5, chord_s: float = 0.0, yaw_sigma_rad: float = 0.2) -> None:
        """Start the filter; ``vel`` is the GNSS chord over the last ``chord_s`` seconds, or None (unknown)."""
        # In flight the manoeuvre's acceleration is modelled and the chord turned forward (core.eskf_alignment).
        window = len(self.accel_window) >= 20
        roll, pitch, yaw_rad, vel, tilt_sigma_rad = initial_attitude(
            np.mean(self.accel_window, axis=0) if window else None,
            np.mean(self.gyro_window, axis=0) if window else None, vel, yaw_rad, chord_s, vel_sigma_mps)
        self.filter.initialize(stamp_s, pos, np.zeros(3) if vel is None else vel,
                               quat_from_euler(roll, pitch, yaw_rad), pos_sigma_m=pos_sigma_m,
                               vel_sigma_mps=vel_sigma_mps,
                               att_sigma_rad=(tilt_sigma_rad, tilt_sigma_rad, yaw_sigma_rad),
                               accel_bias_sigma_mps2=self.params.accel_bias_init_sigma_mps2,
                               gyro_bias_sigma_radps=self.params.gyro_bias_init_sigma_radps)
        self.get_logger().info(f"filter initialised at {stamp_s:.2f} s: roll {math.degrees(roll):.1f}, "
                               f"pitch {math.degrees(pitch):.1f}, yaw {math.degrees(yaw_rad):.1f} deg "
                               f"(tilt 1σ {math.degrees(tilt_sigma_rad):.1f} deg)")

    def _relocalize(self, fix: StrongFix, inliers: int) -> str:
        """Lost: the first strong fix waits for a second; together they give position, heading and velocity."""
        reloc = self.relocalizer.offer(fix)
        if reloc is None:
            return "reinit_waiting_for_a_second_fix"
        reason = self.filter.reinit_reason
        self.get_logger().warning(f"re-initialising on a {inliers}-inlier visual fix ({reason.value}): velocity "
                                  f"{np.round(reloc.vel_enu_mps, 1)} m/s ± {reloc.vel_sigma_mps:.1f} from two fixes")
        sigma_m = float(np.sqrt(np.max(np.linalg.eigvalsh(fix.cov_enu_m2))))
        if reason is ReinitReason.INVALID_STATE:
            # Nothing of the old state can be kept (biases included): start again from the fixes.
            self._initialize(fix.stamp_s, fix.pos_enu_m, reloc.vel_enu_mps, fix.yaw_rad, pos_sigma_m=sigma_m,
                             vel_sigma_mps=reloc.vel_sigma_mps)
            return "reinitialised_from_scratch"
        outcome = self.filter.reinitialize_position(
            fix.stamp_s, fix.pos_enu_m, fix.cov_enu_m2, yaw_rad=fix.yaw_rad, yaw_var_rad2=fix.yaw_var_rad2,
            vel_sigma_mps=reloc.vel_sigma_mps, tilt_sigma_rad=self.params.reinit_tilt_sigma_rad,
            vel_enu_mps=reloc.vel_enu_mps)
        self._log_outcome(outcome)
        return f"reinitialised_{outcome.status.value}"
