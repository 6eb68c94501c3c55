"""Per-node status on /diagnostics: message counters, drop reasons, rates and the last error.

Each node owns one ``NodeStatus``. Callbacks only bump counters (cheap, thread-safe); a 1 Hz timer turns
them into a ``diagnostic_msgs/DiagnosticArray``. A malformed input is ``drop(reason, error)``-ed: counted,
shown with its reason, and the node keeps running.
"""
from __future__ import annotations

import threading
import time
from collections import Counter

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile

from gps_denied_nav.nodes import names


class NodeStatus:
    def __init__(self, node: Node, period_s: float = 1.0):
        self._node = node
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._last_counts: Counter[str] = Counter()
        self._values: dict[str, str] = {}
        self._last_error = ""
        self._last_error_wall_s = 0.0
        self._last_publish_wall_s = time.monotonic()
        # A plain publisher, not a lifecycle one: status must be visible while the node is inactive too.
        self._sources: list = []
        self._health_fn = None
        self._pub = node.create_publisher(DiagnosticArray, names.DIAGNOSTICS, QoSProfile(depth=10))
        # Steady clock: status must keep coming when /clock stalls (a paused or finished replay).
        self._timer = node.create_timer(period_s, self.publish, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def set(self, key: str, value) -> None:
        with self._lock:
            self._values[key] = value if isinstance(value, str) else f"{value:.4g}" if isinstance(value, float) else str(value)

    def add_source(self, values_fn) -> None:
        """Register ``values_fn() -> dict[str, value]``, read at every publish (e.g. filter counters)."""
        self._sources.append(values_fn)

    def set_health(self, health_fn) -> None:
        """Register ``health_fn() -> (DiagnosticStatus level, message) | None``, the node's own verdict
        (e.g. the filter lost: ERROR), read at every publish; the worse of it and the drop-based level wins."""
        self._health_fn = health_fn

    def drop(self, reason: str, error: Exception | str) -> None:
        """Count a dropped input under ``dropped_<reason>`` and keep its error for diagnostics."""
        text = f"{reason}: {error}"
        with self._lock:
            self._counts[f"dropped_{reason}"] += 1
            self._last_error = text
            self._last_error_wall_s = time.monotonic()
        self._node.get_logger().warning(text, throttle_duration_sec=5.0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def publish(self) -> None:
        # A failing source or health function is reported, never raised: an exception escaping this timer
        # would stop the node's executor (seen: a race in a source killed inference_node mid-replay).
        for values_fn in self._sources:
            try:
                values = values_fn()
            except Exception as exc:  # noqa: BLE001
                self.drop("diagnostics_source_error", f"{type(exc).__name__}: {exc}")
                continue
            for key, value in values.items():
                self.set(key, value)
        try:
            health = self._health_fn() if self._health_fn is not None else None
        except Exception as exc:  # noqa: BLE001
            self.drop("diagnostics_health_error", f"{type(exc).__name__}: {exc}")
            health = None
        now = time.monotonic()
        with self._lock:
            dt = max(now - self._last_publish_wall_s, 1e-3)
            rates = {k: (v - self._last_counts[k]) / dt for k, v in self._counts.items()}
            drops_now = sum(self._counts[k] - self._last_counts[k] for k in self._counts if k.startswith("dropped_"))
            self._last_counts = Counter(self._counts)
            self._last_publish_wall_s = now
            status = DiagnosticStatus(name=f"gps_denied_nav: {self._node.get_name()}",
                                      hardware_id=self._node.get_fully_qualified_name())
            recent_error = self._last_error and now - self._last_error_wall_s < 5.0
            status.level = DiagnosticStatus.WARN if (drops_now or recent_error) else DiagnosticStatus.OK
            status.message = self._last_error if recent_error else "ok"
            if health is not None and health[0] >= status.level:  # single bytes, OK < WARN < ERROR
                status.level, status.message = health
            status.values = [KeyValue(key=k, value=str(v)) for k, v in sorted(self._counts.items())]
            status.values += [KeyValue(key=f"{k}_rate_hz", value=f"{r:.2f}") for k, r in sorted(rates.items())]
            status.values += [KeyValue(key=k, value=v) for k, v in sorted(self._values.items())]
            status.values.append(KeyValue(key="last_error", value=self._last_error))
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(msg)

    def destroy(self) -> None:
        self._node.destroy_timer(self._timer)
        self._node.destroy_publisher(self._pub)
