"""telemetry_node on real rclpy/DDS with a file-driven telemetry source: diagnostics at ~1 Hz with units in the
keys, the latched frame-rate limit falling when the source heats up, and jtop absent: one WARN "unavailable"
status, no crash, the limit left at its maximum."""
from __future__ import annotations

import json
import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import State
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import QoSProfile
from std_msgs.msg import Float32

from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.qos import latched_qos
from gps_denied_nav.nodes.names import THERMAL_RATE_LIMIT
from gps_denied_nav.nodes.telemetry_node import TelemetryNode
from rclpy_harness import ros_context, spinning, wait_for


def _write(path, gpu_c: float) -> None:
    path.write_text(json.dumps({"temperatures_c": {"cpu": gpu_c - 2.0, "gpu": gpu_c}, "cpu_freq_mhz": [1728, 1728],
                                "gpu_freq_mhz": 918.0, "emc_freq_mhz": 3199.0, "gpu_load_percent": 40.0,
                                "power_total_w": 12.5, "power_rails_w": {"VDD_GPU_SOC": 5.1}}))


def _probe(statuses: list, rates: list) -> Node:
    probe = Node("probe")
    probe.create_subscription(DiagnosticArray, names.DIAGNOSTICS,
                              lambda m: statuses.extend((time.monotonic(), s) for s in m.status
                                                        if "telemetry_node" in s.name), QoSProfile(depth=50))
    probe.create_subscription(Float32, names.relative(THERMAL_RATE_LIMIT), lambda m: rates.append(m.data), latched_qos())
    return probe


def _bring_up(node: TelemetryNode) -> None:
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS


def test_diagnostics_at_one_hz_and_the_rate_limit_falls_as_the_source_heats_up(tmp_path):
    telemetry = tmp_path / "telemetry.json"
    _write(telemetry, 60.0)
    statuses, rates = [], []
    with ros_context({"telemetry_file": str(telemetry)}):
        node, probe = TelemetryNode(), _probe(statuses, rates)
        with spinning(node, probe):
            _bring_up(node)
            assert wait_for(lambda: len(statuses) >= 4, 8.0)
            assert wait_for(lambda: rates and rates[-1] == pytest.approx(5.0), 5.0)
            _write(telemetry, 93.0)  # 8 °C into the 10 °C margin below the 95 °C limit
            assert wait_for(lambda: rates[-1] < 2.0, 5.0), rates
            assert wait_for(lambda: any(s.level == DiagnosticStatus.WARN for _t, s in statuses), 3.0)
            node.trigger_deactivate()
        node.trigger_cleanup()
    cool = [(t, s) for t, s in statuses if s.level == DiagnosticStatus.OK]
    gaps_s = [b[0] - a[0] for a, b in zip(cool, cool[1:])]
    assert len(gaps_s) >= 3 and all(0.7 < g < 1.4 for g in gaps_s), gaps_s  # 1 Hz, within executor jitter
    values = {kv.key: kv.value for kv in cool[0][1].values}
    assert values["temp_gpu_c"] == "60.0" and values["gpu_freq_mhz"] == "918" and values["power_total_w"] == "12.50"
    assert values["power_vdd_gpu_soc_w"] == "5.10" and values["cpu1_freq_mhz"] == "1728"
    assert rates[-1] == pytest.approx(5.0 - 0.8 * 4.5, abs=0.01)  # linear between 85 and 95 °C
    hot = next(s for _t, s in statuses if s.level == DiagnosticStatus.WARN)
    assert "gpu 93.0" in hot.message and "limited" in hot.message


def test_without_jtop_one_unavailable_status_and_the_node_stays_up():
    try:
        import jtop  # noqa: F401
        pytest.skip("jetson-stats is installed here: the jtop-absent path cannot be shown")
    except ImportError:
        pass
    statuses, rates = [], []
    with ros_context({"unavailable_period_s": 30.0}):  # telemetry_file "" (the default): jtop
        node, probe = TelemetryNode(), _probe(statuses, rates)
        with spinning(node, probe):
            _bring_up(node)
            assert wait_for(lambda: rates, 5.0)
            assert wait_for(lambda: statuses, 5.0)
            time.sleep(3.0)  # three more poll periods: the status must not repeat
            assert node._state_machine.current_state[0] == State.PRIMARY_STATE_ACTIVE
            node.trigger_deactivate()
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    unavailable = [s for _t, s in statuses if s.message.startswith("unavailable")]
    assert len(unavailable) == 1 and len(statuses) == 1
    assert unavailable[0].level == DiagnosticStatus.WARN and "jetson-stats (jtop) is not installed" in unavailable[0].message
    assert rates == [pytest.approx(5.0)]  # no reading, no limit below the maximum


def test_bad_governor_parameters_fail_configure():
    with ros_context({"thermal_hysteresis_c": 20.0}):
        node = TelemetryNode()
        try:
            assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        finally:
            node.destroy_node()


def test_the_filter_states_the_fix_interval_the_thermal_limit_allows():
    """0.2 Hz allowed: fixes at least 5 s apart, more than the 3 s re-initialisation chord: counted and on
    /diagnostics; a non-finite limit is dropped and counted, the last good one kept."""
    from gps_denied_nav.nodes.eskf_node import EskfNode

    with ros_context({"origin_lat_deg": 60.45, "origin_lon_deg": 22.27, "origin_alt_m": 40.0}):
        node, probe = EskfNode(), Node("probe")
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        limit = probe.create_publisher(Float32, names.relative(THERMAL_RATE_LIMIT), latched_qos())
        with spinning(node, probe):
            limit.publish(Float32(data=0.2))
            assert wait_for(lambda: abs(node.thermal.frame_rate_limit_hz - 0.2) < 1e-6, 10.0), "the latched limit never arrived"
            limit.publish(Float32(data=float("inf")))
            assert wait_for(lambda: node.status.snapshot().get("dropped_bad_frame_rate_limit") == 1, 10.0)
        counts = node.status.snapshot()
        interval_s = node.thermal.min_fix_interval_s
        node.trigger_cleanup()
    assert abs(interval_s - 5.0) < 1e-5 and counts.get("thermal_limit_beyond_reinit_chord") == 1, (interval_s, counts)
