"""The graph's QoS profiles, chosen per kind of topic as ROS 2 drivers and nav2 do.

- Sensor inputs (camera, IMU, baro, GNSS) are KEEP_LAST (the queue drops the oldest sample rather than build
  latency) and follow their publishers' reliability (``sensor_qos_reliability: auto``, as ``ros2 bag record``
  adapts to what is offered). MAVROS and many drivers publish BEST_EFFORT (the sensor-data profile), and a
  RELIABLE subscription does not match them at all: nothing arrives, silently. A BEST_EFFORT subscription
  matches every publisher but turns a reliable one's delivery into best effort too, and between processes a
  900 KB image travels as UDP fragments: in a process-per-node replay 70 % of the frames were lost that way
  (none with reliable delivery). So ``auto`` subscribes BEST_EFFORT until it sees the publishers, then RELIABLE
  when every publisher offers it, BEST_EFFORT as soon as one does not; it looks again every QOS_CHECK_S.
  ``best_effort`` / ``reliable`` fix the choice.
- Internal topics (descriptor, candidates, visual fixes, odometry, timing) are RELIABLE: every frame's record
  must reach the next stage, and a lockstep replay waits on it.
- Latched topics (the map origin) are RELIABLE + TRANSIENT_LOCAL, depth 1: a node that starts later still gets it.
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}
RELIABILITY_MODES = ("auto", "best_effort", "reliable")
QOS_CHECK_S = 0.5  # how often ``auto`` looks at the publishers (a graph query on the local cache: cheap)


def sensor_qos(depth: int, reliability: str = "best_effort") -> QoSProfile:
    """rclpy's qos_profile_sensor_data with a depth of our choosing (its 5 is short for a 200 Hz IMU)."""
    if reliability not in RELIABILITY:
        raise ValueError(f"sensor_qos_reliability must be one of {sorted(RELIABILITY)}, got {reliability!r}")
    if depth < 1:
        raise ValueError(f"a sensor queue depth must be >= 1, got {depth}")
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth), reliability=RELIABILITY[reliability],
                      durability=DurabilityPolicy.VOLATILE)


def internal_qos(depth: int = 10) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def latched_qos() -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def offered_reliability(publishers) -> str:
    """What an ``auto`` subscription should be for these publishers (rclpy TopicEndpointInfo): reliable only
    when there are publishers and every one of them is reliable."""
    kinds = {info.qos_profile.reliability for info in publishers}
    return "reliable" if kinds and kinds <= {ReliabilityPolicy.RELIABLE} else "best_effort"


class AdaptiveReliability:
    """``auto`` sensor subscriptions of one node, re-created when their publishers' reliability asks for it."""

    def __init__(self, node, make, drop):
        self._node, self._make, self._drop = node, make, drop  # make(msg_type, topic, cb, depth, reliability)
        self.entries: dict[str, list] = {}  # topic -> [msg_type, callback, depth, reliability, subscription]

    def add(self, msg_type, topic: str, callback, depth: int) -> None:
        sub = self._make(msg_type, topic, callback, depth, "best_effort")  # matches whatever comes first
        self.entries[topic] = [msg_type, callback, depth, "best_effort", sub]

    def in_force(self) -> dict[str, str]:
        return {topic: entry[3] for topic, entry in self.entries.items()}

    def check(self) -> None:
        for topic, entry in self.entries.items():
            msg_type, callback, depth, current, sub = entry
            name = sub.topic_name  # fully resolved (namespace, remaps)
            publishers = self._node.get_publishers_info_by_topic(name)
            wanted = offered_reliability(publishers)
            if not publishers or wanted == current:
                continue
            self._drop(sub)
            entry[3], entry[4] = wanted, self._make(msg_type, topic, callback, depth, wanted)
            self._node.get_logger().info(f"{name}: {len(publishers)} publisher(s), subscribing {wanted}")
