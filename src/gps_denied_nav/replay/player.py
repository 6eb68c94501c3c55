"""Bag player: publishes a flight clip's messages at their recorded pace, with /clock.

``ros2 bag play`` is not available from PyPI, and the graph must be replayable in-process anyway.
Messages go out as raw CDR bytes (no deserialisation: ~600 images/s), paced in wall time by ``rate``;
/clock follows every message so nodes running with ``use_sim_time`` see the recorded time. Pacing
matters: at full speed DDS subscribers drop IMU samples (ros2-on-pip.md).

With a ``FrameGate`` (lockstep mode) the player holds each camera frame until the graph has finished the
previous one; the clock stands still meanwhile and the pacing resumes from there, so every stage sees
the clip as if the machine were infinitely fast. Without one (realtime mode) the clip plays at its own
pace whatever the graph keeps up with. The wall time each image went out is kept for latency.
"""
from __future__ import annotations

import importlib
import threading
import time
from pathlib import Path
from typing import Callable

from rclpy.node import Node
from rclpy.qos import QoSProfile
from rosbags.highlevel import AnyReader
from rosgraph_msgs.msg import Clock

from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.conversions import s_to_stamp
from gps_denied_nav.nodes.qos import QOS_CHECK_S, sensor_qos
from gps_denied_nav.recording.salvage import recording_bags
from gps_denied_nav.replay.bag_types import typestore
from gps_denied_nav.replay.lockstep import FrameGate, header_stamp_s


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


SENSOR_TOPICS = (names.IMAGE, names.CAMERA_INFO, names.IMU, names.BARO, names.GNSS_FIX)
# A recording (recorder_node) also holds what the graph published then: never fed back into the graph.
GRAPH_OUTPUT_PREFIXES = ("/gps_denied_nav/", names.DIAGNOSTICS, "/rosout", "/parameter_events")


def replayed(topic: str) -> bool:
    return not topic.startswith(GRAPH_OUTPUT_PREFIXES)


def decompressed_image(raw: bytes) -> bytes:
    """A raw sensor_msgs/CompressedImage (a recording's JPEG frames) -> a raw sensor_msgs/Image, same header:
    bgr8, or mono8 for a grey JPEG."""
    import cv2
    import numpy as np
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CompressedImage, Image

    msg = deserialize_message(raw, CompressedImage)
    pixels = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ValueError(f"cannot decode a {msg.format!r} frame of {len(msg.data)} bytes")
    out = Image(header=msg.header, height=pixels.shape[0], width=pixels.shape[1],
                encoding="mono8" if pixels.ndim == 2 else "bgr8")
    out.step = out.width * (1 if pixels.ndim == 2 else 3)
    out.data = np.ascontiguousarray(pixels[..., :3] if pixels.ndim == 3 else pixels).tobytes()
    return serialize_message(out)
GATE_FLOW_S = 0.5  # lockstep, clips without an IMU: how far past a pending frame the clip plays before waiting


