"""Malformed messages are counted on /diagnostics and dropped; the node stays active (real rclpy + DDS)."""
from __future__ import annotations

import array
import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import QoSProfile
from nav_msgs.msg import Odometry
from sensor_msgs.msg import Image, Imu, NavSatFix, NavSatStatus

from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.qos import QOS_CHECK_S
from gps_denied_nav.nodes.conversions import s_to_stamp
from gps_denied_nav.nodes.eskf_node import EskfNode
from gps_denied_nav.nodes.inference_node import InferenceNode
from gps_denied_nav.nodes.matching_node import MatchingNode
from gps_denied_nav.nodes.retrieval_node import RetrievalNode
from gps_denied_nav_interfaces.msg import GlobalDescriptor, VisualFix
from rclpy_harness import ros_context, spinning, wait_for


@pytest.fixture(scope="module")
def graph(small_corpus):
    with ros_context({"corpus_dir": str(small_corpus)}):
        nodes = {cls.__name__: cls() for cls in (EskfNode, InferenceNode, RetrievalNode, MatchingNode)}
        for node in nodes.values():
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        probe = Node("bad_input_probe")
        diagnostics: list[DiagnosticArray] = []
        probe.create_subscription(DiagnosticArray, names.DIAGNOSTICS, diagnostics.append, QoSProfile(depth=100))
        with spinning(*nodes.values(), probe):
            yield nodes, probe, diagnostics


def _publish(probe: Node, msg_type, topic: str, messages) -> None:
    pub = probe.create_publisher(msg_type, topic, QoSProfile(depth=50))
    wait_for(lambda: pub.get_subscription_count() > 0, 5.0)
    # The nodes' `auto` sensor subscriptions start best effort and re-create themselves reliable once they see
    # this reliable publisher (every QOS_CHECK_S): a message sent across the switch could be lost.
    time.sleep(1.0 + 2.0 * QOS_CHECK_S)
    for msg in messages:
        pub.publish(msg)
        time.sleep(0.02)


def _imu(t_s: float, ax: float = 0.0) -> Imu:
    msg = Imu()
    msg.header.stamp = s_to_stamp(t_s)
    msg.linear_acceleration.x, msg.linear_acceleration.z = ax, 9.81
    return msg


def test_bad_images_are_counted_and_dropped(graph):
    nodes, probe, diagnostics = graph
    wrong_encoding = Image(height=4, width=4, encoding="yuv422", step=8, data=bytes(32))
    empty = Image(height=0, width=0, encoding="rgb8", step=0, data=b"")
    _publish(probe, Image, names.IMAGE, [wrong_encoding, empty])
    for name in ("InferenceNode", "MatchingNode"):
        status = nodes[name].status
        assert wait_for(lambda: status.snapshot().get("dropped_bad_image", 0) >= 2), status.snapshot()
        assert nodes[name]._state_machine.current_state[0] == State.PRIMARY_STATE_ACTIVE
    # The drop shows on /diagnostics with its reason.
    assert wait_for(lambda: any(kv.key == "dropped_bad_image" and int(kv.value) >= 2
                                 for d in diagnostics for s in d.status for kv in s.values), 5.0)


def test_nan_absurd_and_out_of_order_imu_are_dropped(graph):
    nodes, probe, _ = graph
    t0 = 1000.0
    _publish(probe, Imu, names.IMU, [_imu(t0), _imu(t0 + 0.01, ax=float("nan")), _imu(t0 + 0.02), _imu(t0 + 0.015),
                                     _imu(t0 + 7200.0), _imu(t0 + 0.03, ax=1e12), _imu(t0 + 0.04)])
    status = nodes["EskfNode"].status
    expected = {"dropped_imu_not_finite": 1, "dropped_imu_stamp_backwards": 1, "dropped_imu_stamp_jump": 1,
                "dropped_imu_accel_out_of_range": 1}
    assert wait_for(lambda: all(status.snapshot().get(k, 0) == n for k, n in expected.items())), status.snapshot()
    # The stamp two hours ahead was not adopted: the samples after it still count.
    assert wait_for(lambda: status.snapshot().get("imu_received", 0) >= 3), status.snapshot()
    assert nodes["EskfNode"]._state_machine.current_state[0] == State.PRIMARY_STATE_ACTIVE


def test_absurd_gnss_and_visual_fixes_are_refused_with_their_reason(graph):
    nodes, probe, _ = graph
    gnss = NavSatFix(latitude=200.0, longitude=22.0, altitude=10.0)
    gnss.status.status = 0
    _publish(probe, NavSatFix, names.GNSS_FIX, [gnss])
    fix = VisualFix(latitude_deg=60.4, longitude_deg=22.2, altitude_m=100.0, heading_variance_rad2=float("nan"))
    fix.position_covariance_enu_m2 = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
    _publish(probe, VisualFix, names.VISUAL_FIX, [fix])
    eskf = nodes["EskfNode"].status
    assert wait_for(lambda: eskf.snapshot().get("dropped_gnss_latlon_out_of_range", 0) == 1), eskf.snapshot()
    assert wait_for(lambda: eskf.snapshot().get("dropped_visual_fix_heading_invalid", 0) == 1), eskf.snapshot()
    assert nodes["EskfNode"].frame is None, "a refused fix must not set the map origin"


