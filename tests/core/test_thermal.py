"""The thermal governor (rate against temperature, hysteresis, bounds), telemetry parsing from jtop's
structures, the file source, and jtop absent: TelemetryUnavailable with the reason, never a crash."""
from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

from gps_denied_nav.core.thermal import (FileSource, GovernorConfig, JtopSource, TelemetrySample, TelemetryUnavailable,
                                         ThermalGovernor, diagnostic_values, expected_fix_interval_s, sample_from_jtop)

CONFIG = GovernorConfig(thermal_limit_c=95.0, margin_c=10.0, hysteresis_c=3.0, max_frame_rate_hz=5.0,
                        min_frame_rate_hz=0.5)


def test_rate_falls_monotonically_as_the_temperature_rises_and_never_below_min():
    governor = ThermalGovernor(CONFIG)
    temps_c = np.arange(40.0, 120.0, 0.5)
    rates = [governor.update(t) for t in temps_c]
    assert all(b <= a for a, b in zip(rates, rates[1:]))
    assert rates[0] == 5.0 and min(rates) == 0.5
    assert rates[int(np.searchsorted(temps_c, 85.0))] == 5.0  # nothing taken before the margin
    assert rates[int(np.searchsorted(temps_c, 90.0))] == pytest.approx(2.75)  # halfway: linear
    assert rates[int(np.searchsorted(temps_c, 95.0))] == 0.5  # at the limit, below the SoC's own trip


def test_hysteresis_holds_the_rate_until_a_real_drop_and_ignores_wobble():
    governor = ThermalGovernor(CONFIG)
    hot = governor.update(92.0)
    for wobble_c in (91.0, 92.0, 90.5, 91.8, 89.5):  # within 3 °C of the peak: no change
        assert governor.update(wobble_c) == hot
    cooler = governor.update(88.0)  # 4 °C below the peak: rises, as for 91 °C (the reading plus hysteresis)
    assert cooler > hot and cooler == pytest.approx(ThermalGovernor(CONFIG).update(91.0))
    assert governor.update(90.0) == cooler  # warming inside the band: no change either
    assert governor.update(91.5) < cooler  # past the band: lowered at once


def test_rate_is_restored_when_cool_and_held_without_a_reading():
    governor = ThermalGovernor(CONFIG)
    assert governor.update(100.0) == 0.5
    assert governor.update(None) == 0.5 and governor.update(float("nan")) == 0.5  # telemetry lost: keep it
    assert governor.update(83.0) == 5.0 - 4.5 * 0.1  # 83 + 3 °C hysteresis = 86 °C effective
    assert governor.update(60.0) == 5.0


@pytest.mark.parametrize("bad", [dict(min_frame_rate_hz=0.0), dict(min_frame_rate_hz=6.0), dict(margin_c=0.0),
                                 dict(hysteresis_c=10.0), dict(hysteresis_c=-1.0), dict(thermal_limit_c=float("nan"))])
def test_bad_configurations_are_refused(bad):
    with pytest.raises(ValueError):
        ThermalGovernor(GovernorConfig(**{**CONFIG.__dict__, **bad}))


def test_expected_fix_interval_follows_the_allowed_rate():
    assert expected_fix_interval_s(5.0, camera_rate_hz=2.0) == 0.5  # the camera is the limit
    assert expected_fix_interval_s(0.5, camera_rate_hz=2.0) == 2.0  # the governor is the limit
    assert expected_fix_interval_s(5.0, camera_rate_hz=10.0, frame_stride=4) == 0.4
    assert expected_fix_interval_s(1.0, camera_rate_hz=2.0, fix_yield=0.5) == 2.0
    assert expected_fix_interval_s(CONFIG.min_frame_rate_hz, 2.0, fix_yield=0.97) < 3.0  # eskf reinit_max_chord_s
    with pytest.raises(ValueError):
        expected_fix_interval_s(0.0, 2.0)


