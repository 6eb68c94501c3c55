"""REP-145: IMU data in its own frame is rotated into base_link (TF where it exists, the mount parameter here).

An IMU mounted upside down (frame imu_link, rolled 180 deg in base_link) measures gravity along its -z. Taken
as base_link data, the filter would see 2 g downwards and fall ~10 m in a second; rotated, it holds still."""
from __future__ import annotations

import pytest
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Imu

from gps_denied_nav.nodes.conversions import s_to_stamp
from gps_denied_nav.nodes.eskf_node import EskfNode
from gps_denied_nav_interfaces.srv import SetPose
from rclpy_harness import ros_context, spinning, wait_for

ORIGIN = {"origin_lat_deg": 60.45, "origin_lon_deg": 22.27, "origin_alt_m": 40.0}

def _fly_still(mount_rpy_deg: str) -> float:
    """Height change (m) over 1 s of a still, upside-down IMU, with the given imu_mount_rpy_deg."""
    with ros_context({**ORIGIN, "imu_mount_rpy_deg": mount_rpy_deg}):
        node, probe = EskfNode(), Node("probe")
        node.trigger_configure()
        node.trigger_activate()
        imu = probe.create_publisher(Imu, "imu/data", qos_profile_sensor_data)
        odometry = []
        probe.create_subscription(Odometry, "gps_denied_nav/odometry", odometry.append, 100)
        set_pose = probe.create_client(SetPose, "eskf_node/set_pose")

        def publish(k0: int, n: int) -> None:
            for k in range(k0, k0 + n):
                msg = Imu()
                msg.header.stamp, msg.header.frame_id = s_to_stamp(100.0 + 0.005 * k), "imu_link"
                msg.linear_acceleration.z = -9.80665  # upside down: gravity's reaction along the IMU's -z
                imu.publish(msg)

        with spinning(node, probe):
            publish(0, 40)
            assert wait_for(lambda: node.imu_stamps.last_s is not None, 10.0)
            pose = PoseWithCovarianceStamped()
            pose.header.frame_id = "map"
            pose.pose.pose.position.z = 100.0
            pose.pose.pose.orientation.w = 1.0
            pose.pose.covariance = [0.0] * 36
            for i, v in enumerate((1.0, 1.0, 1.0, 1e6, 1e6, 0.01)):
                pose.pose.covariance[7 * i] = v
            assert set_pose.wait_for_service(timeout_sec=10.0)
            future = set_pose.call_async(SetPose.Request(pose=pose))
            assert wait_for(future.done, 10.0) and future.result().success, future.result()
            for chunk in range(10):
                publish(40 + 20 * chunk, 20)
                wait_for(lambda: False, 0.05)  # paced: the best-effort queue is not flooded
            assert wait_for(lambda: odometry and odometry[-1].header.stamp.sec + odometry[-1].header.stamp.nanosec
                            * 1e-9 > 100.9, 10.0)
        node.trigger_deactivate()
        node.trigger_cleanup()
    return odometry[-1].pose.pose.position.z - 100.0

def test_an_upside_down_imu_in_its_own_frame_is_rotated_into_base_link():
    assert _fly_still("[180.0, 0.0, 0.0]") == pytest.approx(0.0, abs=0.5)
    assert _fly_still("[0.0, 0.0, 0.0]") < -5.0  # the same data taken as base_link: a 2 g fall