def test_bad_visual_fix_and_descriptor_are_dropped(graph):
    nodes, probe, _ = graph
    fix = VisualFix(latitude_deg=float("nan"), longitude_deg=22.0)
    fix.position_covariance_enu_m2 = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
    _publish(probe, VisualFix, names.VISUAL_FIX, [fix])
    wrong = GlobalDescriptor(model_id="some-other-model")
    wrong.descriptor = array.array("f", [1.0, 0.0, 0.0])
    _publish(probe, GlobalDescriptor, names.DESCRIPTOR, [wrong])
    _publish(probe, NavSatFix, names.FIX, [NavSatFix(latitude=float("nan"), longitude=1.0)])
    eskf, retrieval = nodes["EskfNode"].status, nodes["RetrievalNode"].status
    assert wait_for(lambda: eskf.snapshot().get("dropped_visual_fix_position_not_finite", 0) == 1), eskf.snapshot()
    assert wait_for(lambda: retrieval.snapshot().get("dropped_model_mismatch", 0) == 1), retrieval.snapshot()
    assert wait_for(lambda: retrieval.snapshot().get("dropped_bad_fix", 0) == 1), retrieval.snapshot()
    for node in nodes.values():
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_ACTIVE


def test_a_far_future_odometry_or_fix_does_not_capture_the_clocks(graph):
    """Found by benchmarks/fuzz_graph.py: an odometry stamped 2 h ahead became the newest attitude and every
    later one was ignored as out of order; a visual fix an hour ahead started the filter an hour ahead."""
    nodes, probe, _ = graph
    t0 = 2000.0
    _publish(probe, Imu, names.IMU, [_imu(t0 + 0.01 * i) for i in range(5)])
    fix = VisualFix(latitude_deg=60.4, longitude_deg=22.2, altitude_m=100.0, heading_variance_rad2=1e-3, inliers=300)
    fix.position_covariance_enu_m2 = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
    fix.header.stamp = s_to_stamp(t0 + 3600.0)
    _publish(probe, VisualFix, names.VISUAL_FIX, [fix])
    eskf = nodes["EskfNode"]
    assert wait_for(lambda: eskf.status.snapshot().get("dropped_visual_fix_off_imu_clock", 0) == 1), \
        eskf.status.snapshot()
    assert not eskf.filter.initialized

    def odometry(t_s: float, w: float = 1.0) -> Odometry:
        msg = Odometry()
        msg.header.stamp = s_to_stamp(t_s)
        msg.pose.pose.orientation.w = w
        return msg
    _publish(probe, Odometry, names.ODOMETRY, [odometry(t0), odometry(t0 + 7200.0), odometry(t0 + 0.02),
                                               odometry(t0 + 0.04, w=float("nan"))])
    inference = nodes["InferenceNode"]
    assert wait_for(lambda: inference.status.snapshot().get("dropped_odometry_stamp_jump", 0) == 1
                    and inference.status.snapshot().get("dropped_odometry_not_unit_quaternion", 0) == 1), \
        inference.status.snapshot()
    assert inference.poses.lookup(t0 + 0.02, tolerance_s=1e-3) is not None  # the later attitude was kept


def test_a_fused_altitude_that_contradicts_the_corpus_terrain_is_reported(graph):
    """GNSS heights and the corpus ground (--ground-alt-m / --dem / --geoid-offset-m) that disagree by more
    than any flight height: counted with both numbers and the terrain's source, never silently used."""
    nodes, probe, _ = graph
    inference = nodes["InferenceNode"]
    corpus_frame = inference.corpus_frame
    ground_m = float(inference.terrain.heights_m.mean())  # flat: the same everywhere

    def fused(alt_m: float) -> NavSatFix:
        msg = NavSatFix(latitude=corpus_frame.origin_lat_deg, longitude=corpus_frame.origin_lon_deg, altitude=alt_m)
        msg.status.status = NavSatStatus.STATUS_FIX
        return msg
    before = inference.status.snapshot().get("dropped_altitude_contradicts_terrain", 0)
    _publish(probe, NavSatFix, names.FIX, [fused(ground_m + 120.0)])
    time.sleep(0.3)
    assert inference.status.snapshot().get("dropped_altitude_contradicts_terrain", 0) == before
    _publish(probe, NavSatFix, names.FIX, [fused(ground_m - 40.0), fused(ground_m + 5000.0)])
    assert wait_for(lambda: inference.status.snapshot().get("dropped_altitude_contradicts_terrain", 0) == before + 2), \
        inference.status.snapshot()
