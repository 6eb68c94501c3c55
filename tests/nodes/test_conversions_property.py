"""Property tests of the message decoders: any input gives either the right value or a ValueError, never another
exception (a node counts and drops on ValueError; anything else would escape its callback)."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import CameraInfo, Image

from gps_denied_nav.nodes.conversions import camera_info_to_intrinsics, image_to_rgb, s_to_stamp, stamp_to_s

SETTINGS = settings(max_examples=200, deadline=None)
UINT32 = st.integers(0, 2**32 - 1)


@st.composite
def images(draw) -> Image:
    """A well-formed small image, in half the draws with one of encoding, size, step or data length broken."""
    encoding = draw(st.sampled_from(["rgb8", "bgr8", "mono8"]))
    height, width, pad = draw(st.integers(1, 12)), draw(st.integers(1, 12)), draw(st.integers(0, 8))
    step = width * {"rgb8": 3, "bgr8": 3, "mono8": 1}[encoding] + pad
    length = step * height
    broken = draw(st.sampled_from(["nothing"] * 5 + ["encoding", "height", "width", "step", "length"]))
    if broken == "encoding":
        encoding = draw(st.sampled_from(["rgba8", "yuv422", "16UC1", "RGB8", ""]) | st.text(max_size=8))
    elif broken in ("height", "width", "step"):
        value = draw(st.integers(0, 16) | UINT32)
        height, width, step = [value if broken == name else old for name, old in
                               (("height", height), ("width", width), ("step", step))]
    elif broken == "length":
        length = draw(st.integers(0, 600))
    data = draw(st.binary(min_size=length, max_size=length))
    return Image(height=height, width=width, encoding=encoding, step=step, data=data)


@SETTINGS
@given(msg=images())
def test_image_to_rgb_decodes_or_refuses(msg):
    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1}.get(msg.encoding)
    valid = (channels is not None and msg.height > 0 and msg.width > 0 and msg.step >= msg.width * channels
             and len(msg.data) == msg.step * msg.height)
    if not valid:
        with pytest.raises(ValueError):
            image_to_rgb(msg)
        return
    rgb = image_to_rgb(msg)
    data = bytes(msg.data)
    rows = [np.frombuffer(data[r * msg.step: r * msg.step + msg.width * channels], np.uint8) for r in range(msg.height)]
    pixels = np.stack(rows).reshape(msg.height, msg.width, channels)
    expected = {"rgb8": pixels, "bgr8": pixels[:, :, ::-1], "mono8": np.repeat(pixels, 3, axis=2)}[msg.encoding]
    assert rgb.dtype == np.uint8 and rgb.shape == (msg.height, msg.width, 3)
    np.testing.assert_array_equal(rgb, expected)


ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def camera_infos(draw) -> CameraInfo:
    """A plausible camera, in half the draws with one or two of its numbers replaced by anything."""
    width = draw(st.integers(1, 4000))
    height = max(1, round(width * draw(st.floats(0.25, 4.0))))
    fx = 0.5 * width / math.tan(math.radians(0.5 * draw(st.floats(1.5, 178.0))))
    fy = fx * draw(st.floats(0.55, 1.8))
    cx, cy = draw(st.floats(-0.09 * width, 1.09 * width)), draw(st.floats(-0.09 * height, 1.09 * height))
    k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    d = draw(st.sampled_from([0, 4, 5, 8, 12, 14]).flatmap(lambda n: st.lists(st.floats(-1.0, 1.0),
                                                                               min_size=n, max_size=n)))
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        target = draw(st.sampled_from(["width", "height", "k", "k", "k", "d", "d_length"]))
        if target == "width":
            width = draw(st.integers(0, 30000) | UINT32)
        elif target == "height":
            height = draw(st.integers(0, 30000) | UINT32)
        elif target == "k":
            k[draw(st.integers(0, 8))] = draw(ANY_FLOAT | st.floats(-1e-8, 1e-8) | st.floats(-1e5, 1e5))
        elif target == "d" and d:
            d[draw(st.integers(0, len(d) - 1))] = draw(ANY_FLOAT | st.floats(-150.0, 150.0))
        else:
            d = draw(st.lists(st.floats(-1.0, 1.0), max_size=16))
    return CameraInfo(width=width, height=height, k=k, d=d)


def _plausible(msg: CameraInfo) -> bool:
    """The documented bounds, computed independently of core.camera (fields of view from atan)."""
    w, h = msg.width, msg.height
    k = [float(v) for v in msg.k]
    fx, skew, cx, skew_t, fy, cy = k[:6]
    if not (1 <= w <= 20000 and 1 <= h <= 20000 and all(math.isfinite(v) for v in k)):
        return False
    last_row_ok = max(abs(k[6]), abs(k[7]), abs(k[8] - 1.0)) <= 1e-9
    if not (last_row_ok and max(abs(skew), abs(skew_t)) <= 1e-6 * abs(fx) and fx > 0 and fy > 0):
        return False
    fov_deg = [2.0 * math.degrees(math.atan(0.5 * side / f)) for side, f in ((w, fx), (h, fy))]
    return (all(1.0 <= a <= 179.0 for a in fov_deg) and 0.5 <= fx / fy <= 2.0
            and -0.5 - 0.1 * w <= cx <= w - 0.5 + 0.1 * w and -0.5 - 0.1 * h <= cy <= h - 0.5 + 0.1 * h
            and len(msg.d) in (0, 4, 5, 8, 12, 14) and all(abs(v) <= 100.0 for v in msg.d))


@SETTINGS
@given(msg=camera_infos())
def test_camera_info_gives_plausible_intrinsics_or_value_error(msg):
    if not _plausible(msg):
        with pytest.raises(ValueError, match="camera_info refused"):
            camera_info_to_intrinsics(msg)
        return
    cam = camera_info_to_intrinsics(msg)
    assert (cam.fx_px, cam.fy_px, cam.cx_px, cam.cy_px) == (msg.k[0], msg.k[4], msg.k[2], msg.k[5])
    assert (cam.width_px, cam.height_px, cam.distortion) == (msg.width, msg.height, tuple(msg.d))


@SETTINGS
@given(t_s=st.floats(0.0, 2**31, exclude_max=True))
def test_stamp_round_trip_within_a_nanosecond(t_s):
    stamp = s_to_stamp(t_s)
    assert stamp.sec >= 0 and 0 <= stamp.nanosec <= 999_999_999
    # The stamp itself is within 1 ns of t_s (exact arithmetic: Fraction holds the float's exact value).
    assert abs(Fraction(stamp.sec) + Fraction(stamp.nanosec, 10**9) - Fraction(t_s)) <= Fraction(1, 10**9)
    # Back in float seconds only the double's own resolution (0.24 us near 2e9 s) is lost on top.
    assert abs(stamp_to_s(stamp) - t_s) <= 1e-9 + math.ulp(t_s)


@SETTINGS
@given(t_s=st.floats(2**31, 4e9) | st.floats(-4e9, -2**31, exclude_max=True) | st.sampled_from([math.nan, math.inf]))
def test_stamps_beyond_int32_seconds_are_refused(t_s):
    with pytest.raises(ValueError, match="int32 seconds"):
        s_to_stamp(t_s)
