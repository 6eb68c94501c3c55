"""REP-105 transform math: map -> odom from the fused pose and an odometry source's odom -> base_link."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gps_denied_nav.core.frames import Pose3, map_to_odom
from gps_denied_nav.core.rotations import quat_from_euler

angles = st.floats(-np.pi, np.pi)
coords = st.floats(-1e4, 1e4)


def _pose(x, y, z, roll, pitch, yaw) -> Pose3:
    return Pose3.of([x, y, z], quat_from_euler(roll, pitch, yaw))


@settings(max_examples=60, deadline=None)
@given(*(coords,) * 3, *(angles,) * 3, *(coords,) * 3, *(angles,) * 3)
def test_map_odom_then_odom_base_gives_back_the_fused_pose(x, y, z, r, p, w, x2, y2, z2, r2, p2, w2):
    map_base, odom_base = _pose(x, y, z, r, p, w), _pose(x2, y2, z2, r2, p2, w2)
    chained = map_to_odom(map_base, odom_base).compose(odom_base)
    assert np.allclose(chained.t_m, map_base.t_m, atol=1e-6)
    assert abs(abs(float(np.dot(chained.q_wxyz, map_base.q_wxyz))) - 1.0) < 1e-9


def test_a_pure_odometry_drift_shows_up_in_map_to_odom_only():
    """The odometry source drifted 5 m east and 10 deg in yaw: map -> odom takes the drift back out."""
    truth = _pose(100.0, 50.0, 120.0, 0.0, 0.0, 0.3)
    drift = _pose(5.0, 0.0, 0.0, 0.0, 0.0, np.radians(10.0))
    odom_base = drift.inverse().compose(truth)  # what a drifting odometry reports
    correction = map_to_odom(truth, odom_base)
    assert np.allclose(correction.t_m, drift.t_m, atol=1e-9)
    assert np.allclose(np.abs(correction.q_wxyz), np.abs(drift.q_wxyz), atol=1e-9)


def test_inverse_and_apply():
    pose = _pose(1.0, 2.0, 3.0, 0.1, -0.2, 1.0)
    point = np.array([4.0, -5.0, 6.0])
    assert np.allclose(pose.inverse().apply(pose.apply(point)), point)
