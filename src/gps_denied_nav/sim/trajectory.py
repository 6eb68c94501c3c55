"""Survey flight trajectory with exact kinematics: the simulator's ground truth.

The horizontal path is defined by its curvature as a function of arc length: straight legs joined by
180-degree turns whose curvature ramps in and out with a quintic smoothstep, so curvature (hence bank
angle) is C2 and roll rate is continuous, as a real autopilot flies it. Heading and its derivatives
are closed-form; position is the integral of the unit tangent, done with 16-node Gauss-Legendre per
query (exact to ~1e-10 m). Attitude is a coordinated turn (bank from lateral acceleration, heading
along the velocity, pitch from the climb angle plus a trim), and the body rate comes from the exact
Euler-angle rates, so accelerometer and gyro samples made from this truth integrate back to it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gps_denied_nav.core.eskf_propagation import GRAVITY_ENU_MPS2
from gps_denied_nav.core.rotations import quat_from_euler

_G_MPS2 = -GRAVITY_ENU_MPS2[2]
_GL_X, _GL_W = np.polynomial.legendre.leggauss(16)


@dataclass(frozen=True, eq=False)
class Kinematics:
    """Truth at times t_s [N]: ENU position/velocity/acceleration, attitude and body rate (FLU)."""

    t_s: np.ndarray  # [N]
    pos_enu_m: np.ndarray  # [N, 3]
    vel_enu_mps: np.ndarray  # [N, 3]
    accel_enu_mps2: np.ndarray  # [N, 3] kinematic (no gravity)
    q_world_body: np.ndarray  # [N, 4] Hamilton [w, x, y, z], continuous in time (no sign flips)
    omega_body_radps: np.ndarray  # [N, 3]
    euler_rad: np.ndarray  # [N, 3] roll, pitch, yaw (yaw unwrapped)


@dataclass(frozen=True)
class CurvatureSegment:
    """A stretch of path whose curvature (1/m, positive = left turn) goes from start to end value."""

    length_m: float
    kappa_start_1pm: float
    kappa_end_1pm: float


def _smoothstep(x):
    """Quintic S(x) with S, S', S'' = 0/1, 0, 0 at the ends; returns S, dS/dx, integral of S from 0."""
    return 10 * x**3 - 15 * x**4 + 6 * x**5, 30 * x**2 * (1 - x) ** 2, 2.5 * x**4 - 3 * x**5 + x**6


