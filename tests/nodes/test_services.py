"""The graph's services over DDS, as tools call them: the filter's ~/set_pose and ~/reset (as
robot_localization's), and inference_node's ~/describe (an image -> the corpus model's descriptor)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Imu
from std_srvs.srv import Trigger

from gps_denied_nav.core.corpus import Corpus
from gps_denied_nav.core.descriptor import DescriptorExtractor
from gps_denied_nav.core.map_raster import load_geotiff
from gps_denied_nav.nodes.conversions import rgb_to_image, s_to_stamp
from gps_denied_nav.nodes.eskf_node import EskfNode
from gps_denied_nav.nodes.inference_node import InferenceNode
from gps_denied_nav_interfaces.srv import Describe, SetPose
from rclpy_harness import ros_context, spinning, wait_for

ORIGIN = {"origin_lat_deg": 60.45, "origin_lon_deg": 22.27, "origin_alt_m": 40.0}


def _call(client, request, timeout_s: float = 10.0):
    assert client.wait_for_service(timeout_sec=timeout_s), client.srv_name
    future = client.call_async(request)
    assert wait_for(future.done, timeout_s), f"{client.srv_name}: no answer"
    return future.result()


def _pose(x, y, z, yaw_rad, frame="map") -> SetPose.Request:
    msg = PoseWithCovarianceStamped()
    msg.header.frame_id = frame  # stamp zero: the filter's newest time
    msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = x, y, z
    msg.pose.pose.orientation.w, msg.pose.pose.orientation.z = math.cos(yaw_rad / 2), math.sin(yaw_rad / 2)
    msg.pose.covariance = list(np.diag([4.0, 4.0, 4.0, 1e6, 1e6, 0.01]).ravel())
    return SetPose.Request(pose=msg)


def test_set_pose_starts_the_filter_there_and_reset_forgets_it():
    with ros_context(ORIGIN):
        node, probe = EskfNode(), Node("probe")
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        imu_pub = probe.create_publisher(Imu, "imu/data", qos_profile_sensor_data)  # a driver: best effort
        odometry = []
        probe.create_subscription(Odometry, "gps_denied_nav/odometry", odometry.append, 50)
        set_pose = probe.create_client(SetPose, "eskf_node/set_pose")
        reset = probe.create_client(Trigger, "eskf_node/reset")

        def publish_imu(t0_s: float, n: int) -> None:
            for k in range(n):
                msg = Imu()
                msg.header.stamp, msg.header.frame_id = s_to_stamp(t0_s + 0.005 * k), "base_link"
                msg.linear_acceleration.z = 9.80665  # level and still
                imu_pub.publish(msg)

        with spinning(node, probe):
            assert not _call(set_pose, _pose(10.0, 20.0, 100.0, 0.0)).success  # no IMU yet: nothing to stamp it
            publish_imu(100.0, 40)
            assert wait_for(lambda: node.imu_stamps.last_s is not None, 10.0)
            wrong = _call(set_pose, _pose(10.0, 20.0, 100.0, 0.0, frame="odom"))
            assert not wrong.success and "expected 'map'" in wrong.message
            answer = _call(set_pose, _pose(10.0, 20.0, 100.0, math.radians(90.0)))
            assert answer.success, answer.message
            assert node.filter.initialized
            publish_imu(100.2, 100)
            assert wait_for(lambda: len(odometry) > 3, 10.0)
            p = odometry[-1].pose.pose.position
            assert (p.x, p.y, p.z) == pytest.approx((10.0, 20.0, 100.0), abs=1.0)
            # 2 m at the pose, growing with the unknown velocity (15 m/s 1-sigma) while the IMU carries it on.
            dt_s = odometry[-1].header.stamp.sec + odometry[-1].header.stamp.nanosec * 1e-9 - (100.0 + 0.005 * 39)
            sigma_m = math.sqrt(odometry[-1].pose.covariance[0])
            assert 1.9 <= sigma_m <= 1.1 * math.hypot(2.0, 15.0 * dt_s), (sigma_m, dt_s)
            assert _call(reset, Trigger.Request()).success
            assert not node.filter.initialized
        node.trigger_deactivate()
        node.trigger_cleanup()


def test_describe_returns_the_corpus_models_descriptor_of_the_image(small_world, small_corpus):
    raster = load_geotiff(small_world)
    corpus = Corpus.load(small_corpus)
    image = cv2.resize(raster.image_rgb[100:400, 100:400], (corpus.tile_px,) * 2, interpolation=cv2.INTER_AREA)
    expected = DescriptorExtractor(corpus.load_model(), device="cpu", input_px=corpus.tile_px).describe(image[None])[0]
    with ros_context({"corpus_dir": str(small_corpus)}):
        node, probe = InferenceNode(), Node("probe")
        node.trigger_configure()
        node.trigger_activate()
        describe = probe.create_client(Describe, "inference_node/describe")
        with spinning(node, probe):
            answer = _call(describe, Describe.Request(image=rgb_to_image(image, s_to_stamp(5.0), "map")), 30.0)
            bad = _call(describe, Describe.Request())  # an empty image
        node.trigger_deactivate()
        node.trigger_cleanup()
    assert answer.success, answer.message
    got = np.asarray(answer.descriptor.descriptor, dtype=np.float32)
    assert got.shape == expected.shape and float(got @ expected) == pytest.approx(1.0, abs=1e-3)
    assert not answer.descriptor.rectified and answer.descriptor.model_id == corpus.manifest.model_id
    assert not bad.success and "bad image" in bad.message
