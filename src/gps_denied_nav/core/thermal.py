"""Thermal telemetry and the frame-rate governor that keeps the SoC below its own throttling point.

A Jetson that reaches its software throttle trip (about 99 °C on an Orin's CPU/GPU zones; read
``/sys/class/thermal/thermal_zone*/trip_point_*_temp`` on the unit) drops every clock at once: the
descriptor, the matcher and the filter's IMU callbacks all slow down together, unannounced. Shedding
camera frames earlier costs only fix rate, which the filter accounts for. So ``ThermalGovernor`` lowers the
allowed processed frame rate linearly from ``max_frame_rate_hz`` at ``thermal_limit_c - margin_c`` to
``min_frame_rate_hz`` at ``thermal_limit_c`` (set below the trip), with hysteresis so it does not chatter.

Telemetry comes from a ``TelemetrySource``: ``JtopSource`` (jetson-stats' ``jtop`` client, imported when
opened) on the aircraft, ``FileSource`` (a JSON file) for tests and bench runs. A source that cannot be had
raises ``TelemetryUnavailable`` with the reason; nothing here crashes for a missing Jetson.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class TelemetryUnavailable(RuntimeError):
    """No telemetry here (jtop missing, its service down, not a Jetson, a bad file); the message says why."""


@dataclass(frozen=True)
class TelemetrySample:
    """One reading. Temperatures of the online thermal zones; clocks and power as the board reports them."""

    temperatures_c: dict[str, float]  # zone name (cpu, gpu, soc0, tj, ...) -> °C
    cpu_freq_mhz: tuple[float, ...] = ()  # per online core
    gpu_freq_mhz: float | None = None
    emc_freq_mhz: float | None = None  # external memory controller
    gpu_load_percent: float | None = None
    power_total_w: float | None = None
    power_rails_w: dict[str, float] = field(default_factory=dict)

    def hottest(self) -> tuple[str, float] | None:
        """(zone, °C) of the hottest finite reading; None when there is none."""
        finite = [(t, name) for name, t in self.temperatures_c.items() if math.isfinite(t)]
        return None if not finite else (max(finite)[1], max(finite)[0])


class TelemetrySource(Protocol):
    def open(self) -> None: ...  # TelemetryUnavailable when there is nothing to read
    def read(self) -> TelemetrySample: ...  # TelemetryUnavailable when the source went away
    def close(self) -> None: ...


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_") or "unnamed"


def diagnostic_values(sample: TelemetrySample) -> dict[str, str]:
    """Key/values for a DiagnosticStatus, units in the key names (``temp_gpu_c``, ``gpu_freq_mhz``, ...)."""
    values = {f"temp_{_key(name)}_c": f"{t:.1f}" for name, t in sorted(sample.temperatures_c.items())}
    values.update({f"cpu{i}_freq_mhz": f"{f:.0f}" for i, f in enumerate(sample.cpu_freq_mhz)})
    for name, value, fmt in (("gpu_freq_mhz", sample.gpu_freq_mhz, "{:.0f}"), ("emc_freq_mhz", sample.emc_freq_mhz, "{:.0f}"),
                             ("gpu_load_percent", sample.gpu_load_percent, "{:.1f}"),
                             ("power_total_w", sample.power_total_w, "{:.2f}")):
        if value is not None:
            values[name] = fmt.format(value)
    values.update({f"power_{_key(rail)}_w": f"{w:.2f}" for rail, w in sorted(sample.power_rails_w.items())})
    return values


# --- sources ----------------------------------------------------------------------------------------------

def _khz_to_mhz(value) -> float | None:
    return None if value is None else float(value) / 1000.0


def sample_from_jtop(jetson) -> TelemetrySample:
    """A TelemetrySample from a started ``jtop`` client (jetson-stats 4.x and later): ``temperature`` {zone:
    {temp °C, online}}, ``cpu['cpu']`` [{online, freq: {cur kHz}}], ``gpu`` {name: {status: {load %}, freq: {cur
    kHz}}}, ``memory['EMC']`` {cur kHz}, ``power`` {rail: {name: {power mW}}, tot: {power mW}}. Absent sensors
    (offline, or -256 °C) are left out rather than read as values."""
    temps = {name: float(zone["temp"]) for name, zone in (jetson.temperature or {}).items()
             if isinstance(zone, dict) and zone.get("online", True) and float(zone.get("temp", -256)) > -100}
    cpu = (jetson.cpu or {}).get("cpu", [])
    cpu_mhz = tuple(_khz_to_mhz(core["freq"]["cur"]) for core in cpu
                    if core.get("online", True) and core.get("freq", {}).get("cur") is not None)
    gpus = [g for g in (jetson.gpu or {}).values() if isinstance(g, dict)]
    gpu = gpus[0] if gpus else {}
    emc = (getattr(jetson, "memory", None) or {}).get("EMC", {})
    power = jetson.power or {}
    rails = {name: float(rail["power"]) / 1000.0 for name, rail in power.get("rail", {}).items()
             if rail.get("online", True) and rail.get("power") is not None}
    total_mw = power.get("tot", {}).get("power")
    return TelemetrySample(temperatures_c=temps, cpu_freq_mhz=cpu_mhz,
                           gpu_freq_mhz=_khz_to_mhz(gpu.get("freq", {}).get("cur")),
                           emc_freq_mhz=_khz_to_mhz(emc.get("cur")),
                           gpu_load_percent=gpu.get("status", {}).get("load"),
                           power_total_w=None if total_mw is None else float(total_mw) / 1000.0, power_rails_w=rails)


class JtopSource:
    """jetson-stats' ``jtop`` client. It talks to the ``jtop.service`` of the host through ``/run/jtop.sock``
    (mount it into a container). ``read`` never blocks: ``ok(spin=True)`` surfaces a lost service."""

    def __init__(self, interval_s: float = 0.5):
        self.interval_s = interval_s
        self._jetson = None

    def open(self) -> None:
        try:
            from jtop import jtop, JtopException
        except ImportError as exc:
            raise TelemetryUnavailable(f"jetson-stats (jtop) is not installed ({exc}): no thermal telemetry; "
                                       "on a Jetson: pip install jetson-stats and run its service") from exc
        jetson = jtop(interval=self.interval_s)
        try:
            jetson.start()  # connects to the service and waits for its first reading
        except (JtopException, OSError) as exc:
            raise TelemetryUnavailable(f"jtop cannot reach the jetson-stats service (not a Jetson, or the service "
                                       f"or /run/jtop.sock is missing): {exc}") from exc
        self._jetson = jetson

    def read(self) -> TelemetrySample:
        if self._jetson is None:
            raise TelemetryUnavailable("jtop is not open")
        try:
            running = self._jetson.ok(spin=True)
        except Exception as exc:  # noqa: BLE001 - jtop re-raises whatever its reader thread caught
            raise TelemetryUnavailable(f"jtop lost the jetson-stats service: {exc}") from exc
        if not running:
            raise TelemetryUnavailable("jtop stopped (no reading from the jetson-stats service)")
        return sample_from_jtop(self._jetson)

    def close(self) -> None:
        jetson, self._jetson = self._jetson, None
        if jetson is not None:
            jetson.close()


class FileSource:
    """Readings from a JSON file, re-read at every ``read`` (tests, bench runs): ``{"temperatures_c": {...},
    "gpu_freq_mhz": ...}`` with TelemetrySample's field names, or ``{"unavailable": "reason"}``."""

    def __init__(self, path):
        self.path = Path(path)

    def open(self) -> None:
        self.read()

    def read(self) -> TelemetrySample:
        try:
            record = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise TelemetryUnavailable(f"{self.path}: {exc}") from exc
        if "unavailable" in record:
            raise TelemetryUnavailable(str(record["unavailable"]))
        record["cpu_freq_mhz"] = tuple(record.get("cpu_freq_mhz", ()))
        try:
            return TelemetrySample(**record)
        except TypeError as exc:
            raise TelemetryUnavailable(f"{self.path}: {exc}") from exc

    def close(self) -> None:
        pass


