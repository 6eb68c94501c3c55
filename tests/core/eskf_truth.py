"""Analytic truth trajectories for the ESKF tests and its Monte Carlo evaluation.

Each generator returns position, velocity, kinematic acceleration, attitude and body rate that are
exact derivatives of one another (closed forms, no numerical differentiation), so that any error the
filter shows is the filter's. Attitude follows the path: yaw along the course, pitch along the flight
path angle, roll banked so the specific force has no lateral component (a coordinated turn).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gps_denied_nav.core.rotations import quat_from_euler

G_MPS2 = 9.80665


@dataclass(frozen=True)
class TruthTrajectory:
    """Samples [N] of the true motion: ENU m, m/s, m/s² (no gravity), q_world_body [N,4], FLU rad/s."""

    t_s: np.ndarray
    pos_enu_m: np.ndarray
    vel_enu_mps: np.ndarray
    accel_enu_mps2: np.ndarray
    q_world_body: np.ndarray
    omega_body_radps: np.ndarray

    @property
    def yaw_rad(self) -> np.ndarray:
        q = self.q_world_body
        return np.arctan2(2 * (q[:, 0] * q[:, 3] + q[:, 1] * q[:, 2]), 1 - 2 * (q[:, 2] ** 2 + q[:, 3] ** 2))


def _from_euler(t, pos, vel, acc, roll, pitch, yaw, droll, dpitch, dyaw) -> TruthTrajectory:
    """Assemble a trajectory from Z-Y'-X'' Euler angles and their rates (body rate by the Euler-rate map)."""
    q = np.array([quat_from_euler(r, p, y) for r, p, y in zip(roll, pitch, yaw)])
    sr, cr, sp, cp = np.sin(roll), np.cos(roll), np.sin(pitch), np.cos(pitch)
    omega = np.column_stack([droll - dyaw * sp, dpitch * cr + dyaw * sr * cp, -dpitch * sr + dyaw * cr * cp])
    return TruthTrajectory(np.asarray(t, float), pos, vel, acc, q, omega)


def static(t_s, pos_enu_m, roll_rad=0.0, pitch_rad=0.0, yaw_rad=0.0) -> TruthTrajectory:
    n = len(t_s)
    z = np.zeros(n)
    return _from_euler(t_s, np.tile(pos_enu_m, (n, 1)).astype(float), np.zeros((n, 3)), np.zeros((n, 3)),
                       z + roll_rad, z + pitch_rad, z + yaw_rad, z, z, z)


def constant_velocity(t_s, pos0_enu_m, vel_enu_mps) -> TruthTrajectory:
    """Straight, unaccelerated flight; yaw along the horizontal velocity, pitch along the climb."""
    t = np.asarray(t_s, float)
    v = np.asarray(vel_enu_mps, float)
    n, z = len(t), np.zeros(len(t))
    pitch = -np.arctan2(v[2], np.hypot(v[0], v[1]))  # FLU: positive pitch is nose down
    return _from_euler(t, pos0_enu_m + t[:, None] * v, np.tile(v, (n, 1)), np.zeros((n, 3)),
                       z, z + pitch, z + np.arctan2(v[1], v[0]), z, z, z)


def banked_circle(t_s, center_enu_m, radius_m: float, speed_mps: float) -> TruthTrajectory:
    """Level counter-clockwise circle at constant speed and bank (roll = -atan(v²/(r g)))."""
    t = np.asarray(t_s, float)
    rate = speed_mps / radius_m
    ang = rate * t
    c, s = np.cos(ang), np.sin(ang)
    z = np.zeros(len(t))
    pos = np.column_stack([radius_m * c, radius_m * s, z]) + center_enu_m
    vel = speed_mps * np.column_stack([-s, c, z])
    acc = -speed_mps * rate * np.column_stack([c, s, z])
    roll = -np.arctan(speed_mps * rate / G_MPS2)
    return _from_euler(t, pos, vel, acc, z + roll, z, ang + np.pi / 2, z, z, z + rate)


def figure_eight(t_s, half_length_m=300.0, half_width_m=150.0, period_s=60.0, alt_m=120.0,
                 climb_amplitude_m=15.0, climb_period_s=45.0) -> TruthTrajectory:
    """Lissajous figure eight x = a sin(wt), y = b sin(2wt) with altitude waves: ~22-44 m/s, bank up to ~35°."""
    t = np.asarray(t_s, float)
    w, wz = 2 * np.pi / period_s, 2 * np.pi / climb_period_s
    a, b, h = half_length_m, half_width_m, climb_amplitude_m
    sx, cx, sy, cy = np.sin(w * t), np.cos(w * t), np.sin(2 * w * t), np.cos(2 * w * t)
    sz, cz = np.sin(wz * t), np.cos(wz * t)
    pos = np.column_stack([a * sx, b * sy, alt_m + h * sz])
    vel = np.column_stack([a * w * cx, 2 * b * w * cy, h * wz * cz])
    acc = np.column_stack([-a * w**2 * sx, -4 * b * w**2 * sy, -h * wz**2 * sz])
    jerk = np.column_stack([-a * w**3 * cx, -8 * b * w**3 * cy, -h * wz**3 * cz])
    (vx, vy, vz), (ax, ay, az), (jx, jy, jz) = vel.T, acc.T, jerk.T
    speed = np.hypot(vx, vy)
    dspeed = (vx * ax + vy * ay) / speed
    lateral = (vx * ay - vy * ax) / speed                  # horizontal acceleration to the left
    dlateral = (vx * jy - vy * jx) / speed - lateral * dspeed / speed
    vertical = G_MPS2 + az                                  # up component of the specific force
    roll = -np.arctan2(lateral, vertical)
    droll = -(dlateral * vertical - lateral * jz) / (lateral**2 + vertical**2)
    pitch = -np.arctan2(vz, speed)
    dpitch = -(az * speed - vz * dspeed) / (speed**2 + vz**2)
    yaw = np.arctan2(vy, vx)
    dyaw = lateral / speed
    return _from_euler(t, pos, vel, acc, roll, pitch, yaw, droll, dpitch, dyaw)


def fly(filt, imu, arrivals, t_end_s: float | None = None) -> list:
    """Feed ``imu`` (sim ImuSamples) to ``filt`` in batches and call each ``(arrival_s, call)`` on time.

    ``arrivals`` is a list of (arrival time, zero-argument callable) — e.g. a fix stamped at exposure
    that arrives later; IMU samples stamped <= the arrival time are fed first. Returns the calls' results.
    """
    t = imu.t_s
    fed = int(np.searchsorted(t, filt.stamp_s, side="right"))
    results = []
    for arrival_s, call in sorted(arrivals, key=lambda a: a[0]):
        upto = int(np.searchsorted(t, arrival_s, side="right"))
        if upto > fed:
            filt.propagate_batch(t[fed:upto], imu.accel_body_mps2[fed:upto], imu.gyro_body_radps[fed:upto])
            fed = upto
        results.append(call())
    upto = len(t) if t_end_s is None else int(np.searchsorted(t, t_end_s, side="right"))
    if upto > fed:
        filt.propagate_batch(t[fed:upto], imu.accel_body_mps2[fed:upto], imu.gyro_body_radps[fed:upto])
    return results