class BagPlayer:
    def __init__(self, node: Node, bag_path: str | Path, rate: float = 1.0,
                 progress: Callable[[float, float], None] | None = None, clock_rate_hz: float = 50.0,
                 gate: FrameGate | None = None, sensor_qos: bool = False):
        """``sensor_qos``: publish the sensor topics best effort with the sensor-data profile, as camera drivers
        and MAVROS do (``ros2 bag play`` replays the recorded profiles); else reliable. Topics go out under
        their relative names: a namespaced player feeds a namespaced graph."""
        if rate <= 0:
            raise ValueError(f"replay rate must be > 0, got {rate}")
        self.bag_path = Path(bag_path)
        if not self.bag_path.exists():
            raise FileNotFoundError(f"flight clip not found: {self.bag_path}")
        self.bags = recording_bags(self.bag_path)  # a clip, or a recording's splits
        self._node = node
        self._rate = rate
        self._progress = progress
        self._gate = gate
        self._sensor_qos = sensor_qos
        self.image_published_wall_s: dict[float, float] = {}  # exposure stamp -> time.time() at publishing
        # /clock at a fixed rate, as `ros2 bag play --clock` does: every node with use_sim_time takes
        # each /clock message, so one per bag message (~300/s here) would swamp the executors.
        self._clock_period_s = 1.0 / clock_rate_hz
        self._stop = threading.Event()
        self._clock_pub = node.create_publisher(Clock, names.CLOCK, QoSProfile(depth=10))
        self._pubs = {}
        self.published = 0
        self.start_s = self.end_s = 0.0
        self.now_s = float("nan")  # the clip time of the last message published
        self.finished = threading.Event()

    def _publisher(self, topic: str, msgtype: str):
        if topic not in self._pubs:
            depth = 2000 if topic == names.IMU else 50
            qos = sensor_qos(depth) if self._sensor_qos and topic in SENSOR_TOPICS else QoSProfile(depth=depth)
            self._pubs[topic] = self._node.create_publisher(message_class(msgtype), names.relative(topic), qos)
        return self._pubs[topic]

    def publish_clock(self, t_s: float) -> None:
        self._clock_pub.publish(Clock(clock=s_to_stamp(t_s)))

    def play(self) -> None:
        """Publish everything (blocking). Call from a thread of its own."""
        with AnyReader(self.bags, default_typestore=typestore()) as reader:
            self.start_s, self.end_s = reader.start_time * 1e-9, reader.end_time * 1e-9
            conns = [c for c in reader.connections if replayed(c.topic)]
            for conn in conns:
                if conn.topic == names.COMPRESSED_IMAGE:
                    self._publisher(names.IMAGE, "sensor_msgs/msg/Image")
                else:
                    self._publisher(conn.topic, conn.msgtype)
            sparse = all(conn.topic != names.IMU for conn in conns)  # e.g. a photo clip (gdn bag import)
            # Let DDS match the new publishers with the graph's subscribers before the first message, and the
            # graph's `auto` sensor subscriptions follow their reliability (looked at every QOS_CHECK_S: a switch
            # re-creates the subscription, and a message sent across it could be lost).
            time.sleep(1.0 + 2.0 * QOS_CHECK_S)
            wall0 = time.monotonic()
            next_clock_s = -float("inf")
            last_frame_s = None
            for conn, stamp_ns, raw in reader.messages(connections=conns):
                if self._stop.is_set():
                    break
                t_s = stamp_ns * 1e-9
                is_image = conn.topic in (names.IMAGE, names.COMPRESSED_IMAGE)
                # Lockstep: the clock must not run past a frame the graph is still working on. A clip with an
                # IMU reaches its next frame within a frame period and waits there; a sparse one (photos
                # seconds apart, no IMU) waits once it is GATE_FLOW_S past the frame.
                if (self._gate is not None and last_frame_s is not None
                        and (is_image or (sparse and t_s - last_frame_s > GATE_FLOW_S))):
                    wall0 += self._gate.wait(last_frame_s)  # the schedule resumes where it stopped
                    last_frame_s = None
                if sparse:
                    next_clock_s = self._wait_until(wall0, t_s, next_clock_s)
                else:
                    delay = wall0 + (t_s - self.start_s) / self._rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                if t_s >= next_clock_s:
                    self.publish_clock(t_s)
                    next_clock_s = t_s + self._clock_period_s
                if is_image:
                    last_frame_s = header_stamp_s(raw)
                    self.image_published_wall_s[last_frame_s] = time.time()
                if conn.topic == names.COMPRESSED_IMAGE:
                    self._pubs[names.IMAGE].publish(decompressed_image(raw))
                else:
                    self._pubs[conn.topic].publish(raw)
                self.published += 1
                self.now_s = t_s
                if self._progress is not None and self.published % 500 == 0:
                    self._progress(t_s - self.start_s, self.end_s - self.start_s)
            if self._gate is not None and last_frame_s is not None and not self._stop.is_set():
                self._gate.wait(last_frame_s)
        self.finished.set()

    def _wait_until(self, wall0: float, t_s: float, next_clock_s: float) -> float:
        """Sleep until the clip's t_s is due, publishing /clock on schedule meanwhile (as ``ros2 bag play
        --clock`` does): between sparse messages, e.g. photos 7 s apart, time must still flow for nodes that
        run on it (the constant-velocity filter's ticks). Returns the next /clock stamp due."""
        while True:
            delay = wall0 + (t_s - self.start_s) / self._rate - time.monotonic()
            if delay <= 0 or self._stop.is_set():
                return next_clock_s
            now_s = self.start_s + (time.monotonic() - wall0) * self._rate
            if next_clock_s <= now_s < t_s:
                self.publish_clock(now_s)
                next_clock_s = now_s + self._clock_period_s
            time.sleep(min(delay, self._clock_period_s / self._rate))

    def hold_clock(self, duration_s: float) -> None:
        """Keep /clock running past the end of the clip so in-flight frames can finish."""
        wall0 = time.monotonic()
        while time.monotonic() - wall0 < duration_s and not self._stop.is_set():
            self.publish_clock(self.end_s + (time.monotonic() - wall0) * self._rate)
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
