"""A photo's camera pose from its metadata, and the heading its images say when the metadata lies.

A gimbal-stabilised nadir photo is placed by its GPS position, its height above the take-off ground (DJI
``RelativeAltitude``) and the camera yaw (clockwise from true north, image top towards it). Real metadata is
not always right about the yaw: on the return leg of the Brighton Beach flight both gimbal and flight yaw say
about -132 deg while the photos are oriented like the outbound leg's (+48 deg): the aircraft flew back
without turning. The images themselves settle it. Between two overlapping photos of a sequence the scene
shifts opposite to the camera's motion; the direction of that shift in the image, against the direction of
the GPS displacement on the ground, is the camera yaw - whatever the depth of the matched points (trees
and ground move in the same direction, only by different amounts), so parallax does not bias it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from gps_denied_nav.core.camera import R_BODY_CAM_NADIR
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.local_features import detect_features, match_descriptors
from gps_denied_nav.core.rotations import quat_from_euler, quat_to_rotmat

MIN_BASELINE_M = 3.0  # GPS displacement below which a pair's motion direction is noise (consumer GPS ~0.5 m)
MIN_PAIR_INLIERS = 40
MIN_AGREEING_PAIRS = 2  # pairs within 10 deg of the median that make a correction trustworthy


def wrap_deg(angle_deg):
    """Angle(s) into (-180, 180] degrees."""
    return -((-np.asarray(angle_deg, float) + 180.0) % 360.0 - 180.0)


def camera_rotation(yaw_cw_deg: float, roll_deg: float = 0.0, tilt_forward_deg: float = 0.0) -> np.ndarray:
    """[3x3] R_world_cam (OpenCV optical axes in ENU) of a nadir camera whose image top points ``yaw_cw_deg``
    clockwise from north, tilted ``tilt_forward_deg`` towards the image top and ``roll_deg`` to the right.

    A DJI gimbal reports pitch -90 deg for straight down: tilt_forward_deg = gimbal pitch + 90."""
    yaw_enu_rad = math.radians(90.0 - yaw_cw_deg)  # ENU yaw: counter-clockwise from east
    # The body frame of R_BODY_CAM_NADIR (FLU, image top towards the nose): pitch about left is nose down.
    q = quat_from_euler(math.radians(roll_deg), math.radians(tilt_forward_deg), yaw_enu_rad)
    return quat_to_rotmat(q) @ R_BODY_CAM_NADIR


@dataclass(frozen=True)
class PairMotion:
    """What two overlapping photos of a sequence say about the first one's yaw."""

    first: int  # index of the photo whose yaw this measures
    second: int
    yaw_cw_deg: float  # the first photo's camera yaw, from image motion vs GPS displacement
    rotation_deg: float  # how much the second photo's yaw exceeds the first's (clockwise), from the images
    inliers: int
    baseline_m: float


def pair_motion(gray_a: np.ndarray, gray_b: np.ndarray, en_a_m: np.ndarray, en_b_m: np.ndarray,
                first: int = 0, second: int = 1, max_features: int = 3000) -> PairMotion | None:
    """Yaw of photo a from the scene's shift between grey images a and b [H x W] (same size and camera) and
    the GPS positions en_a_m, en_b_m [2] (east, north, m); None without enough baseline or matches."""
    baseline = np.asarray(en_b_m, float) - np.asarray(en_a_m, float)
    if np.hypot(*baseline) < MIN_BASELINE_M:
        return None
    kp_a, desc_a = detect_features(gray_a, max_features)
    kp_b, desc_b = detect_features(gray_b, max_features)
    if len(kp_a) < MIN_PAIR_INLIERS or len(kp_b) < MIN_PAIR_INLIERS:
        return None
    pairs = match_descriptors(desc_a, desc_b, 0.8, True)
    if len(pairs) < MIN_PAIR_INLIERS:
        return None
    # A similarity is enough between two nadir photos at one height; RANSAC keeps one depth layer's points.
    A, mask = cv2.estimateAffinePartial2D(kp_a[pairs[:, 0]], kp_b[pairs[:, 1]], method=cv2.RANSAC,
                                          ransacReprojThreshold=4.0, maxIters=5000, confidence=0.999)
    if A is None or int(mask.sum()) < MIN_PAIR_INLIERS:
        return None
    h, w = gray_a.shape[:2]
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    # The ground under b's centre, seen in a (x right, y down, a's axes): the direction the camera moved.
    motion_img = np.linalg.solve(A[:, :2], centre - A[:, 2]) - centre
    # Clockwise angle of that motion from image top, against the GPS displacement's bearing from north.
    alpha_deg = math.degrees(math.atan2(motion_img[0], -motion_img[1]))
    bearing_deg = math.degrees(math.atan2(baseline[0], baseline[1]))
    # In image axes (y down) a clockwise camera yaw turns the scene counter-clockwise on screen.
    rotation_deg = -math.degrees(math.atan2(A[1, 0], A[0, 0]))
    return PairMotion(first, second, float(wrap_deg(bearing_deg - alpha_deg)), rotation_deg, int(mask.sum()),
                      float(np.hypot(*baseline)))


def sequence_yaw_correction(metadata_yaw_deg: np.ndarray, motions: list[PairMotion]) -> tuple[float | None, str]:
    """(correction to add to every metadata yaw, or None to keep them; a sentence saying why).

    The correction is the circular median of (motion yaw - metadata yaw) over the sequence's pairs, applied
    to the whole sequence (never per photo) once MIN_AGREEING_PAIRS agree with it within 10 deg: a 180 deg lie
    as much as the few degrees of a gimbal's compass, which rotate a map about each photo's centre (4 deg is
    2 m at a 69 m footprint's edge). One pair alone is not trusted: its GPS baseline may be off."""
    if not motions:
        return None, "no overlapping pair with baseline: metadata yaw kept"
    diffs = np.array([wrap_deg(m.yaw_cw_deg - metadata_yaw_deg[m.first]) for m in motions])
    # Circular median: the candidate difference with the least summed angular distance to the others.
    spread = [np.sum(np.abs(wrap_deg(diffs - d))) for d in diffs]
    median = float(diffs[int(np.argmin(spread))])
    agree = int(np.sum(np.abs(wrap_deg(diffs - median)) < 10.0))
    text = (f"image motion vs GPS track in {len(motions)} pairs: metadata yaw off by {median:+.1f} deg "
            f"({agree} of {len(motions)} pairs within 10 deg of that)")
    if agree < MIN_AGREEING_PAIRS:
        return None, text + ": metadata yaw kept"
    return median, text + ": corrected"


def photo_positions_enu(lat_deg, lon_deg, frame: LocalTangentPlane) -> np.ndarray:
    """[N, 2] east/north (m) of GPS positions in ``frame``."""
    return frame.to_enu(np.asarray(lat_deg, float), np.asarray(lon_deg, float), frame.origin_alt_m)[..., :2]
