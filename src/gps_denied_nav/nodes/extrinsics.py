"""Sensor mounts (rotations into base_link) from TF, with the node's parameter as the fallback.

REP-145: a sensor's data is expressed in its message's ``header.frame_id``. A frame other than base_link
is rotated into base_link with the static transform base_link -> frame (robot_state_publisher's URDF or a
static_transform_publisher), looked up through tf2_ros where it is installed; where it is not, or TF has
no such transform yet, the node's mount parameter stands in. Which source is in force is on /diagnostics.
Only rotations: a lever arm between the IMU and base_link (centripetal terms) is not modelled.
"""
from __future__ import annotations

import time

import numpy as np

from gps_denied_nav.core.rotations import quat_to_rotmat

RETRY_S = 5.0  # a missing transform is asked for again this often (a static one can come late)


class Extrinsics:
    def __init__(self, node, base_frame: str, status):
        self._base, self._status, self._found, self._asked = base_frame, status, {}, {}
        self._buffer = None
        try:
            from tf2_ros import Buffer, TransformListener
        except ImportError:
            return
        self._buffer = Buffer()
        self._listener = TransformListener(self._buffer, node)

    @property
    def buffer(self):
        """The node's tf2 Buffer (None without tf2_ros), for its other lookups: one /tf listener per node."""
        return self._buffer

    def rotation(self, frame_id: str, fallback: np.ndarray, what: str) -> np.ndarray:
        """R_base_frame: the rotation taking ``frame_id`` vectors into base_link; ``fallback`` (from the
        parameter) while TF does not know the frame."""
        if frame_id in self._found:
            return self._found[frame_id]
        now = time.monotonic()
        if self._buffer is not None and frame_id and now - self._asked.get(frame_id, -np.inf) >= RETRY_S:
            self._asked[frame_id] = now
            try:
                from rclpy.time import Time

                q = self._buffer.lookup_transform(self._base, frame_id, Time()).transform.rotation
                self._found[frame_id] = quat_to_rotmat(np.array([q.w, q.x, q.y, q.z]))
                self._status.set(f"{what}_mount", f"TF {self._base} -> {frame_id}")
                return self._found[frame_id]
            except Exception as exc:  # noqa: BLE001 - tf2 raises several lookup exception classes
                self._status.set(f"{what}_mount", f"parameter (TF {self._base} -> {frame_id}: {exc})")
        elif self._buffer is None:  # nothing will ever come from TF: the parameter, for good
            self._status.set(f"{what}_mount", f"parameter ({frame_id or 'no frame_id'}; tf2_ros not installed)")
            self._found[frame_id] = fallback
        return fallback
