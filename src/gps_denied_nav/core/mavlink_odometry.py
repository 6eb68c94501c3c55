"""The filter's pose as MAVLink external vision (ODOMETRY #331, VISION_POSITION_ESTIMATE #102): ROS-free
arithmetic, tested on its own; fc_bridge_node sends what it returns.

GPS_INPUT (core/gps_input.py) makes the autopilot treat us as a GPS; these messages make it treat us as
external navigation (ArduPilot VISO_TYPE=1 with EK3_SRCn_* = 6, PX4 EKF2_EV_CTRL), which also carries
attitude and a reset counter, so a re-localisation is a declared reset rather than a GPS glitch.

Frames. ROS gives ENU world / FLU body (REP-103), twist in the body frame (REP-105); MAVLink wants NED / FRD:
- ODOMETRY: frame_id MAV_FRAME_LOCAL_FRD, child_frame_id MAV_FRAME_BODY_FRD. ArduPilot's handle_odometry
  drops any other pair without a word; PX4 accepts LOCAL_FRD or LOCAL_NED. Our local frame is north-aligned
  (x north, y east, z down), i.e. also NED, so LOCAL_FRD loses nothing on PX4.
- Position x=N, y=E, z=-U; attitude q_ned_frd = q_ned_enu ⊗ q_enu_flu ⊗ q_flu_frd (Hamilton, [w, x, y, z],
  world <- body as in ATTITUDE_QUATERNION); velocity and body rates in FRD (y and z of FLU negated).
- Covariances as the 21-element row-major upper triangle of the 6x6 (a NaN first element: unknown), in the
  converted frames: position rotated ENU -> NED; the filter's world-frame rotation error mapped to the
  roll/pitch/yaw that MAVLink's states name (the Euler-rate Jacobian at the current attitude).

Origin. Positions are in our ``map`` frame, whose origin is not the autopilot's. Send the latched map origin
as the autopilot's EKF origin (SET_GPS_GLOBAL_ORIGIN, ``set_gps_global_origin_fields``) so that its local
frame is ours and its global position matches the fused fix. ArduPilot's EKF keeps the first origin it
accepts, so the node repeats it (an autopilot that rebooted) without harm.

Quality (ODOMETRY, int8 in the MAVLink 2.4.50 dialect): -1 (failed) while the filter is lost, because
ArduPilot's VISO_QUAL_MIN and PX4's EKF2_EV_QMIN (both default 0) reject only values below 0; while
tracking 100 up to a horizontal 1σ of ``reference_sigma_m``, 100·reference/σ beyond it (at least 1);
0 (unknown) when the covariance is unknown.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gps_denied_nav.core.rotations import euler_from_quat, quat_multiply, quat_normalize

MAV_FRAME_LOCAL_FRD = 20
MAV_FRAME_BODY_FRD = 12
MAV_ESTIMATOR_TYPE_VIO = 3
QUALITY_FAILED, QUALITY_UNKNOWN, QUALITY_BEST = -1, 0, 100
RESET_COUNTER_MODULO = 256  # uint8

R_NED_ENU = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])  # its own inverse
R_FLU_FRD = np.diag([1.0, -1.0, -1.0])  # its own inverse
_S = math.sqrt(0.5)
Q_NED_ENU = np.array([0.0, _S, _S, 0.0])  # 180° about (north + east) / √2: R(Q_NED_ENU) == R_NED_ENU
Q_FLU_FRD = np.array([0.0, 1.0, 0.0, 0.0])  # 180° about x (forward): R(Q_FLU_FRD) == R_FLU_FRD
_UPPER = np.triu_indices(6)  # row-major: row 0's six entries, then row 1's five, ...


@dataclass(frozen=True)
class FusedPose:
    """What the filter published on its odometry: stamp (s, the clock of the message), ``map`` position,
    attitude world <- body (ENU <- FLU, [w, x, y, z]), body-frame twist, ROS 6x6 covariances (pose: ENU
    position then world-frame rotation; twist: body FLU linear then angular), whether the filter tracks."""
    stamp_s: float
    pos_enu_m: np.ndarray  # 3
    q_enu_flu: np.ndarray  # 4, [w, x, y, z]
    vel_flu_mps: np.ndarray  # 3
    rate_flu_radps: np.ndarray  # 3
    pose_cov_enu: np.ndarray  # 6x6, m² and rad²
    twist_cov_flu: np.ndarray  # 6x6, m²/s² and rad²/s²
    tracking: bool


def enu_to_ned(v_enu: np.ndarray) -> np.ndarray:
    """A vector from ENU to NED axes: (e, n, u) -> (n, e, -u)."""
    return R_NED_ENU @ np.asarray(v_enu, dtype=float)


def flu_to_frd(v_flu: np.ndarray) -> np.ndarray:
    """A body vector from FLU to FRD axes: (f, l, u) -> (f, -l, -u)."""
    return R_FLU_FRD @ np.asarray(v_flu, dtype=float)


def quat_ned_frd(q_enu_flu: np.ndarray) -> np.ndarray:
    """Attitude NED <- FRD ([w, x, y, z], w >= 0) from ENU <- FLU: q_ned_enu ⊗ q_enu_flu ⊗ q_flu_frd."""
    return quat_normalize(quat_multiply(quat_multiply(Q_NED_ENU, np.asarray(q_enu_flu, dtype=float)), Q_FLU_FRD))


def euler_from_world_rotation(roll_rad: float, pitch_rad: float, yaw_rad: float, min_cos_pitch: float = 1e-3
                              ) -> np.ndarray:
    """[3x3] d(roll, pitch, yaw) / d(world-frame rotation) for R = Rz(yaw) Ry(pitch) Rx(roll): the inverse of
    E = [Rz Ry e_x, Rz e_y, e_z] (world angular velocity = E · Euler rates). Singular at pitch ±90°, where
    cos(pitch) is held at ``min_cos_pitch`` (the yaw and roll variances then grow large, as they should)."""
    cy, sy = math.cos(yaw_rad), math.sin(yaw_rad)
    cp, sp = math.cos(pitch_rad), math.sin(pitch_rad)
    if abs(cp) < min_cos_pitch:
        cp = math.copysign(min_cos_pitch, cp)
    E = np.array([[cy * cp, -sy, 0.0], [sy * cp, cy, 0.0], [-sp, 0.0, 1.0]])
    return np.linalg.inv(E)


def pose_covariance_ned(pose_cov_enu: np.ndarray, q_ned_frd: np.ndarray) -> np.ndarray:
    """ROS pose covariance (ENU position, world-frame rotation about E, N, U) -> MAVLink's states (NED
    position, roll, pitch, yaw of the NED/FRD attitude ``q_ned_frd``), cross terms included."""
    T = np.zeros((6, 6))
    T[:3, :3] = R_NED_ENU
    T[3:, 3:] = euler_from_world_rotation(*euler_from_quat(q_ned_frd)) @ R_NED_ENU
    return T @ np.asarray(pose_cov_enu, dtype=float) @ T.T


def twist_covariance_frd(twist_cov_flu: np.ndarray) -> np.ndarray:
    """Body twist covariance (linear, angular) from FLU to FRD axes."""
    T = np.kron(np.eye(2), R_FLU_FRD)
    return T @ np.asarray(twist_cov_flu, dtype=float) @ T.T


def upper_triangle(cov6: np.ndarray) -> list[float]:
    """The 21-element row-major upper triangle of a 6x6 covariance; [NaN, 0, ...] (MAVLink's "unknown")
    when it is not finite or a variance is negative (ROS marks an unknown covariance with -1)."""
    cov6 = np.asarray(cov6, dtype=float)
    if cov6.shape != (6, 6) or not np.all(np.isfinite(cov6)) or np.any(np.diag(cov6) < 0.0):
        return [math.nan] + [0.0] * 20
    return [float(v) for v in cov6[_UPPER]]


def quality_percent(tracking: bool, pose_cov_enu: np.ndarray, reference_sigma_m: float) -> int:
    """ODOMETRY quality: -1 lost; 0 covariance unknown; else 100 up to a horizontal 1σ (worst axis) of
    ``reference_sigma_m``, 100·reference/σ beyond it, at least 1."""
    if not tracking:
        return QUALITY_FAILED
    cov = np.asarray(pose_cov_enu, dtype=float)[:2, :2]
    if not np.all(np.isfinite(cov)) or np.any(np.diag(cov) < 0.0):
        return QUALITY_UNKNOWN
    sigma_m = math.sqrt(max(float(np.max(np.linalg.eigvalsh(0.5 * (cov + cov.T)))), 0.0))
    if sigma_m <= reference_sigma_m:
        return QUALITY_BEST
    return int(min(max(round(QUALITY_BEST * reference_sigma_m / sigma_m), 1), QUALITY_BEST))


def odometry_fields(pose: FusedPose, reset_counter: int, reference_sigma_m: float = 2.0) -> dict:
    """The ODOMETRY fields (pymavlink names) for one pose: LOCAL_FRD (north-aligned) / BODY_FRD."""
    q = quat_ned_frd(pose.q_enu_flu)
    p, v, w = enu_to_ned(pose.pos_enu_m), flu_to_frd(pose.vel_flu_mps), flu_to_frd(pose.rate_flu_radps)
    return dict(
        time_usec=int(max(pose.stamp_s, 0.0) * 1e6), frame_id=MAV_FRAME_LOCAL_FRD, child_frame_id=MAV_FRAME_BODY_FRD,
        x=float(p[0]), y=float(p[1]), z=float(p[2]), q=[float(c) for c in q],
        vx=float(v[0]), vy=float(v[1]), vz=float(v[2]),
        rollspeed=float(w[0]), pitchspeed=float(w[1]), yawspeed=float(w[2]),
        pose_covariance=upper_triangle(pose_covariance_ned(pose.pose_cov_enu, q)),
        velocity_covariance=upper_triangle(twist_covariance_frd(pose.twist_cov_flu)),
        reset_counter=int(reset_counter) % RESET_COUNTER_MODULO, estimator_type=MAV_ESTIMATOR_TYPE_VIO,
        quality=quality_percent(pose.tracking, pose.pose_cov_enu, reference_sigma_m))


def vision_position_fields(pose: FusedPose, reset_counter: int) -> dict:
    """The VISION_POSITION_ESTIMATE fields: NED position, NED/FRD Euler angles (Z-Y-X), covariance."""
    q = quat_ned_frd(pose.q_enu_flu)
    p = enu_to_ned(pose.pos_enu_m)
    roll, pitch, yaw = euler_from_quat(q)
    return dict(usec=int(max(pose.stamp_s, 0.0) * 1e6), x=float(p[0]), y=float(p[1]), z=float(p[2]),
                roll=roll, pitch=pitch, yaw=yaw, covariance=upper_triangle(pose_covariance_ned(pose.pose_cov_enu, q)),
                reset_counter=int(reset_counter) % RESET_COUNTER_MODULO)


def set_gps_global_origin_fields(lat_deg: float, lon_deg: float, alt_msl_m: float, target_system: int,
                                 time_usec: int = 0) -> dict:
    """SET_GPS_GLOBAL_ORIGIN for the map origin: 1e-7 degrees, altitude above MSL in mm."""
    return dict(target_system=int(target_system), latitude=int(round(lat_deg * 1e7)),
                longitude=int(round(lon_deg * 1e7)), altitude=int(round(alt_msl_m * 1000.0)), time_usec=int(time_usec))


class ResetCounter:
    """MAVLink's reset_counter (uint8, wraps): +1 each time the filter comes back from lost, which is when it
    re-localises and its pose jumps. The autopilot then re-aligns its external-vision frame instead of
    treating the jump as a glitch."""

    def __init__(self):
        self.count = 0
        self._tracking: bool | None = None

    def observe(self, tracking: bool) -> int:
        if tracking and self._tracking is False:
            self.count = (self.count + 1) % RESET_COUNTER_MODULO
        self._tracking = bool(tracking)
        return self.count
