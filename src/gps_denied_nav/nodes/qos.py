"""The graph's QoS profiles, chosen per kind of topic as ROS 2 drivers and nav2 do.

- Sensor inputs (camera, IMU, baro, GNSS) subscribe BEST_EFFORT, KEEP_LAST: camera drivers and MAVROS publish
  with the sensor-data profile, and a RELIABLE subscription does not match a BEST_EFFORT publisher at all
  (nothing arrives, silently). A best-effort subscription matches both kinds of publisher. A late sample is
  worth less than the next one: the queue drops the oldest instead of building latency. ``reliable`` stays
  available (``sensor_qos_reliability``) for a driver known to publish reliably and a link that loses packets.
- Internal topics (descriptor, candidates, visual fixes, odometry, timing) are RELIABLE: every frame's record
  must reach the next stage, and a lockstep replay waits on it.
- Latched topics (the map origin) are RELIABLE + TRANSIENT_LOCAL, depth 1: a node that starts later still gets it.
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


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
