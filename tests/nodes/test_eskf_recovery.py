"""The filter node's recovery chain: initialise from a visual fix, reject a run of fixes 300 m off, report
NO_FIX on /gps_denied_nav/fix (which sends retrieval global), and re-initialise from the next two strong fixes.

Inputs go straight into the node's callbacks, in stamp order, so the test does not depend on DDS timing
(the DDS input path is covered by test_bad_input and the end-to-end replays); outputs are read over DDS."""
from __future__ import annotations


import pytest
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Imu, NavSatFix, NavSatStatus

from gps_denied_nav.core.eskf_diagnostics import MeasurementKind
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.conversions import s_to_stamp
from gps_denied_nav.nodes.eskf_node import EskfNode
from gps_denied_nav_interfaces.msg import VisualFix
from rclpy_harness import ros_context, spinning, wait_for

ORIGIN = LocalTangentPlane(60.40, 22.46, 0.0)
ALTITUDE_M = 120.0


@pytest.fixture
def eskf():
    with ros_context({"origin_lat_deg": ORIGIN.origin_lat_deg, "origin_lon_deg": ORIGIN.origin_lon_deg,
                      "origin_alt_m": 0.0}):
        node = EskfNode()
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        probe = Node("eskf_probe")
        fixes: list[NavSatFix] = []
        probe.create_subscription(NavSatFix, names.FIX, fixes.append, QoSProfile(depth=200))
        with spinning(node, probe):
            yield node, fixes


def _hover_imu(node, t0_s: float, t1_s: float, rate_hz: float = 100.0) -> None:
    """A level, hovering vehicle: specific force straight up, no rotation."""
    n = int(round((t1_s - t0_s) * rate_hz))
    for i in range(1, n + 1):
        msg = Imu()
        msg.header.stamp = s_to_stamp(t0_s + i / rate_hz)
        msg.linear_acceleration.z = 9.80665
        node._on_imu(msg)


def _fix(t_s: float, east_m: float, north_m: float, inliers: int = 100) -> VisualFix:
    lat, lon, alt = ORIGIN.to_geodetic([east_m, north_m, ALTITUDE_M])
    msg = VisualFix(latitude_deg=float(lat), longitude_deg=float(lon), altitude_m=float(alt), heading_rad=0.0,
                    heading_variance_rad2=1e-3, inliers=inliers)
    msg.header.stamp = s_to_stamp(t_s)
    msg.position_covariance_enu_m2 = [4.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 9.0]
    return msg


def test_rejections_report_no_fix_and_a_strong_fix_recovers(eskf):
    node, fixes = eskf
    _hover_imu(node, 0.0, 1.0)
    node._on_visual_fix(_fix(1.0, 0.0, 0.0))  # no GNSS: the first visual fix initialises the filter
    assert wait_for(lambda: node.filter.initialized)
    _hover_imu(node, 1.0, 2.0)
    t = 2.0
    for _ in range(node.params.max_consecutive_visual_rejections):
        node._on_visual_fix(_fix(t, 300.0, -250.0, inliers=40))  # confidently wrong: gated out
        _hover_imu(node, t, t + 0.5)
        t += 0.5
    assert wait_for(lambda: node.filter.needs_reinit), node.status.snapshot()
    counters = node.filter.diagnostics.counters[MeasurementKind.VISUAL_FIX]
    assert counters.rejected == node.params.max_consecutive_visual_rejections
    assert wait_for(lambda: fixes and fixes[-1].status.status == NavSatStatus.STATUS_NO_FIX)

    # Two strong fixes re-initialise: position and heading from the newer, velocity from their chord
    # (5 m/s east here), not the velocity the lost filter carried.
    strong = node.params.reinit_min_inliers
    assert node._on_visual_fix(_fix(t, 0.5, 0.5, inliers=strong)) is None and node.filter.needs_reinit
    _hover_imu(node, t, t + 0.5)
    node._on_visual_fix(_fix(t + 0.5, 3.0, 0.5, inliers=strong))
    assert not node.filter.needs_reinit, node.status.snapshot()
    assert abs(node.filter.vel_enu_mps[0] - 5.0) < 0.5 and abs(node.filter.vel_enu_mps[1]) < 0.5
    _hover_imu(node, t + 0.5, t + 1.5)
    assert abs(node.filter.pos_enu_m[0] - 8.0) < 1.0 and abs(node.filter.pos_enu_m[1] - 0.5) < 1.0
    assert wait_for(lambda: fixes[-1].status.status == NavSatStatus.STATUS_FIX)