# --- the governor -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GovernorConfig:
    thermal_limit_c: float = 95.0  # min_frame_rate_hz from here up; keep it below the SoC's throttle trip
    margin_c: float = 10.0  # the rate starts falling this far below the limit
    hysteresis_c: float = 3.0  # a cooling SoC must fall this much before the rate rises again
    max_frame_rate_hz: float = 5.0  # allowed when cool (at or above the camera rate: no limit)
    min_frame_rate_hz: float = 0.5  # allowed at the limit; never lower (fixes must keep coming)

    def check(self) -> GovernorConfig:
        if not (0.0 < self.min_frame_rate_hz <= self.max_frame_rate_hz and math.isfinite(self.max_frame_rate_hz)):
            raise ValueError(f"need 0 < min_frame_rate_hz <= max_frame_rate_hz, got {self.min_frame_rate_hz} and "
                             f"{self.max_frame_rate_hz}")
        if not self.margin_c > 0.0 or not 0.0 <= self.hysteresis_c < self.margin_c:
            raise ValueError(f"need margin_c > 0 and 0 <= hysteresis_c < margin_c, got {self.margin_c} and "
                             f"{self.hysteresis_c}")
        if not math.isfinite(self.thermal_limit_c):
            raise ValueError(f"thermal_limit_c must be finite, got {self.thermal_limit_c}")
        return self


