"""fc_bridge_node's external-vision modes on real rclpy, callbacks driven directly (no DDS discovery): what
reaches a pymavlink listener, what is withheld while lost or stale, and an unknown ``message`` failing configure."""
from __future__ import annotations

import os
import socket

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from lifecycle_msgs.msg import State
from nav_msgs.msg import Odometry
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import NavSatFix, NavSatStatus

from gps_denied_nav.nodes.conversions import s_to_stamp
from gps_denied_nav.nodes.fc_bridge_node import FcBridgeNode
from gps_denied_nav.replay.graph import ros_args
from gps_denied_nav.replay.session import DEFAULT_PARAMS


@pytest.fixture
def listener():
    os.environ.setdefault("MAVLINK20", "1")  # ODOMETRY is MAVLink 2 only; pymavlink reads this when it loads
    from pymavlink import mavutil

    if not hasattr(mavutil.mavlink, "MAVLink_odometry_message"):  # loaded as MAVLink 1 by an earlier test
        mavutil.set_dialect(mavutil.current_dialect)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    link = mavutil.mavlink_connection(f"udpin:127.0.0.1:{port}")
    yield port, link
    link.close()


def _node(port: int, message: str) -> FcBridgeNode:
    rclpy.init(args=ros_args(DEFAULT_PARAMS, {"mavlink_url": f"udpout:127.0.0.1:{port}", "message": message}))
    return FcBridgeNode()


def _fix(status: int) -> NavSatFix:
    msg = NavSatFix(latitude=60.45, longitude=22.27, altitude=158.0)
    msg.status.status = status
    return msg


def _odometry(stamp_s: float) -> Odometry:
    msg = Odometry()
    msg.header.stamp = s_to_stamp(stamp_s)
    msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = 10.0, 20.0, 5.0
    msg.pose.pose.orientation.w = 1.0  # nose east
    msg.pose.covariance = [1.0 if i % 7 == 0 else 0.0 for i in range(36)]
    msg.twist.twist.linear.x = 3.0
    return msg


def _received(link, kind: str):
    return link.recv_match(type=kind, blocking=True, timeout=2.0)


def test_odometry_mode_sends_origin_and_odometry_and_withholds_lost_or_stale(listener):
    port, link = listener
    node = _node(port, "odometry")
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        now_s = node.get_clock().now().nanoseconds * 1e-9
        node._on_map_origin(_fix(NavSatStatus.STATUS_FIX))
        node._on_fix(_fix(NavSatStatus.STATUS_FIX))
        node._on_fix(_fix(NavSatStatus.STATUS_NO_FIX))
        node._on_fix(_fix(NavSatStatus.STATUS_FIX))  # back from lost: a reset
        node._on_odometry(_odometry(now_s))
        node._send_local()
        origin = _received(link, "SET_GPS_GLOBAL_ORIGIN")
        assert (origin.latitude, origin.longitude, origin.altitude) == (604500000, 222700000, 158000)
        odo = _received(link, "ODOMETRY")
        assert (odo.x, odo.y, odo.z, odo.vx) == pytest.approx((20.0, 10.0, -5.0, 3.0))
        assert odo.reset_counter == 1 and odo.quality == 100
        node._on_odometry(_odometry(now_s - 10.0))
        node._send_local()
        node._on_odometry(_odometry(node.get_clock().now().nanoseconds * 1e-9))
        node._on_fix(_fix(NavSatStatus.STATUS_NO_FIX))
        node._send_local()
        counts = node.status.snapshot()
        assert counts["odometry_sent"] == 1 and counts["set_gps_global_origin_sent"] == 1
        assert counts["odometry_withheld_stale"] == 1 and counts["odometry_withheld_lost"] == 1
    finally:
        node.destroy_node()
        rclpy.shutdown()


def test_vision_position_estimate_mode(listener):
    port, link = listener
    node = _node(port, "vision_position_estimate")
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        node._on_fix(_fix(NavSatStatus.STATUS_FIX))
        node._on_odometry(_odometry(node.get_clock().now().nanoseconds * 1e-9))
        node._send_local()
        vpe = _received(link, "VISION_POSITION_ESTIMATE")
        assert (vpe.x, vpe.y, vpe.z) == pytest.approx((20.0, 10.0, -5.0)) and vpe.yaw == pytest.approx(1.5707963)
    finally:
        node.destroy_node()
        rclpy.shutdown()


def test_an_unknown_message_fails_configure(listener):
    node = _node(listener[0], "gps_raw")
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
    finally:
        node.destroy_node()
        rclpy.shutdown()


def _serial_node(device: str) -> FcBridgeNode:
    rclpy.init(args=ros_args(DEFAULT_PARAMS, {"mavlink_url": f"{device},57600"}))
    return FcBridgeNode()


def test_a_missing_serial_port_is_an_error_on_diagnostics_not_a_failed_transition():
    node = _serial_node("/dev/gdn_no_such_port")
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        node._send_gps_input()
        level, message = node._health()
        assert level == DiagnosticStatus.ERROR and "/dev/gdn_no_such_port" in message and "retrying" in message
        assert node.status.snapshot()["gps_input_not_connected"] == 1
    finally:
        node.destroy_node()
        rclpy.shutdown()


def test_a_serial_port_that_goes_away_is_closed_reported_and_reopened():
    """A pty stands in for a USB serial adapter: its master end closed is the adapter unplugged."""
    master, slave = os.openpty()
    device = os.ttyname(slave)
    node = _serial_node(device)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        node._send_gps_input()
        assert os.read(master, 4096)  # bytes reached the "autopilot"
        assert node._health() is None
        os.close(master)
        for _ in range(30):
            node._send_gps_input()
        assert node.link is None and node.status.snapshot()["dropped_mavlink_send_error"] >= 2
        level, message = node._health()
        assert level == DiagnosticStatus.ERROR and device in message
        node._send_gps_input()  # while it is gone: counted, nothing raised
        assert node.status.snapshot()["gps_input_not_connected"] >= 1
    finally:
        node.destroy_node()
        rclpy.shutdown()
        for fd in (master, slave):
            try:
                os.close(fd)
            except OSError:
                pass
