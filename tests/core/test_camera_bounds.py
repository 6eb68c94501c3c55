"""CameraIntrinsics refuses intrinsics that no real camera has, naming the field and the value (no ROS here)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gps_denied_nav.core.camera import CameraIntrinsics, focal_range_px

K_640 = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])


def _with(K=K_640, width_px=640, height_px=480, distortion=(0.1, -0.05, 0.0, 0.0, 0.01), **entries):
    K = K.copy()
    for (row, col), value in entries.get("k", {}).items():
        K[row, col] = value
    return CameraIntrinsics.from_K(K, width_px, height_px, distortion)


def test_a_real_camera_passes():
    cam = _with()
    assert (cam.fx_px, cam.cy_px, cam.distortion[0]) == (500.0, 239.5, 0.1)
    assert CameraIntrinsics.from_hfov(640, 480, 60.0).validate().width_px == 640
    lo, hi = focal_range_px(640)  # 1 deg and 179 deg across 640 px
    assert lo == pytest.approx(320 / math.tan(math.radians(89.5)))
    assert hi == pytest.approx(320 / math.tan(math.radians(0.5)))


@pytest.mark.parametrize("change, message", [
    (dict(width_px=0), "width_px 0 outside 1..20000"),
    (dict(height_px=20001), "height_px 20001 outside"),
    (dict(k={(0, 0): 1e-300}), "fx_px 1e-300 outside"),
    (dict(k={(0, 0): -500.0}), "fx_px -500.0 outside"),
    (dict(k={(1, 1): 1e6}), "fy_px 1000000.0 outside"),
    (dict(k={(0, 0): math.nan}), "finite 3x3"),
    (dict(k={(1, 1): 200.0}), "fx_px / fy_px = 2.5"),
    (dict(k={(0, 2): 900.0}), "cx_px 900.0 lies off the 640 px image"),
    (dict(k={(1, 2): -60.0}), "cy_px -60.0 lies off"),
    (dict(k={(0, 1): 2.0}), "skew"),
    (dict(k={(2, 0): 0.001}), "last row"),
    (dict(k={(2, 2): 0.0}), "last row"),
    (dict(distortion=(0.1, 0.2, 0.3)), "3 distortion coefficients"),
    (dict(distortion=(0.1, 0.0, 0.0, 0.0, math.nan)), "coefficient 4 is nan"),
    (dict(distortion=(0.1, 0.0, 0.0, math.inf)), "coefficient 3 is inf"),
    (dict(distortion=(1e3, 0.0, 0.0, 0.0, 0.0)), "coefficient 0 is 1000.0"),
])
def test_implausible_intrinsics_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        _with(**change)
