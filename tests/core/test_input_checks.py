"""Plausibility checks of the filter's inputs, the IMU stamp guard, GNSS consistency and re-localisation."""
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gps_denied_nav.core.eskf_relocalize import Relocalizer, StrongFix
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.input_checks import (ConsistentFixes, StampGuard, covariance_problem, geodetic_problem,
                                              imu_problem)


def test_imu_range_and_geodetic_bounds():
    assert imu_problem([0, 0, 9.8], [0, 0, 0.1], 157.0, 35.0) is None
    assert imu_problem([1e12, 0, 9.8], [0, 0, 0], 157.0, 35.0) == "imu_accel_out_of_range"
    assert imu_problem([0, 0, 9.8], [0, -1e12, 0], 157.0, 35.0) == "imu_gyro_out_of_range"
    assert imu_problem([0, math.inf, 9.8], [0, 0, 0], 157.0, 35.0) == "imu_not_finite"
    assert geodetic_problem(60.4, 22.3, 40.0) is None
    assert geodetic_problem(200.0, 22.3, 40.0) == "latlon_out_of_range"
    assert geodetic_problem(60.4, 22.3, 1e7) == "altitude_out_of_range"
    assert covariance_problem(np.eye(3), 1e4) is None
    assert covariance_problem(np.diag([1.0, 1.0, -1.0]), 1e4) == "covariance_not_positive_definite"
    assert covariance_problem(np.eye(3) * 1e-300, 1e4) == "covariance_implausible"


def test_one_wild_stamp_is_refused_and_a_real_clock_jump_is_followed():
    guard = StampGuard(max_step_s=3.0, reanchor_samples=5)
    verdicts = [guard.check(t) for t in (0.0, 0.005, 7200.0, 0.010, 0.008, 0.015)]
    assert verdicts == ["ok", "ok", "stamp_jump", "ok", "stamp_backwards", "ok"]
    # The clock really jumps: five samples in a row on the new time base re-anchor the stream.
    verdicts = [guard.check(500.0 + 0.005 * i) for i in range(6)]
    assert verdicts == ["stamp_jump"] * 4 + ["reanchored", "ok"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=60))
def test_the_stamp_guard_only_ever_accepts_increasing_bounded_steps(stamps):
    guard = StampGuard(max_step_s=3.0, reanchor_samples=4)
    accepted = [t for t in stamps if guard.check(t) == "ok"]
    steps = np.diff(accepted)
    assert np.all(steps > 0.0) and np.all(steps <= 3.0)
    assert all(math.isfinite(t) for t in accepted)


def test_gnss_origin_needs_consistent_fixes():
    frame = LocalTangentPlane(60.4, 22.3, 30.0)
    run = ConsistentFixes(required=3, max_speed_mps=100.0)
    track = [(t, *frame.to_geodetic([15.0 * t, 0.0, 100.0])) for t in (0.0, 1.0, 2.0)]
    assert run.add(*track[0], 3.0) is False and not run.trusted
    assert run.add(*track[1], 3.0) and not run.trusted
    wild = frame.to_geodetic([5000.0, 0.0, 100.0])        # finite, plausible numbers, impossible step
    assert run.add(1.5, *wild, 3.0) is False and len(run.run) == 1
    assert run.add(*track[2], 3.0) is False               # disagrees with the wild one: restarts again
    for t in (3.0, 4.0):
        run.add(t, *frame.to_geodetic([15.0 * t, 0.0, 100.0]), 3.0)
    assert run.trusted and abs(run.run[0].stamp_s - 2.0) < 1e-9


def test_relocalizer_measures_velocity_from_two_strong_fixes():
    reloc = Relocalizer()
    cov = np.eye(3) * 0.25
    assert reloc.offer(StrongFix(10.0, np.array([0.0, 0.0, 100.0]), cov, 0.0, 1e-3)) is None
    result = reloc.offer(StrongFix(10.5, np.array([10.0, 0.0, 100.0]), cov, 0.0, 1e-3))
    np.testing.assert_allclose(result.vel_enu_mps, [20.0, 0.0, 0.0], atol=1e-9)
    assert 0.3 <= result.vel_sigma_mps < 2.0
    # A pair faster than any UAV (or turning too much) restarts the pair instead.
    assert reloc.offer(StrongFix(20.0, np.array([0.0, 0.0, 100.0]), cov, 0.0, 1e-3)) is None
    assert reloc.offer(StrongFix(20.5, np.array([900.0, 0.0, 100.0]), cov, 0.0, 1e-3)) is None
    # Turning: the chord (mid-chord velocity) is turned forward by half the heading change.
    reloc.clear()
    reloc.offer(StrongFix(30.0, np.array([0.0, 0.0, 100.0]), cov, 0.0, 1e-3))
    turned = reloc.offer(StrongFix(31.0, np.array([20.0, 0.0, 100.0]), cov, 0.2, 1e-3))
    assert abs(math.atan2(turned.vel_enu_mps[1], turned.vel_enu_mps[0]) - 0.1) < 1e-9


def test_a_real_gap_is_confirmed_and_a_glitch_ahead_costs_one_sample():
    guard = StampGuard(max_step_s=3.0, reanchor_samples=20, hold_step_s=0.1, confirm_samples=2)
    stream = [0.005 * i for i in range(10)]
    assert [guard.check(t) for t in stream] == ["ok"] * 10
    # One sample 2 s ahead (within the history): refused, and the stream goes on undisturbed.
    assert guard.check(2.05) == "stamp_jump"
    assert [guard.check(0.05 + 0.005 * i) for i in range(5)] == ["ok"] * 5
    # A real 2 s gap: the first two samples after it confirm it, then the stream continues from there.
    assert [guard.check(2.1 + 0.005 * i) for i in range(4)] == ["stamp_jump", "stamp_jump", "ok", "ok"]


def test_recurring_glitches_never_take_the_clock():
    """A +7200 s stamp every 5th sample (found by the fuzz benchmark: the old guard re-anchored 34 times)."""
    guard = StampGuard(max_step_s=3.0, reanchor_samples=20)
    verdicts = [guard.check(7200.0 + 0.01 * i if i % 5 == 4 else 0.01 * i) for i in range(2000)]
    assert verdicts.count("reanchored") == 0 and verdicts.count("stamp_jump") == 400
    assert verdicts.count("ok") == 1600
