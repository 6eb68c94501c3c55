"""The camera yaw a photo sequence's images say, against its GPS track: the return leg of a real flight whose
metadata is 180 deg off, and rendered pairs with a known answer."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from gps_denied_nav.core.camera import CameraIntrinsics, ground_to_image_homography
from gps_denied_nav.core.photo_pose import camera_rotation, pair_motion, sequence_yaw_correction, wrap_deg

PHOTOS = Path(__file__).resolve().parents[3] / "shared" / "data" / "brighton_beach_part" / "images"
CAM = CameraIntrinsics.from_hfov(800, 450, 80.0)
GSD_M = 0.05


def ground_texture(seed: int = 0, size_px: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((size_px, size_px), np.float32)
    for cells, amplitude in [(10, 60.0), (60, 50.0), (300, 40.0)]:
        img += amplitude * cv2.resize(rng.uniform(-1, 1, (cells, cells)).astype(np.float32), (size_px, size_px),
                                      interpolation=cv2.INTER_CUBIC)
    return np.clip(img + 120.0, 0, 255).astype(np.uint8)


def view(texture: np.ndarray, yaw_cw_deg: float, east_m: float, north_m: float, height_m: float = 40.0):
    """Nadir view of the texture (centred on the ENU origin, north up) from (east, north, height)."""
    half = 0.5 * texture.shape[0] * GSD_M
    enu_from_px = np.array([[GSD_M, 0, -half + 0.5 * GSD_M], [0, -GSD_M, half - 0.5 * GSD_M], [0, 0, 1.0]])
    H = ground_to_image_homography(CAM.K, camera_rotation(yaw_cw_deg), np.array([east_m, north_m, height_m]))
    return cv2.warpPerspective(texture, H @ enu_from_px, (CAM.width_px, CAM.height_px), flags=cv2.INTER_LINEAR)


@pytest.mark.parametrize("yaw_deg, track_deg", [(45.0, 45.0), (48.0, 228.0), (-100.0, 10.0)])
def test_pair_motion_recovers_the_yaw_whatever_the_direction_of_flight(yaw_deg, track_deg):
    texture = ground_texture()
    step = 12.0 * np.array([np.sin(np.radians(track_deg)), np.cos(np.radians(track_deg))])
    a, b = view(texture, yaw_deg, 0.0, 0.0), view(texture, yaw_deg + 3.0, *step)
    motion = pair_motion(a, b, np.zeros(2), step)
    assert motion is not None and motion.inliers > 100
    assert abs(wrap_deg(motion.yaw_cw_deg - yaw_deg)) < 2.0
    assert motion.rotation_deg == pytest.approx(3.0, abs=0.5)


def test_the_sequence_yaw_is_corrected_by_the_median_of_agreeing_pairs():
    texture = ground_texture(1)
    steps = [np.array([0.0, 0.0]), np.array([-9.0, -9.0]), np.array([-18.0, -18.0])]  # flying south-west
    frames = [view(texture, 48.0, *s) for s in steps]  # ... facing north-east: backwards
    motions = [pair_motion(frames[i], frames[i + 1], steps[i], steps[i + 1], i, i + 1) for i in range(2)]
    correction, note = sequence_yaw_correction(np.full(3, -132.0), motions)  # what the metadata said
    assert correction == pytest.approx(180.0, abs=3.0) and "corrected" in note
    correction, note = sequence_yaw_correction(np.full(3, 45.0), motions)  # a compass 3 deg off
    assert correction == pytest.approx(3.0, abs=1.5)
    correction, note = sequence_yaw_correction(np.full(3, 45.0), motions[:1])  # one pair is not trusted
    assert correction is None and "kept" in note


@pytest.mark.skipif(not PHOTOS.is_dir(), reason="the real photos (../shared/data/brighton_beach_part) are absent")
def test_the_real_return_legs_metadata_is_180_degrees_off():
    from gps_denied_nav.core.geodesy import LocalTangentPlane
    from gps_denied_nav.core.photo_metadata import read_photo_metadata
    from gps_denied_nav.core.photo_pose import photo_positions_enu

    metas = [read_photo_metadata(PHOTOS / f"DJI_00{i}.JPG") for i in (24, 25, 26)]
    frame = LocalTangentPlane(metas[0].lat_deg, metas[0].lon_deg, 0.0)
    en = photo_positions_enu([m.lat_deg for m in metas], [m.lon_deg for m in metas], frame)
    grays = [cv2.resize(cv2.imread(str(m.path), cv2.IMREAD_REDUCED_GRAYSCALE_4), (1000, 562)) for m in metas]
    motions = [pair_motion(grays[i], grays[i + 1], en[i], en[i + 1], i, i + 1) for i in range(2)]
    assert all(m is not None for m in motions)
    correction, _ = sequence_yaw_correction(np.array([m.camera_yaw_deg for m in metas]), motions)
    assert abs(wrap_deg(correction - 180.0)) < 20.0  # the images face about +48 deg, the metadata -132
