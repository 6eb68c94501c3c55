"""Message <-> numpy conversions and their validation of malformed input."""
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image

from gps_denied_nav.nodes.conversions import (camera_info_to_intrinsics, image_to_rgb, rgb_to_image, s_to_stamp,
                                              stamp_to_s)


def test_stamp_round_trip():
    for t in (0.0, 1.5, 1_700_000_123.999999999, 42.000000001):
        assert stamp_to_s(s_to_stamp(t)) == pytest.approx(t, abs=2e-9)


def test_image_round_trip_and_encodings():
    rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    msg = rgb_to_image(rgb, s_to_stamp(1.0), "camera_optical")
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)
    msg.encoding, msg.data = "bgr8", rgb[:, :, ::-1].tobytes()
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)
    mono = Image(height=48, width=64, encoding="mono8", step=64, data=rgb[:, :, 0].tobytes())
    np.testing.assert_array_equal(image_to_rgb(mono)[:, :, 2], rgb[:, :, 0])


@pytest.mark.parametrize("mutate, message", [
    (lambda m: setattr(m, "encoding", "yuv422"), "unsupported image encoding"),
    (lambda m: (setattr(m, "height", 0), setattr(m, "data", b"")), "empty image"),
    (lambda m: setattr(m, "data", m.data[:-7]), "bytes, expected step"),
])
def test_malformed_images_raise_value_error(mutate, message):
    msg = rgb_to_image(np.zeros((8, 8, 3), np.uint8), s_to_stamp(0.0), "cam")
    mutate(msg)
    with pytest.raises(ValueError, match=message):
        image_to_rgb(msg)


def test_camera_info():
    info = CameraInfo(width=640, height=480, k=[500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0])
    cam = camera_info_to_intrinsics(info)
    assert (cam.fx_px, cam.cx_px, cam.width_px) == (500.0, 319.5, 640)
    with pytest.raises(ValueError):
        camera_info_to_intrinsics(CameraInfo())
