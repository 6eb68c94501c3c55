import numpy as np
import pytest

from gps_denied_nav.core.imu_gaps import ImuGapMonitor


def test_regular_stream_has_no_gaps_even_with_jitter():
    rng = np.random.default_rng(0)
    monitor = ImuGapMonitor()
    stamps = np.arange(2000) / 400.0 + rng.uniform(-2e-4, 2e-4, 2000)
    assert sum(monitor.add(t) for t in stamps) == 0
    assert monitor.gaps == 0 and monitor.period_s == pytest.approx(1 / 400.0, rel=0.02)


def test_lost_samples_are_counted_with_the_longest_gap():
    monitor = ImuGapMonitor()
    stamps = list(np.arange(100) / 200.0)
    del stamps[50:53]   # 3 lost
    del stamps[80:81]   # 1 lost (indices shifted by the first deletion)
    missing = [monitor.add(t) for t in stamps]
    assert monitor.gaps == 2 and monitor.samples_missing == 4 and sum(missing) == 4
    assert monitor.max_gap_s == pytest.approx(4 / 200.0)


def test_rate_change_is_followed():
    monitor = ImuGapMonitor()
    stamps = np.concatenate([np.arange(200) / 100.0, 2.0 + np.arange(1, 400) / 400.0])
    for t in stamps:
        monitor.add(t)
    assert monitor.gaps == 0 and monitor.period_s == pytest.approx(1 / 400.0)


def test_a_lasting_rate_drop_stops_counting_as_gaps():
    monitor = ImuGapMonitor(window=64)
    stamps = np.concatenate([np.arange(400) / 400.0, 1.0 + np.arange(1, 200) / 100.0])
    for t in stamps:
        monitor.add(t)
    assert 0 < monitor.gaps <= 32 + 8 and monitor.period_s == pytest.approx(1 / 100.0)
