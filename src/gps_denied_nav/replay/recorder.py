"""Records the graph's output topics into an MCAP bag and keeps the figures the report needs.

Subscriptions take raw CDR bytes (``raw=True``) so recording costs no deserialisation; only the
topics the report scores are decoded, and the 50 Hz odometry only into plain lists (its frame rotations
are done in one numpy batch when the report asks for them). Bag timestamps are the receive time on the
node's clock (the replayed /clock), as ``ros2 bag record`` would write them, so latency = receive time -
header stamp.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import StoragePlugin, Writer

from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.report_state import StateTrack
from gps_denied_nav.core.stage_timing import TimingRecord
from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.conversions import stamp_to_s
from gps_denied_nav.replay.bag_types import BAG_VERSION, typestore
from gps_denied_nav.replay.player import message_class

OUTPUT_TOPICS = {
    names.ODOMETRY: "nav_msgs/msg/Odometry",
    names.FIX: "sensor_msgs/msg/NavSatFix",
    names.VISUAL_FIX: "gps_denied_nav_interfaces/msg/VisualFix",
    names.CANDIDATES: "gps_denied_nav_interfaces/msg/RetrievalCandidates",
    names.MARKERS: "visualization_msgs/msg/MarkerArray",
    names.DIAGNOSTICS: "diagnostic_msgs/msg/DiagnosticArray",
    names.MAP_ORIGIN: "sensor_msgs/msg/NavSatFix",
    names.STAGE_TIMING: "gps_denied_nav_interfaces/msg/StageTiming",
}


@dataclass
class RecordedSeries:
    """Decoded outputs for scoring: fused fixes, accepted visual fixes with their receive times, the filter's
    odometry (in the map frame, twist in base_link) and the map frame's origin (lat_deg, lon_deg, alt_m)."""

    fix_t_s: list = field(default_factory=list)
    fix_lat_lon_alt: list = field(default_factory=list)
    fix_cov_en_m2: list = field(default_factory=list)  # [2x2] east/north block
    visual_t_s: list = field(default_factory=list)
    visual_received_s: list = field(default_factory=list)
    visual_received_wall_s: list = field(default_factory=list)  # time.time() at receipt, for wall latency
    visual_lat_lon_alt: list = field(default_factory=list)
    visual_cov_en_m2: list = field(default_factory=list)
    odom_t_s: list = field(default_factory=list)
    odom_pos_q_vel: list = field(default_factory=list)  # (x, y, z, qw, qx, qy, qz, vx, vy, vz), twist in body
    odom_pose_cov: list = field(default_factory=list)  # [36] row-major 6x6: position, then world-frame angle
    odom_twist_cov: list = field(default_factory=list)  # [36] row-major 6x6: body-frame velocity first
    map_origin: tuple | None = None
    timing: list = field(default_factory=list)  # TimingRecord per frame and stage

    def odometry_states(self) -> StateTrack | None:
        """The filter's states in its map frame, velocity rotated into the world, or None without odometry
        or without the map origin that anchors it."""
        if not self.odom_t_s or self.map_origin is None:
            return None
        a = np.array(self.odom_pos_q_vel, dtype=float)
        pose_cov = np.array(self.odom_pose_cov, dtype=float).reshape(-1, 6, 6)
        twist_cov = np.array(self.odom_twist_cov, dtype=float).reshape(-1, 6, 6)
        return StateTrack.from_body_twist(LocalTangentPlane(*self.map_origin), self.odom_t_s, a[:, 0:3], a[:, 3:7],
                                          a[:, 7:10], pose_cov[:, :3, :3], twist_cov[:, :3, :3], pose_cov[:, 3:, 3:])


