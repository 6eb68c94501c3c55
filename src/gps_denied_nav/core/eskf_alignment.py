"""Initial alignment in flight: roll, pitch, yaw and velocity while the vehicle is turning.

A clip (or a restart) can begin in the air. The accelerometer then measures gravity's reaction plus
the manoeuvre's acceleration, so levelling on it alone (``eskf_state.align_roll_pitch``) reads a
coordinated turn's bank as level flight: 15° at 12 m/s and 12.5°/s, five times the 3° the filter is
told. Here the manoeuvre is modelled instead: the velocity turns with the body's rate about the
vertical (coordinated flight; a multirotor yawing fast while cruising breaks this), so the world
specific force is ``f = ψ̇ ẑ × v - g``; roll and pitch are the tilt that maps the measured body specific
force onto it at the known yaw. The GNSS chord over a baseline ``Δt`` also lags the turn: its course
and the mean velocity point ``ψ̇ Δt / 2`` behind the vehicle at the newer fix.
"""
from __future__ import annotations

import math

import numpy as np

from gps_denied_nav.core.eskf_propagation import GRAVITY_ENU_MPS2
from gps_denied_nav.core.eskf_state import align_roll_pitch
from gps_denied_nav.core.rotations import quat_from_euler, quat_to_rotmat

G_MPS2 = -GRAVITY_ENU_MPS2[2]


def tilt_from_specific_force(f_body_mps2: np.ndarray, f_heading_mps2: np.ndarray) -> tuple[float, float]:
    """Roll, pitch (rad) with Ry(pitch) Rx(roll) f_body ∥ f_heading (the world specific force rotated by
    -yaw). Closed form: roll brings the body y component to the target's, pitch the x-z direction."""
    f_b = np.asarray(f_body_mps2, dtype=float)
    f_h = np.asarray(f_heading_mps2, dtype=float) * (np.linalg.norm(f_b) / np.linalg.norm(f_heading_mps2))
    r = math.hypot(f_b[1], f_b[2])
    roll = math.atan2(f_b[1], f_b[2]) - math.asin(float(np.clip(f_h[1] / r, -1.0, 1.0)))
    u_x = f_b[0]
    u_z = f_b[1] * math.sin(roll) + f_b[2] * math.cos(roll)
    pitch = math.atan2(u_z, u_x) - math.atan2(f_h[2], f_h[0])
    return math.remainder(roll, math.tau), math.remainder(pitch, math.tau)


def turn_rate_radps(omega_body_radps, roll_rad: float, pitch_rad: float) -> float:
    """Rate of turn about the world vertical (rad/s) from the body rate at the given tilt (yaw does not
    change it)."""
    return float((quat_to_rotmat(quat_from_euler(roll_rad, pitch_rad, 0.0)) @ np.asarray(omega_body_radps))[2])


def align_in_flight(f_body_mps2, omega_body_radps, vel_enu_mps, yaw_rad: float,
                    iterations: int = 3) -> tuple[float, float]:
    """Roll and pitch (rad) from mean specific force [3] and body rate [3] (body FLU) over a short window
    of steady flight, the ENU velocity [3] and the yaw. With no rotation it is plain levelling."""
    f_b = np.asarray(f_body_mps2, dtype=float)
    v = np.asarray(vel_enu_mps, dtype=float)
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    roll, pitch = 0.0, 0.0
    for _ in range(iterations):   # the vertical turn rate needs the tilt: two or three rounds settle it
        turn_rate = turn_rate_radps(omega_body_radps, roll, pitch)
        f_world = np.array([-turn_rate * v[1], turn_rate * v[0], G_MPS2])   # ψ̇ ẑ × v - g, g = -G ẑ
        f_heading = np.array([c * f_world[0] + s * f_world[1], -s * f_world[0] + c * f_world[1], f_world[2]])
        roll, pitch = tilt_from_specific_force(f_b, f_heading)
    return roll, pitch


def chord_to_current(vel_chord_enu_mps, turn_rate: float, baseline_s: float) -> tuple[np.ndarray, float]:
    """A mean velocity over ``baseline_s`` ending now (the chord of two fixes) -> the velocity [3] and
    course (rad) now: in a steady turn the chord points ``turn_rate * baseline_s / 2`` behind."""
    lag = 0.5 * turn_rate * baseline_s
    v = np.asarray(vel_chord_enu_mps, dtype=float)
    c, s = math.cos(lag), math.sin(lag)
    v_now = np.array([c * v[0] - s * v[1], s * v[0] + c * v[1], v[2]])
    return v_now, math.atan2(v_now[1], v_now[0])


def initial_attitude(f_body_mps2, omega_body_radps, vel_enu_mps, yaw_rad: float, chord_s: float,
                     vel_sigma_mps: float) -> tuple[float, float, float, np.ndarray | None, float]:
    """Roll, pitch, yaw (rad), velocity [3] (or None) and roll/pitch 1σ (rad) to start the filter with.

    Inputs are the mean specific force and body rate [3] over a short window (None: too few samples,
    level is assumed), and ``vel_enu_mps`` the GNSS chord over ``chord_s`` or None when the speed is
    unknown (a cold start on a visual fix): then a turn at the measured rate may be banked as steeply as
    any speed within ``vel_sigma_mps`` makes it, and the tilt 1σ says so.
    """
    tilt_sigma_rad = 0.05  # 3°: unmodelled along-track acceleration up to ~0.5 m/s², accel bias
    if f_body_mps2 is None:
        return 0.0, 0.0, yaw_rad, vel_enu_mps, tilt_sigma_rad
    if vel_enu_mps is None:
        roll, pitch = align_roll_pitch(np.asarray(f_body_mps2)[None])
        turn_bank = math.atan(vel_sigma_mps * float(np.linalg.norm(omega_body_radps)) / G_MPS2)
        return roll, pitch, yaw_rad, None, max(tilt_sigma_rad, turn_bank)
    roll, pitch = align_in_flight(f_body_mps2, omega_body_radps, vel_enu_mps, yaw_rad)
    vel, yaw_rad = chord_to_current(vel_enu_mps, turn_rate_radps(omega_body_radps, roll, pitch), chord_s)
    roll, pitch = align_in_flight(f_body_mps2, omega_body_radps, vel, yaw_rad)
    return roll, pitch, yaw_rad, vel, tilt_sigma_rad


def wants_heading_reset(yaw_sigma_rad: float, fix_heading_var_rad2: float, fix_inliers: int,
                        align_sigma_rad: float, min_inliers: int) -> bool:
    """Whether a visual fix should set the heading by a reset rather than a linear update: the filter's
    heading is coarse (1σ above ``align_sigma_rad``, e.g. a GNSS course), the fix's is at least ten times
    finer, and the fix is strong enough (``min_inliers``) to trust without gating its heading."""
    return (yaw_sigma_rad > align_sigma_rad and fix_inliers >= min_inliers
            and fix_heading_var_rad2 < (0.1 * yaw_sigma_rad) ** 2)


def gnss_chord(fixes, baseline_s: float):
    """(t0, t1, p1, chord velocity [3]) from the newest of ``fixes`` [(stamp_s, pos_enu_m, cov)] and the newest
    one ``baseline_s`` to twice that older, or None when there is no such pair yet."""
    t1, p1, _cov = fixes[-1]
    older = [(t, p) for t, p, _ in fixes if baseline_s <= t1 - t <= 2 * baseline_s]
    if not older:
        return None
    t0, p0 = older[-1]
    return t0, t1, p1, (p1 - p0) / (t1 - t0)
