"""Parameters carry descriptors from their dataclasses, and a configured node refuses changes it would ignore."""
from __future__ import annotations

import pytest
import rclpy
from rclpy.parameter import Parameter

from gps_denied_nav.nodes.eskf_node import EskfNode
from gps_denied_nav.nodes.eskf_params import EskfParams
from gps_denied_nav.nodes.lifecycle_manager import LifecycleManager
from gps_denied_nav.nodes.params import field_descriptions
from gps_denied_nav.replay.graph import ros_args
from gps_denied_nav.replay.session import DEFAULT_PARAMS


@pytest.fixture
def ros():
    rclpy.init(args=ros_args(DEFAULT_PARAMS))
    yield
    rclpy.shutdown()


def test_descriptions_come_from_the_field_comments():
    described = field_descriptions(EskfParams)
    assert described["gate_probability"] == "chi-square gate of every update"
    assert "newest samples" in described["sensor_qos_depth"]  # a field of the StageParams base


def test_a_configured_node_refuses_parameter_changes_and_says_why(ros):
    node = EskfNode()
    try:
        d = node.describe_parameter("gate_probability")
        assert d.description == "chi-square gate of every update"
        assert d.floating_point_range[0].from_value == 0.5
        assert node.set_parameters([Parameter("executor_threads", value=0)])[0].successful is False  # out of range
        assert node.set_parameters([Parameter("gate_probability", value=0.99)])[0].successful  # unconfigured: fine
        node.trigger_configure()
        node.trigger_activate()
        result = node.set_parameters([Parameter("gate_probability", value=0.9)])[0]
        assert not result.successful and "configure it again" in result.reason
        assert node.get_parameter("gate_probability").value == 0.99
        assert node.set_parameters([Parameter("use_sim_time", value=True)])[0].successful  # not ours: allowed
        node.trigger_deactivate()
        node.trigger_cleanup()
        assert node.set_parameters([Parameter("gate_probability", value=0.9)])[0].successful
    finally:
        node.destroy_node()


def test_the_managers_parameters_are_read_only(ros):
    manager = LifecycleManager(parameter_overrides=[Parameter("autostart", value=False)])
    try:
        assert manager.describe_parameter("autostart").read_only
        assert manager.set_parameters([Parameter("transition_timeout_s", value=5.0)])[0].successful is False
    finally:
        manager.destroy_node()
