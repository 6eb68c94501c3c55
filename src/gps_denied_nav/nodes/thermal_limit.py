"""The telemetry node's thermal frame-rate limit, as the inference node and the filter follow it.

``telemetry_node`` publishes (latched) the processed frame rate the SoC can afford; the inference node sheds
frames beyond it. Visual fixes then come at most that often, so the filter states the interval it must now
expect between them on /diagnostics (``min_fix_interval_s``, 1 / limit; ``core.thermal.expected_fix_interval_s``
adds the camera rate and the fix yield) and warns, counted, when it exceeds ``reinit_max_chord_s``: a lost
filter re-localises only from two strong fixes at most that far apart, so a hotter SoC could not recover.
"""
from __future__ import annotations

import math

from std_msgs.msg import Float32

from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.qos import latched_qos


class ThermalLimitFollower:
    """The latest valid limit (``frame_rate_limit_hz``, inf until one arrives); ``reinit_max_chord_s``: the
    filter's chord, warned about when the limit spaces fixes further apart (None: no such check)."""

    def __init__(self, node, reinit_max_chord_s: float | None = None):
        self.node, self.reinit_max_chord_s = node, reinit_max_chord_s
        self.frame_rate_limit_hz, self.min_fix_interval_s = math.inf, 0.0  # no telemetry node: no limit
        node.subscribe(Float32, names.THERMAL_RATE_LIMIT, self._on_limit, qos=latched_qos())

    def _on_limit(self, msg: Float32) -> None:
        status = self.node.status
        if not (math.isfinite(msg.data) and msg.data > 0.0):
            status.drop("bad_frame_rate_limit", f"{msg.data} Hz")
            return
        self.frame_rate_limit_hz, self.min_fix_interval_s = float(msg.data), 1.0 / float(msg.data)
        status.set("thermal_frame_rate_limit_hz", self.frame_rate_limit_hz)
        status.set("min_fix_interval_s", self.min_fix_interval_s)
        if self.reinit_max_chord_s is not None and self.min_fix_interval_s > self.reinit_max_chord_s:
            status.count("thermal_limit_beyond_reinit_chord")
            self.node.get_logger().warning(
                f"thermal limit {self.frame_rate_limit_hz:.2f} Hz: visual fixes at least {self.min_fix_interval_s:.1f} s "
                f"apart, more than reinit_max_chord_s {self.reinit_max_chord_s:.1f} s: a lost filter could not "
                "re-localise (raise telemetry_node's min_frame_rate_hz or this chord)")