class SurveyTrajectory:
    """Constant ground speed along a curvature-defined path, at altitude with a gentle vertical wave."""

    def __init__(self, start_en_m, start_heading_rad: float, segments: list[CurvatureSegment],
                 speed_mps: float = 12.0, altitude_m: float = 120.0, altitude_wave_m: float = 2.0,
                 altitude_wave_period_s: float = 40.0, nose_up_trim_rad: float = 0.03):
        """start_en_m: (east, north) m at t = 0; start_heading_rad: ENU yaw (0 = east, counter-clockwise);
        segments: the path's curvature profile (flight goes on straight past its end); altitude_m: ENU up,
        with a sine of ``altitude_wave_m`` amplitude and ``altitude_wave_period_s`` period on top."""
        self.speed_mps, self.altitude_m = float(speed_mps), float(altitude_m)
        self.wave_m, self.wave_w = float(altitude_wave_m), 2 * np.pi / float(altitude_wave_period_s)
        self.trim_rad = float(nose_up_trim_rad)
        lengths = np.array([s.length_m for s in segments], float)
        self.k0 = np.array([s.kappa_start_1pm for s in segments], float)
        self.k1 = np.array([s.kappa_end_1pm for s in segments], float)
        self.length = lengths
        self.s0 = np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
        self.psi0 = np.zeros(len(segments))
        self.xy0 = np.zeros((len(segments), 2))
        self.psi0[0], self.xy0[0] = start_heading_rad, start_en_m
        for i in range(1, len(segments)):
            end = np.array([self.s0[i]])
            seg = np.array([i - 1])
            self.psi0[i] = self._heading(end, seg)[0]
            self.xy0[i] = self._position(end, seg)[0]
        self.path_length_m = float(lengths.sum())

    @property
    def duration_s(self) -> float:
        return self.path_length_m / self.speed_mps

    def _segment(self, s: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.s0, s, side="right") - 1, 0, len(self.s0) - 1)

    def _heading(self, s, seg, derivatives: bool = False):
        """Heading (rad) at arc length s on segment seg; with derivatives also kappa and dkappa/ds."""
        L = self.length[seg]
        x = np.clip((s - self.s0[seg]) / L, 0.0, None)
        inside = np.minimum(x, 1.0)
        S, dS, intS = _smoothstep(inside)
        dk = self.k1[seg] - self.k0[seg]
        # Past the last segment the path goes on with the final curvature.
        psi = self.psi0[seg] + self.k0[seg] * x * L + dk * L * intS + (x - inside) * L * self.k1[seg]
        if not derivatives:
            return psi
        return psi, self.k0[seg] + dk * S, np.where(x < 1.0, dk / L * dS, 0.0)

    def _position(self, s, seg):
        """[N, 2] east/north: segment start + Gauss-Legendre integral of the unit tangent."""
        a, half = self.s0[seg], 0.5 * (s - self.s0[seg])
        nodes = a[:, None] + half[:, None] * (_GL_X + 1.0)
        psi = self._heading(nodes, np.broadcast_to(seg[:, None], nodes.shape))
        return self.xy0[seg] + half[:, None] * np.stack([np.cos(psi) @ _GL_W, np.sin(psi) @ _GL_W], axis=1)

    def sample(self, t_s) -> Kinematics:
        """Truth at times ``t_s`` [N] (s from the start of the path)."""
        t = np.atleast_1d(np.asarray(t_s, float))
        v = self.speed_mps
        s = v * t
        seg = self._segment(s)
        psi, kappa, dkappa_ds = self._heading(s, seg, derivatives=True)
        xy = self._position(s, seg)
        wt = self.wave_w * t
        z = self.altitude_m + self.wave_m * np.sin(wt)
        vz = self.wave_m * self.wave_w * np.cos(wt)
        az = -self.wave_m * self.wave_w**2 * np.sin(wt)
        jz = -self.wave_m * self.wave_w**3 * np.cos(wt)
        tangent = np.stack([np.cos(psi), np.sin(psi)], axis=1)
        left = np.stack([-np.sin(psi), np.cos(psi)], axis=1)
        a_lat = v * v * kappa
        pos = np.column_stack([xy, z])
        vel = np.column_stack([v * tangent, vz])
        accel = np.column_stack([a_lat[:, None] * left, az])
        # Coordinated turn: lift tilts towards the turn centre; FLU roll is negative for a left bank.
        u = a_lat / (_G_MPS2 + az)
        du = (v**3 * dkappa_ds * (_G_MPS2 + az) - a_lat * jz) / (_G_MPS2 + az) ** 2
        roll, roll_rate = -np.arctan(u), -du / (1 + u * u)
        # FLU pitch is positive nose-down (REP-103), hence the minus for climb angle and trim.
        w = vz / v
        pitch, pitch_rate = -(self.trim_rad + np.arctan(w)), -(az / v) / (1 + w * w)
        yaw, yaw_rate = psi, v * kappa
        sr, cr, sp, cp = np.sin(roll), np.cos(roll), np.sin(pitch), np.cos(pitch)
        # Body rates from Z-Y-X Euler rates (R = Rz(yaw) Ry(pitch) Rx(roll)).
        omega = np.column_stack([roll_rate - yaw_rate * sp,
                                 pitch_rate * cr + yaw_rate * sr * cp,
                                 -pitch_rate * sr + yaw_rate * cr * cp])
        q = np.asarray(quat_from_euler(roll, pitch, yaw)).T.reshape(-1, 4)
        return Kinematics(t, pos, vel, accel, q, omega, np.column_stack([roll, pitch, yaw]))

    @classmethod
    def survey(cls, east_min_m: float, north_min_m: float, east_max_m: float, north_max_m: float,
               min_duration_s: float, speed_mps: float = 12.0, max_bank_rad: float = math.radians(15.0),
               roll_in_s: float = 3.0, max_leg_m: float = math.inf, place: tuple[float, float] = (0.5, 0.0),
               reverse_legs: bool = False, reverse_lanes: bool = False, **kwargs) -> SurveyTrajectory:
        """Lawnmower in the box (metres, ENU): legs along its long side (at most ``max_leg_m``), lanes one
        turn diameter apart, sweeping back and forth across the box until ``min_duration_s`` is flown.

        ``place`` (0..1, 0..1) puts the legs along the long side and picks the first lane across it. The
        whole path, turns included, stays inside the box. Extra keyword arguments go to __init__.
        """
        kappa = _G_MPS2 * math.tan(max_bank_rad) / speed_mps**2
        ramp_m = speed_mps * roll_in_s
        if math.pi / kappa < ramp_m:
            raise ValueError("roll_in_s too long for a 180-degree turn at this bank angle")
        turn = [CurvatureSegment(ramp_m, 0.0, kappa), CurvatureSegment(math.pi / kappa - ramp_m, kappa, kappa),
                CurvatureSegment(ramp_m, kappa, 0.0)]
        probe = cls((0.0, 0.0), 0.0, turn + [CurvatureSegment(1.0, 0.0, 0.0)], speed_mps, 0.0)
        s = np.linspace(0.0, sum(c.length_m for c in turn), 2001)
        xy = probe._position(s, probe._segment(s))
        overshoot_m, spacing_m = float(xy[:, 0].max()), float(xy[-1, 1])
        along_east = (east_max_m - east_min_m) >= (north_max_m - north_min_m)
        lo_long, hi_long = (east_min_m, east_max_m) if along_east else (north_min_m, north_max_m)
        lo_short, hi_short = (north_min_m, north_max_m) if along_east else (east_min_m, east_max_m)
        room_m = hi_long - lo_long - 2 * overshoot_m
        leg_m = min(room_m, max_leg_m)
        lanes = int((hi_short - lo_short - 1e-6) // spacing_m) + 1
        if leg_m < 2 * ramp_m or lanes < 2:
            raise ValueError(f"box {hi_long - lo_long:.0f} x {hi_short - lo_short:.0f} m too small for a survey "
                             f"with {spacing_m:.0f} m turns")
        legs = int(math.ceil(min_duration_s * speed_mps / (leg_m + math.pi / kappa))) + 1
        lane_seq, step = [int(round(place[1] * (lanes - 1)))], -1 if reverse_lanes else 1
        while len(lane_seq) < legs:  # bounce between the outermost lanes
            step = step if 0 <= lane_seq[-1] + step < lanes else -step
            lane_seq.append(lane_seq[-1] + step)
        axis = np.array([1.0, 0.0]) if along_east else np.array([0.0, 1.0])
        heading = math.atan2(axis[1], axis[0]) + (math.pi if reverse_legs else 0.0)
        segments = []
        for k in range(legs):
            segments.append(CurvatureSegment(leg_m, 0.0, 0.0))
            if k + 1 < legs:
                psi = heading + k * math.pi  # legs alternate direction
                shift = np.sign(lane_seq[k + 1] - lane_seq[k]) * (axis[::-1])
                sign = 1.0 if np.dot([-math.sin(psi), math.cos(psi)], shift) > 0 else -1.0
                segments += [CurvatureSegment(c.length_m, sign * c.kappa_start_1pm, sign * c.kappa_end_1pm)
                             for c in turn]
        leg_start = lo_long + overshoot_m + place[0] * (room_m - leg_m)
        start_long = leg_start + (leg_m if reverse_legs else 0.0)
        start_short = lo_short + 0.5 * (hi_short - lo_short - (lanes - 1) * spacing_m) + lane_seq[0] * spacing_m
        start = (start_long, start_short) if along_east else (start_short, start_long)
        return cls(start, heading, segments, speed_mps, **kwargs)