class OutputRecorder:
    def __init__(self, node: Node, bag_path: str | Path, record_debug_images: bool = False):
        self._node = node
        self._lock = threading.Lock()
        self.series = RecordedSeries()
        self.counts: dict[str, int] = {}
        topics = dict(OUTPUT_TOPICS)
        if record_debug_images:
            topics[names.DEBUG_IMAGE] = "sensor_msgs/msg/Image"
        self._writer = Writer(Path(bag_path), version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._conns = {t: self._writer.add_connection(t, m, typestore=typestore()) for t, m in topics.items()}
        self._subs = [node.create_subscription(message_class(m), names.relative(t), self._callback(t), self._qos(t),
                                               raw=True)
                      for t, m in topics.items()]

    @staticmethod
    def _qos(topic: str) -> QoSProfile:
        if topic == names.MAP_ORIGIN:  # latched by the filter: a late subscriber still gets it
            return QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        return QoSProfile(depth=200)

    def _callback(self, topic: str):
        decode = {names.FIX: self._on_fix, names.VISUAL_FIX: self._on_visual_fix, names.ODOMETRY: self._on_odometry,
                  names.MAP_ORIGIN: self._on_map_origin, names.STAGE_TIMING: self._on_timing}.get(topic)

        def on_raw(raw: bytes) -> None:
            self._wall_s = time.time()
            now_ns = self._node.get_clock().now().nanoseconds
            with self._lock:
                if self._writer is None:
                    return
                self._writer.write(self._conns[topic], now_ns, raw)
                self.counts[topic] = self.counts.get(topic, 0) + 1
                if decode is not None:
                    decode(raw, now_ns * 1e-9)
        return on_raw

    def _on_fix(self, raw: bytes, _received_s: float) -> None:
        msg = deserialize_message(raw, message_class(OUTPUT_TOPICS[names.FIX]))
        s = self.series
        s.fix_t_s.append(stamp_to_s(msg.header.stamp))
        s.fix_lat_lon_alt.append((msg.latitude, msg.longitude, msg.altitude))
        c = msg.position_covariance
        s.fix_cov_en_m2.append(((c[0], c[1]), (c[3], c[4])))

    def _on_visual_fix(self, raw: bytes, received_s: float) -> None:
        msg = deserialize_message(raw, message_class(OUTPUT_TOPICS[names.VISUAL_FIX]))
        s = self.series
        s.visual_t_s.append(stamp_to_s(msg.header.stamp))
        s.visual_received_s.append(received_s)
        s.visual_received_wall_s.append(self._wall_s)
        s.visual_lat_lon_alt.append((msg.latitude_deg, msg.longitude_deg, msg.altitude_m))
        c = msg.position_covariance_enu_m2
        s.visual_cov_en_m2.append(((c[0], c[1]), (c[3], c[4])))

    def _on_odometry(self, raw: bytes, _received_s: float) -> None:
        msg = deserialize_message(raw, message_class(OUTPUT_TOPICS[names.ODOMETRY]))
        s = self.series
        p, q, v = msg.pose.pose.position, msg.pose.pose.orientation, msg.twist.twist.linear
        s.odom_t_s.append(stamp_to_s(msg.header.stamp))
        s.odom_pos_q_vel.append((p.x, p.y, p.z, q.w, q.x, q.y, q.z, v.x, v.y, v.z))
        s.odom_pose_cov.append(msg.pose.covariance)
        s.odom_twist_cov.append(msg.twist.covariance)

    def _on_timing(self, raw: bytes, _received_s: float) -> None:
        msg = deserialize_message(raw, message_class(OUTPUT_TOPICS[names.STAGE_TIMING]))
        self.series.timing.append(TimingRecord(stamp_to_s(msg.header.stamp), msg.stage, msg.outcome, msg.forwarded,
                                               msg.received_wall_s, msg.done_wall_s,
                                               dict(zip(msg.step_names, msg.step_ms))))

    def _on_map_origin(self, raw: bytes, _received_s: float) -> None:
        msg = deserialize_message(raw, message_class(OUTPUT_TOPICS[names.MAP_ORIGIN]))
        self.series.map_origin = (msg.latitude, msg.longitude, msg.altitude)

    def close(self) -> None:
        with self._lock:
            for sub in self._subs:
                self._node.destroy_subscription(sub)
            if self._writer is not None:
                self._writer.close()
                self._writer = None
