"""Sensor subscriptions follow their publishers' reliability (``sensor_qos_reliability: auto``): best effort as
soon as a driver publishes best effort (a reliable subscription would receive nothing from it), reliable when
every publisher is (best-effort delivery of a reliable camera's large images loses frames between processes)."""
from __future__ import annotations

import time

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.topic_endpoint_info import TopicEndpointInfo
from sensor_msgs.msg import Imu

from gps_denied_nav.nodes.conversions import s_to_stamp
from gps_denied_nav.nodes.eskf_node import EskfNode
from gps_denied_nav.nodes.qos import offered_reliability
from rclpy_harness import ros_context, spinning, wait_for


def _endpoint(reliability) -> TopicEndpointInfo:
    info = TopicEndpointInfo()
    info.qos_profile = QoSProfile(depth=5, reliability=reliability)
    return info


def test_offered_reliability():
    reliable, best_effort = _endpoint(ReliabilityPolicy.RELIABLE), _endpoint(ReliabilityPolicy.BEST_EFFORT)
    assert offered_reliability([]) == "best_effort"
    assert offered_reliability([reliable, reliable]) == "reliable"
    assert offered_reliability([reliable, best_effort]) == "best_effort"


def _imu(stamp_s: float) -> Imu:
    msg = Imu()
    msg.header.stamp, msg.header.frame_id = s_to_stamp(stamp_s), "base_link"
    msg.linear_acceleration.z = 9.80665
    return msg


def test_the_imu_subscription_follows_its_publishers():
    with ros_context({"origin_lat_deg": 60.45, "origin_lon_deg": 22.27, "origin_alt_m": 40.0}):
        node, probe = EskfNode(), Node("probe")
        node.trigger_configure()
        node.trigger_activate()
        topic = "imu/data"
        with spinning(node, probe):
            assert node._adaptive.in_force()["/imu/data"] == "best_effort"  # before any publisher: matches all
            reliable = probe.create_publisher(Imu, topic, QoSProfile(depth=50))
            assert wait_for(lambda: node._adaptive.in_force()["/imu/data"] == "reliable", 10.0)
            time.sleep(1.5)  # DDS un-matches the replaced subscription and matches the new one
            assert reliable.get_subscription_count() == 1
            for k in range(20):
                reliable.publish(_imu(100.0 + 0.005 * k))
            assert wait_for(lambda: node.status.snapshot().get("imu_received", 0) == 20, 10.0), node.status.snapshot()
            driver = probe.create_publisher(Imu, topic, qos_profile_sensor_data)  # e.g. MAVROS, best effort
            assert wait_for(lambda: node._adaptive.in_force()["/imu/data"] == "best_effort", 10.0)
            time.sleep(1.5)
            assert driver.get_subscription_count() == 1
            for k in range(20, 40):
                driver.publish(_imu(100.0 + 0.005 * k))
            assert wait_for(lambda: node.status.snapshot().get("imu_received", 0) >= 35, 10.0)
        node.trigger_deactivate()
        node.trigger_cleanup()
