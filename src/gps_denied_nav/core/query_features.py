"""A query frame's local features, computable before its retrieval candidates are known: SIFT (optionally on
the frame resized towards the map's ground sampling), keypoints back in the frame's pixels, undistorted."""
from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from gps_denied_nav.core.local_features import detect_features
from gps_denied_nav.core.matching_config import MatchingConfig


@dataclass(frozen=True)
class QueryFeatures:
    """A query frame's features, computable before its retrieval candidates are known (by the node, beside
    the descriptor's forward pass). kp_px [N,2] undistorted pixel coordinates, desc [N,128]."""

    kp_px: np.ndarray
    desc: np.ndarray
    width_px: int
    height_px: int
    detect_ms: float  # SIFT and undistortion
    scale: float = 1.0  # the factor the frame was resized by for SIFT (keypoints are in the frame's pixels)


def map_query_scale(agl_m: float | None, fx_px: float, map_gsd_m: float, min_agl_m: float,
                    floor: float = 0.25) -> float:
    """The ``query_scale`` that brings a frame's ground sampling (agl_m / fx_px, m a pixel) to the map's: never
    above 1 (no enlarging), never below ``floor`` (a wrong height must not shrink frames until nothing matches
    and nothing corrects it), 1 without a height of at least ``min_agl_m``."""
    if agl_m is None or not agl_m >= min_agl_m or not fx_px > 0.0 or not map_gsd_m > 0.0:
        return 1.0
    return float(np.clip(agl_m / fx_px / map_gsd_m, floor, 1.0))


def describe_query(query_image: np.ndarray, K: np.ndarray, config: MatchingConfig = MatchingConfig(),
                   distortion: tuple[float, ...] = ()) -> QueryFeatures:
    """SIFT of a query frame [H,W,3] RGB or [H,W] gray uint8 (resized by config.query_scale first), keypoints
    in the frame's pixels, undistorted (OpenCV order)."""
    t0 = time.perf_counter()
    height_px, width_px = query_image.shape[:2]
    scale = config.query_scale
    image = query_image if scale == 1.0 else cv2.resize(
        query_image, (max(1, round(width_px * scale)), max(1, round(height_px * scale))), interpolation=cv2.INTER_AREA)
    kp, desc = detect_features(image, config.max_features, root_sift=config.root_sift)
    if scale != 1.0:  # pixel centres: (0, 0) is the top-left pixel's centre in both images
        kp = ((kp + 0.5) * np.array([width_px / image.shape[1], height_px / image.shape[0]]) - 0.5).astype(np.float32)
    if len(distortion) and len(kp):
        kp = cv2.undistortPoints(kp.reshape(-1, 1, 2), K, np.asarray(distortion, float), P=K).reshape(-1, 2)
    return QueryFeatures(kp, desc, width_px, height_px, 1e3 * (time.perf_counter() - t0), scale)
