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


# Batch helpers. Each is written as a couple of matrix products with constant coefficient tensors
# rather than per-component arithmetic: for the N = 1 .. 1000 arrays of IMU propagation numpy's call
# overhead, not arithmetic, is the cost, and this keeps it at two or three calls per function.
_SKEW_COEFFS = np.zeros((3, 9))
_SKEW_COEFFS[0, [7, 5]] = 1.0, -1.0
_SKEW_COEFFS[1, [2, 6]] = 1.0, -1.0
_SKEW_COEFFS[2, [3, 1]] = 1.0, -1.0

# p ⊗ q = L(p) q with L(p) linear in p (Solà eq. 17): L(p) = sum_i p_i _QUAT_LEFT[i].
_QUAT_LEFT = np.zeros((4, 4, 4))
for _i, _row in enumerate(((0, 1, 2, 3), (1, 0, 3, 2), (2, 3, 0, 1), (3, 2, 1, 0))):
    for _r, _c in enumerate(_row):
        _QUAT_LEFT[_c, _r, _i] = 1.0
_QUAT_LEFT[1:, 0, 1:] *= -1.0  # first row: -x, -y, -z
_QUAT_LEFT[1, 2, 3] = _QUAT_LEFT[2, 3, 1] = _QUAT_LEFT[3, 1, 2] = -1.0
_QUAT_LEFT = _QUAT_LEFT.reshape(4, 16)

# R(q) is quadratic in q (Solà eq. 115 in homogeneous form): vec(R) = vec(q q^T) @ _ROT_COEFFS.
_ROT_COEFFS = np.zeros((4, 4, 3, 3))
for (_a, _b, _r, _c), _v in {
        (0, 0, 0, 0): 1, (1, 1, 0, 0): 1, (2, 2, 0, 0): -1, (3, 3, 0, 0): -1,
        (0, 0, 1, 1): 1, (1, 1, 1, 1): -1, (2, 2, 1, 1): 1, (3, 3, 1, 1): -1,
        (0, 0, 2, 2): 1, (1, 1, 2, 2): -1, (2, 2, 2, 2): -1, (3, 3, 2, 2): 1,
        (1, 2, 0, 1): 2, (0, 3, 0, 1): -2, (1, 3, 0, 2): 2, (0, 2, 0, 2): 2,
        (1, 2, 1, 0): 2, (0, 3, 1, 0): 2, (2, 3, 1, 2): 2, (0, 1, 1, 2): -2,
        (1, 3, 2, 0): 2, (0, 2, 2, 0): -2, (2, 3, 2, 1): 2, (0, 1, 2, 1): 2}.items():
    _ROT_COEFFS[_a, _b, _r, _c] = _v
_ROT_COEFFS = _ROT_COEFFS.reshape(16, 9)


def skew_batch(v: np.ndarray) -> np.ndarray:
    """[..., 3] -> [..., 3, 3] cross-product matrices (vectorised `skew`)."""
    v = np.asarray(v, dtype=float)
    return (v @ _SKEW_COEFFS).reshape(v.shape[:-1] + (3, 3))


def quat_multiply_batch(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Hamilton products p ⊗ q of [..., 4] arrays (broadcasting), Solà eq. 12."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    left = (p @ _QUAT_LEFT).reshape(p.shape[:-1] + (4, 4))
    return (left @ q[..., None])[..., 0]


def quat_from_rotvec_batch(theta: np.ndarray) -> np.ndarray:
    """Rotation vectors [..., 3] (rad) -> unit quaternions [..., 4] (Solà eq. 101, vectorised)."""
    theta = np.asarray(theta, dtype=float)
    angle2 = np.einsum("...i,...i->...", theta, theta)
    angle = np.sqrt(angle2)
    # sin(x/2)/x by its Taylor series below 1e-4 rad (error < 1e-18), so tiny increments stay exact.
    sinc_half = np.where(angle < 1e-4, 0.5 - angle2 / 48.0, np.sin(0.5 * angle) / np.maximum(angle, 1e-300))
    out = np.empty(theta.shape[:-1] + (4,))
    out[..., 0] = np.cos(0.5 * angle)
    out[..., 1:] = sinc_half[..., None] * theta
    return out


def rotvec_from_quat_batch(q: np.ndarray) -> np.ndarray:
    """Unit quaternions [..., 4] -> rotation vectors [..., 3] (rad), shortest path (vectorised `rotvec_from_quat`)."""
    q = np.asarray(q, dtype=float)
    q = q * np.where(q[..., :1] < 0.0, -1.0, 1.0)
    sin_half = np.linalg.norm(q[..., 1:], axis=-1)
    angle = 2.0 * np.arctan2(sin_half, q[..., 0])
    # angle / sin(angle/2) -> 2 for tiny angles, where the division would lose precision.
    scale = np.where(sin_half < 1e-12, 2.0, angle / np.maximum(sin_half, 1e-300))
    return scale[..., None] * q[..., 1:]


def quat_to_rotmat_batch(q: np.ndarray) -> np.ndarray:
    """Unit quaternions [..., 4] -> rotation matrices [..., 3, 3] (Solà eq. 115, vectorised)."""
    q = np.asarray(q, dtype=float)
    outer = (q[..., :, None] * q[..., None, :]).reshape(q.shape[:-1] + (16,))
    return (outer @ _ROT_COEFFS).reshape(q.shape[:-1] + (3, 3))


def quat_cumulative_product(dq: np.ndarray) -> np.ndarray:
    """[N, 4] -> [N, 4] prefix products dq_0 ⊗ dq_1 ⊗ ... ⊗ dq_k.

    Hillis-Steele scan: log2(N) vectorised passes instead of N Python-level products, which is what
    makes re-propagating a second of IMU samples after a delayed fix cheap.
    """
    out = np.array(dq, dtype=float, copy=True)
    step = 1
    while step < len(out):
        out[step:] = quat_multiply_batch(out[:-step], out[step:])
        step *= 2
    return out
