"""The inference node's attitude lookup: how long it waits for the filter to reach a frame's exposure."""
from __future__ import annotations

import threading
import time

import numpy as np

from gps_denied_nav.nodes.attitude_buffer import PoseBuffer

Q_A, Q_B = np.array([1.0, 0.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0, 0.0])


def test_a_sample_within_the_lag_is_used_without_waiting():
    poses = PoseBuffer()
    poses.add(10.00, Q_A)
    t0 = time.monotonic()
    assert poses.lookup(10.03, tolerance_s=0.5, wait_s=2.0, lag_s=0.05) is Q_A
    assert time.monotonic() - t0 < 1.0  # not the 2 s wait


def test_without_lag_the_lookup_waits_for_the_filter_to_reach_the_frame():
    poses = PoseBuffer()
    poses.add(10.00, Q_A)
    threading.Timer(0.2, poses.add, (10.04, Q_B)).start()
    t0 = time.monotonic()
    assert poses.lookup(10.035, tolerance_s=0.5, wait_s=5.0) is Q_B  # the newer, nearer sample
    assert 0.1 < time.monotonic() - t0 < 4.0


def test_a_sample_beyond_the_lag_still_waits_then_settles_for_it():
    poses = PoseBuffer()
    poses.add(10.00, Q_A)
    t0 = time.monotonic()
    assert poses.lookup(10.2, tolerance_s=0.5, wait_s=0.3, lag_s=0.05) is Q_A  # waited 0.3 s, then the old one
    assert time.monotonic() - t0 >= 0.25
    assert poses.lookup(11.0, tolerance_s=0.5, wait_s=0.0, lag_s=0.05) is None  # beyond the tolerance