def _fake_jetson():
    """The structures jtop 4.x exposes (jetson-stats' jtop.temperature, .cpu, .gpu, .memory, .power)."""
    return types.SimpleNamespace(
        temperature={"cpu": {"online": True, "temp": 61.5}, "gpu": {"online": True, "temp": 63.25},
                     "tj": {"online": True, "temp": 64.0}, "cv0": {"online": False, "temp": -256.0},
                     "soc0": {"online": True, "temp": -256.0}},
        cpu={"total": {}, "cpu": [{"online": True, "freq": {"cur": 1728000}}, {"online": False, "freq": {"cur": 0}}]},
        gpu={"gpu": {"status": {"load": 42.0}, "freq": {"cur": 918000, "max": 1300500}}},
        memory={"EMC": {"cur": 3199000, "online": True}},
        power={"rail": {"VDD_GPU_SOC": {"online": True, "power": 5123}, "VDD_CPU_CV": {"online": True, "power": 1000}},
               "tot": {"power": 12345}})


def test_sample_from_jtop_structures_with_units():
    sample = sample_from_jtop(_fake_jetson())
    assert sample.temperatures_c == {"cpu": 61.5, "gpu": 63.25, "tj": 64.0}  # offline and -256 °C left out
    assert sample.hottest() == ("tj", 64.0)
    assert sample.cpu_freq_mhz == (1728.0,) and sample.gpu_freq_mhz == 918.0 and sample.emc_freq_mhz == 3199.0
    assert sample.gpu_load_percent == 42.0 and sample.power_total_w == pytest.approx(12.345)
    values = diagnostic_values(sample)
    assert values["temp_tj_c"] == "64.0" and values["power_vdd_gpu_soc_w"] == "5.12" and values["emc_freq_mhz"] == "3199"
    assert all(k.endswith(("_c", "_mhz", "_w", "_percent")) for k in values)


def test_jtop_absent_is_unavailable_with_the_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "jtop", None)  # import jtop -> ImportError, as where it is not installed
    source = JtopSource()
    with pytest.raises(TelemetryUnavailable, match="jetson-stats \\(jtop\\) is not installed"):
        source.open()
    with pytest.raises(TelemetryUnavailable, match="not open"):
        source.read()
    source.close()


def _fake_jtop_module(start_error=None, ok_error=None):
    class JtopException(Exception):
        pass

    class jtop:  # noqa: N801 - the real class is lowercase
        def __init__(self, interval=0.5):
            self.closed = False

        def start(self):
            if start_error:
                raise JtopException(start_error)

        def ok(self, spin=False):
            assert spin, "a poll must never block the executor"
            if ok_error:
                raise JtopException(ok_error)
            return not self.closed

        def close(self):
            self.closed = True

    fake = _fake_jetson()
    for name in ("temperature", "cpu", "gpu", "memory", "power"):
        setattr(jtop, name, getattr(fake, name))
    return types.SimpleNamespace(jtop=jtop, JtopException=JtopException)


def test_jtop_service_missing_or_lost_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "jtop", _fake_jtop_module(start_error="The jetson_stats.service is not active"))
    with pytest.raises(TelemetryUnavailable, match="service is not active"):
        JtopSource().open()
    monkeypatch.setitem(sys.modules, "jtop", _fake_jtop_module(ok_error="Lost connection with jtop server"))
    source = JtopSource()
    source.open()
    with pytest.raises(TelemetryUnavailable, match="Lost connection"):
        source.read()


def test_jtop_source_reads_without_blocking(monkeypatch):
    monkeypatch.setitem(sys.modules, "jtop", _fake_jtop_module())
    source = JtopSource()
    source.open()
    assert source.read().hottest() == ("tj", 64.0)
    source.close()


def test_file_source(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"temperatures_c": {"gpu": 70.0}, "cpu_freq_mhz": [1000, 1100]}))
    assert FileSource(path).read() == TelemetrySample({"gpu": 70.0}, cpu_freq_mhz=(1000, 1100))
    path.write_text(json.dumps({"unavailable": "no Jetson here"}))
    with pytest.raises(TelemetryUnavailable, match="no Jetson here"):
        FileSource(path).open()
    path.write_text(json.dumps({"temperature": 3}))
    with pytest.raises(TelemetryUnavailable):
        FileSource(path).read()
    with pytest.raises(TelemetryUnavailable):
        FileSource(tmp_path / "absent.json").read()
