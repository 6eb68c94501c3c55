"""Lockstep gate: the player publishes the next camera frame only once the graph is done with the last one.

Every stage publishes a StageTiming record per frame; a frame is done when a stage reports that it ends
there (``forwarded`` false: dropped, rejected, or fused by the filter). Waiting for that before the next
frame makes a replay's accuracy independent of the machine's speed and load: no stage ever skips a
frame because it was still busy. A frame that a stage lost without a record (a QoS drop, a crash in a
callback) releases the gate after ``timeout_s``, and is counted.
"""
from __future__ import annotations

import struct
import threading
import time

from rclpy.node import Node
from rclpy.qos import QoSProfile

from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.conversions import stamp_to_s
from gps_denied_nav_interfaces.msg import StageTiming


def header_stamp_s(raw_cdr: bytes) -> float:
    """Header stamp of a serialised message whose first field is a std_msgs/Header (Image, Imu...), without
    deserialising it: after the 4-byte CDR encapsulation come int32 sec and uint32 nanosec."""
    little_endian = raw_cdr[1] & 1
    sec, nanosec = struct.unpack_from("<iI" if little_endian else ">iI", raw_cdr, 4)
    return sec + 1e-9 * nanosec


class FrameGate:
    def __init__(self, node: Node, timeout_s: float = 10.0):
        self.timeout_s = timeout_s
        self._cv = threading.Condition()
        self._done: set[float] = set()
        self.frames_waited = 0
        self.timeouts: list[float] = []  # stamps of frames that never reported an end
        self.waited_s = 0.0  # wall time the player spent waiting in all
        self._sub = node.create_subscription(StageTiming, names.relative(names.STAGE_TIMING), self._on_timing,
                                             QoSProfile(depth=200))

    def _on_timing(self, msg: StageTiming) -> None:
        if not msg.forwarded:
            with self._cv:
                self._done.add(round(stamp_to_s(msg.header.stamp), 6))
                self._cv.notify_all()

    def wait(self, stamp_s: float) -> float:
        """Block until the frame stamped ``stamp_s`` has ended in some stage, or the timeout. Returns the wall
        seconds waited."""
        key = round(stamp_s, 6)
        t0 = time.monotonic()
        with self._cv:
            ok = self._cv.wait_for(lambda: key in self._done, timeout=self.timeout_s)
            self._done.discard(key)
        waited = time.monotonic() - t0
        self.frames_waited += 1
        self.waited_s += waited
        if not ok:
            self.timeouts.append(stamp_s)
        return waited

    def summary(self) -> dict:
        return {"frames_waited": self.frames_waited, "timeouts": len(self.timeouts), "timeout_s": self.timeout_s,
                "waited_s": round(self.waited_s, 3)}