class ThermalGovernor:
    """Hottest temperature in, allowed processed frame rate out.

    The rate is a linear map of an effective temperature that follows a rising reading at once and a falling
    one only once it is ``hysteresis_c`` lower (a backlash): heating lowers the rate immediately, cooling
    raises it only after a real drop, and a reading that wobbles by a degree changes nothing. No reading
    (``None``: telemetry lost) keeps the last rate."""

    def __init__(self, config: GovernorConfig):
        self.config = config.check()
        self.effective_c = -math.inf
        self.rate_hz = config.max_frame_rate_hz

    def update(self, hottest_c: float | None) -> float:
        if hottest_c is None or not math.isfinite(hottest_c):
            return self.rate_hz
        if hottest_c > self.effective_c:
            self.effective_c = hottest_c
        elif hottest_c < self.effective_c - self.config.hysteresis_c:
            self.effective_c = hottest_c + self.config.hysteresis_c
        c = self.config
        start_c = c.thermal_limit_c - c.margin_c
        share = min(max((self.effective_c - start_c) / c.margin_c, 0.0), 1.0)  # 0 cool .. 1 at the limit
        self.rate_hz = c.max_frame_rate_hz - share * (c.max_frame_rate_hz - c.min_frame_rate_hz)
        return self.rate_hz


def expected_fix_interval_s(allowed_rate_hz: float, camera_rate_hz: float, frame_stride: int = 1,
                            fix_yield: float = 1.0) -> float:
    """Mean time between visual fixes reaching the filter when the inference node processes at most
    ``allowed_rate_hz``: frames are processed at min(camera_rate_hz / frame_stride, allowed_rate_hz) and a
    share ``fix_yield`` of them gives a fix (0.97 in the demo flight). The pipeline latency adds to every
    fix's age but not to this interval. Between fixes the filter's position covariance grows from the IMU
    alone, and a lost filter re-localises only from two strong fixes at most ``reinit_max_chord_s`` apart:
    keep this interval at ``min_frame_rate_hz`` below that (3 s by default), or a hot aircraft cannot recover."""
    if not (allowed_rate_hz > 0 and camera_rate_hz > 0 and frame_stride >= 1 and 0 < fix_yield <= 1):
        raise ValueError(f"need positive rates, frame_stride >= 1 and 0 < fix_yield <= 1, got {allowed_rate_hz}, "
                         f"{camera_rate_hz}, {frame_stride}, {fix_yield}")
    return 1.0 / (min(camera_rate_hz / frame_stride, allowed_rate_hz) * fix_yield)
