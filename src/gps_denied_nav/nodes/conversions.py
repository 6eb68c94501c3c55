"""Message <-> numpy conversions (no cv_bridge: it is not available for ROS 2 from PyPI).

Images are converted with ``np.frombuffer``/``tobytes`` because assigning arrays to message fields costs
~25 ms per frame in rclpy. Every decoder validates its input and raises ``ValueError`` with what is wrong,
so nodes can count and drop a malformed message instead of crashing.
"""
from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, Image

from gps_denied_nav.core.camera import CameraIntrinsics

_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}
_INT32_LIMIT = 2**31


def stamp_to_s(stamp: Time) -> float:
    return stamp.sec + 1e-9 * stamp.nanosec


def s_to_stamp(t_s: float) -> Time:
    """Seconds -> builtin_interfaces/Time, to the nearest nanosecond (never rounded up into the next second).

    ValueError outside Time's int32 seconds (until 2038-01-19): rclpy would serialise such a stamp wrapped
    around to a negative time without a word.
    """
    if not -_INT32_LIMIT <= t_s < _INT32_LIMIT:  # also refuses NaN
        raise ValueError(f"time {t_s} s is outside builtin_interfaces/Time's int32 seconds")
    sec = math.floor(t_s)
    nanosec = min(int(round((t_s - sec) * 1e9)), 999_999_999)
    return Time(sec=int(sec), nanosec=nanosec)


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, mono8) -> [H, W, 3] uint8 RGB (a copy)."""
    channels = _CHANNELS.get(msg.encoding)
    if channels is None:
        raise ValueError(f"unsupported image encoding '{msg.encoding}' (expected rgb8, bgr8 or mono8)")
    if msg.height == 0 or msg.width == 0:
        raise ValueError("empty image (0 width or height)")
    if msg.step < msg.width * channels:
        raise ValueError(f"image step {msg.step} < width*channels {msg.width * channels}")
    if len(msg.data) != msg.step * msg.height:
        raise ValueError(f"image data is {len(msg.data)} bytes, expected step*height = {msg.step * msg.height}")
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    pixels = rows[:, : msg.width * channels].reshape(msg.height, msg.width, channels)
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    return pixels[:, :, ::-1].copy() if msg.encoding == "bgr8" else pixels.copy()


def rgb_to_image(rgb: np.ndarray, stamp: Time, frame_id: str) -> Image:
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    return msg


def camera_info_to_intrinsics(msg: CameraInfo) -> CameraIntrinsics:
    """sensor_msgs/CameraInfo -> intrinsics; ValueError for anything that is not a plausible camera
    (the bounds are in core.camera, ``CameraIntrinsics.from_K``/``validate``)."""
    try:
        return CameraIntrinsics.from_K(np.asarray(msg.k, dtype=float).reshape(3, 3), msg.width, msg.height,
                                       tuple(msg.d))
    except ValueError as exc:
        raise ValueError(f"camera_info refused: {exc}") from exc


def quat_msg_to_wxyz(q) -> np.ndarray:
    """geometry_msgs/Quaternion (x, y, z, w) -> numpy [w, x, y, z]."""
    return np.array([q.w, q.x, q.y, q.z])


def wxyz_to_quat_msg(q: np.ndarray, msg) -> None:
    msg.w, msg.x, msg.y, msg.z = (float(v) for v in q)


def require_finite(name: str, *values: float) -> None:
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} contains NaN or Inf")
