"""Thermal telemetry: the Jetson's temperatures, clocks and power on /diagnostics, and the frame rate it can afford.

Optional, like the recorder. Every ``poll_period_s`` it reads a TelemetrySource (jtop on the aircraft, a JSON
file when ``telemetry_file`` is set), publishes the readings as one DiagnosticStatus (units in the key names)
and feeds the hottest temperature to a ThermalGovernor, whose allowed processed frame rate goes out latched on
``names.THERMAL_RATE_LIMIT`` (std_msgs/Float32, Hz) whenever it changes, for the inference node to obey. No jtop,
no service or no Jetson is not an error of the graph: one WARN "unavailable" status with the reason, repeated
only every ``unavailable_period_s`` (when it also tries again), the limit at ``max_frame_rate_hz``, and the
node stays up. Diagnostics use a plain publisher, as NodeStatus does, so they show while inactive too.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.qos import QoSProfile
from std_msgs.msg import Float32

from gps_denied_nav.core.thermal import (FileSource, GovernorConfig, JtopSource, TelemetryUnavailable, ThermalGovernor,
                                         diagnostic_values)
from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.node_main import run_node
from gps_denied_nav.nodes.params import declare_parameters, read_parameters, reject_while_configured
from gps_denied_nav.nodes.qos import latched_qos



@dataclass(frozen=True)
class TelemetryParams:
    telemetry_file: str = ""  # read readings from this JSON file instead of jtop (tests, bench runs); "" = jtop
    poll_period_s: float = 1.0  # telemetry read and published this often
    unavailable_period_s: float = 30.0  # without telemetry: the WARN status repeated, and the source retried, this often
    thermal_limit_c: float = 95.0  # min_frame_rate_hz from here up; below the SoC's own throttle trip (Orin ~99 °C)
    thermal_margin_c: float = 10.0  # the allowed rate starts falling this far below thermal_limit_c
    thermal_hysteresis_c: float = 3.0  # a cooling SoC must drop this much before the rate rises again
    max_frame_rate_hz: float = 5.0  # allowed when cool (at or above the camera rate: no limit)
    min_frame_rate_hz: float = 0.5  # allowed at thermal_limit_c; keeps fixes under the filter's reinit_max_chord_s


class TelemetryNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__(names.TELEMETRY_NODE, **kwargs)
        declare_parameters(self, TelemetryParams)
        self._configured = False
        reject_while_configured(self, TelemetryParams, lambda: self._configured)

    # --- lifecycle -------------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        self.params = p = read_parameters(self, TelemetryParams)
        try:
            self.governor = ThermalGovernor(GovernorConfig(p.thermal_limit_c, p.thermal_margin_c, p.thermal_hysteresis_c,
                                                           p.max_frame_rate_hz, p.min_frame_rate_hz))
            if not 0.0 < p.poll_period_s <= p.unavailable_period_s:
                raise ValueError(f"need 0 < poll_period_s <= unavailable_period_s, got {p.poll_period_s}, "
                                 f"{p.unavailable_period_s}")
        except ValueError as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.source = FileSource(p.telemetry_file) if p.telemetry_file else JtopSource()
        self.unavailable = ""  # the reason, while there is no telemetry
        self.last_unavailable_s = -float("inf")
        self.published_rate_hz = None
        self.diag_pub = self.create_publisher(DiagnosticArray, names.DIAGNOSTICS, QoSProfile(depth=10))
        self.rate_pub = self.create_lifecycle_publisher(Float32, names.relative(names.THERMAL_RATE_LIMIT), latched_qos())
        self._open()
        # Steady clock: telemetry must keep coming when /clock stalls (a paused replay).
        self.timer = self.create_timer(p.poll_period_s, self._poll, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._configured = True
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # activates rate_pub
        self.published_rate_hz = None  # publish the current limit now that the publisher is live
        self._publish_rate()
        return result

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        if not self._configured:
            return
        self.destroy_timer(self.timer)
        self.source.close()
        self.destroy_publisher(self.diag_pub)
        self.destroy_lifecycle_publisher(self.rate_pub)
        self._configured = False

    # --- polling ---------------------------------------------------------------------------------
    def _open(self) -> None:
        try:
            self.source.open()
            self.unavailable = ""
        except TelemetryUnavailable as exc:
            self.unavailable = str(exc)  # reported by the next poll, once a subscriber can have matched

    def _poll(self) -> None:
        now = time.monotonic()
        try:  # an exception escaping a timer would stop the executor
            if self.unavailable:
                if now - self.last_unavailable_s < self.params.unavailable_period_s:
                    return  # said once; repeated only at the slow rate
                if self.last_unavailable_s > -math.inf:  # reported before: try the source again first
                    self.source.close()
                    self._open()
                if self.unavailable:
                    self._report_unavailable(now)
                    return
            sample = self.source.read()
        except TelemetryUnavailable as exc:
            reason = str(exc)
        except Exception as exc:  # noqa: BLE001 - a malformed reading is reported, never raised
            reason = f"{type(exc).__name__}: {exc}"
        else:
            self._publish_sample(sample)
            return
        self.unavailable = reason
        self._report_unavailable(now)

    def _report_unavailable(self, now: float) -> None:
        self.last_unavailable_s = now
        self.get_logger().warning(f"thermal telemetry unavailable: {self.unavailable}")
        self._publish_status(DiagnosticStatus.WARN, f"unavailable: {self.unavailable}", {})
        self._publish_rate()  # no reading: the governor keeps its last rate (the maximum until a first one)

    def _publish_sample(self, sample) -> None:
        hottest = sample.hottest()
        rate_hz = self.governor.update(None if hottest is None else hottest[1])
        values = diagnostic_values(sample)
        values["frame_rate_limit_hz"] = f"{rate_hz:.2f}"
        values["thermal_limit_c"] = f"{self.params.thermal_limit_c:.1f}"
        if hottest is None:
            level, message = DiagnosticStatus.WARN, "no temperature reading"
        elif rate_hz < self.params.max_frame_rate_hz:
            level = DiagnosticStatus.WARN
            message = f"hot: {hottest[0]} {hottest[1]:.1f} °C, frame rate limited to {rate_hz:.2f} Hz"
        else:
            level, message = DiagnosticStatus.OK, f"ok: hottest {hottest[0]} {hottest[1]:.1f} °C"
        self._publish_status(level, message, values)
        self._publish_rate()

    def _publish_rate(self) -> None:
        rate_hz = self.governor.rate_hz
        if self.published_rate_hz is not None and abs(rate_hz - self.published_rate_hz) < 0.01:
            return  # latched: a subscriber has the value; republishing every second is noise
        if self.rate_pub.is_activated:
            self.rate_pub.publish(Float32(data=float(rate_hz)))
            self.published_rate_hz = rate_hz

    def _publish_status(self, level: bytes, message: str, values: dict[str, str]) -> None:
        status = DiagnosticStatus(level=level, name=f"gps_denied_nav: {self.get_name()}", message=message,
                                  hardware_id=self.get_fully_qualified_name())
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)


def main(args=None) -> None:
    run_node(TelemetryNode, args)


if __name__ == "__main__":
    main()
