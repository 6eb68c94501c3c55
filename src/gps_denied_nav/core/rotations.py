"""Rotation helpers shared by the filter, the camera model and the simulator.

Conventions (Solà 2017, "Quaternion kinematics for the error-state Kalman filter"): Hamilton
quaternions stored as numpy arrays ``[w, x, y, z]``; ``q_world_body`` rotates body vectors into the
world frame, ``v_world = R(q) @ v_body``. The world frame is ENU (REP-103), the body frame FLU.
"""
from __future__ import annotations

import numpy as np


def skew(v: np.ndarray) -> np.ndarray:
    """[3] -> [3x3] cross-product matrix, skew(a) @ b == cross(a, b)."""
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def quat_multiply(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Hamilton product p ⊗ q (Solà eq. 12)."""
    pw, px, py, pz = p
    qw, qx, qy, qz = q
    return np.array([
        pw * qw - px * qx - py * qy - pz * qz,
        pw * qx + px * qw + py * qz - pz * qy,
        pw * qy - px * qz + py * qw + pz * qx,
        pw * qz + px * qy - py * qx + pz * qw,
    ])


def quat_conjugate(q: np.ndarray) -> np.ndarray:
    return np.array([q[0], -q[1], -q[2], -q[3]])


def quat_normalize(q: np.ndarray) -> np.ndarray:
    q = q / np.linalg.norm(q)
    return q if q[0] >= 0.0 else -q


def quat_to_rotmat(q: np.ndarray) -> np.ndarray:
    """[w,x,y,z] -> [3x3] rotation matrix (Solà eq. 115)."""
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def rotmat_to_quat(R: np.ndarray) -> np.ndarray:
    """[3x3] -> [w,x,y,z] with w >= 0 (Shepperd's method, stable for all angles)."""
    t = np.trace(R)
    if t > 0.0:
        s = 2.0 * np.sqrt(1.0 + t)
        q = np.array([0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s])
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = np.array([(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s])
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = np.array([(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s])
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = np.array([(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s])
    return quat_normalize(q)


def quat_from_rotvec(theta: np.ndarray) -> np.ndarray:
    """Exponential map: rotation vector [3] (rad) -> unit quaternion (Solà eq. 101)."""
    angle = float(np.linalg.norm(theta))
    if angle < 1e-12:
        # Second-order Taylor expansion keeps tiny IMU increments exact to float precision.
        q = np.array([1.0 - angle * angle / 8.0, *(0.5 * theta)])
        return q / np.linalg.norm(q)
    axis = theta / angle
    return np.array([np.cos(0.5 * angle), *(np.sin(0.5 * angle) * axis)])


def rotvec_from_quat(q: np.ndarray) -> np.ndarray:
    """Logarithmic map: unit quaternion -> rotation vector [3] (rad), shortest path."""
    q = quat_normalize(q)
    v = q[1:]
    s = float(np.linalg.norm(v))
    if s < 1e-12:
        return 2.0 * v
    return 2.0 * np.arctan2(s, q[0]) * v / s


def quat_from_euler(roll_rad: float, pitch_rad: float, yaw_rad: float) -> np.ndarray:
    """Intrinsic Z-Y'-X'' (yaw, pitch, roll) as in REP-103: R = Rz(yaw) Ry(pitch) Rx(roll)."""
    cr, sr = np.cos(0.5 * roll_rad), np.sin(0.5 * roll_rad)
    cp, sp = np.cos(0.5 * pitch_rad), np.sin(0.5 * pitch_rad)
    cy, sy = np.cos(0.5 * yaw_rad), np.sin(0.5 * yaw_rad)
    return np.array([
        cr * cp * cy + sr * sp * sy,
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
    ])


def euler_from_quat(q: np.ndarray) -> tuple[float, float, float]:
    """Unit quaternion -> (roll, pitch, yaw) in rad, inverse of quat_from_euler."""
    w, x, y, z = q
    roll = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = np.arcsin(np.clip(2 * (w * y - z * x), -1.0, 1.0))
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return float(roll), float(pitch), float(yaw)


def wrap_angle(a: float) -> float:
    """Wrap an angle to (-pi, pi]."""
    return float(-((-a + np.pi) % (2.0 * np.pi) - np.pi))
