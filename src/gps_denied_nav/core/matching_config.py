"""The matcher's parameters (``core.matching``): SIFT on the query, descriptor matching, robust geometry,
covariance and the plausibility gates. Its own module so that the query's features (``core.query_features``)
and the matcher share it without importing each other."""
from __future__ import annotations

from dataclasses import dataclass

import cv2


@dataclass(frozen=True)
class MatchingConfig:
    """Parameters of the matcher; the defaults are the ROS parameters' defaults."""

    max_features: int = 2000  # SIFT keypoints kept on the query frame, strongest response first
    # SIFT runs on the query resized by this factor (<= 1); keypoints are scaled back to the frame's pixels and
    # the pixel thresholds and noise floor grow by 1/query_scale. Worth it when the frame's ground sampling is
    # finer than the map's: details the map does not have cost time and match nothing.
    query_scale: float = 1.0
    root_sift: bool = True  # RootSIFT (Arandjelovic & Zisserman 2012); must match the corpus features
    ratio: float = 0.8  # Lowe ratio test on descriptor distances (nearest / second nearest)
    mutual_check: bool = True  # keep query i -> tile j only if j's nearest query descriptor is i
    flann_trees: int = 4  # randomised kd-trees in the per-tile FLANN index
    flann_checks: int = 64  # leaves visited per query descriptor (recall vs time)
    usac_method: int = cv2.USAC_MAGSAC  # robust estimator for the ground -> image homography
    ransac_threshold_px: float = 3.0  # inlier threshold of the homography and of the final pose, px
    ransac_confidence: float = 0.999  # probability of having drawn one all-inlier sample
    ransac_max_iterations: int = 5000  # cap on robust-estimator iterations per tile
    min_inliers: int = 25  # fewer inliers on the best tile -> no fix
    min_inlier_spread: float = 0.08  # inliers' convex hull area / image area; below -> clustered
    sigma_floor_px: float = 0.3  # floor of the per-axis pixel noise in the covariance, px
    # Factor on all covariances for what i.i.d. pixel noise leaves out: correlated keypoint errors,
    # non-planar ground, resampling. 2 puts the horizontal NEES of the Turku benchmark at ~1.3 (2 DoF).
    covariance_inflation: float = 2.0
    # Model sorting inliers from outliers: "homography" (any attitude), or "similarity" (4 DoF: scale, yaw,
    # shift), used when the prior's tilt is known (a gimbal, the filter), after warping the keypoints to a
    # straight-down view. Over trees a homography can fit canopy and ground together as one tilted plane; a
    # similarity cannot, and a canopy-only fit then fails the height gate (the canopy is metres closer).
    geometry_model: str = "homography"

    def __post_init__(self) -> None:
        if self.geometry_model not in ("homography", "similarity"):
            raise ValueError(f"geometry_model must be 'homography' or 'similarity', got {self.geometry_model!r}")
        if not 0.0 < self.query_scale <= 1.0:
            raise ValueError(f"query_scale must be in (0, 1], got {self.query_scale}")
    # Horizontal 1-sigma of the map's own georegistration error, m, added to the fix covariance: a
    # bias shared by every keypoint that no number of inliers averages out. Set it to the orthophoto's
    # stated absolute accuracy; 0 when the map is the truth (simulation, benchmarks).
    map_registration_sigma_m: float = 0.0
    # Vertical 1-sigma of the terrain heights under the keypoints, m, added to the fix's vertical
    # variance: a DEM's error moves the solved camera height one for one. From the corpus manifest.
    terrain_sigma_m: float = 0.0
    min_altitude_agl_m: float = 10.0  # camera height above the ground plane, lowest plausible, m
    max_altitude_agl_m: float = 1500.0  # highest plausible, m
    max_tilt_deg: float = 35.0  # largest plausible angle between body up and world up, deg
    prior_tilt_tolerance_deg: float = 10.0  # largest tilt difference to a prior attitude, deg
    prior_altitude_tolerance_m: float = 60.0  # largest altitude difference to a prior altitude, m
    # Height above ground against the prior's (the homography's scale: a wrong tile or focal length shows
    # here first): allowed off by max(prior_agl_tolerance_m, prior_agl_tolerance_frac x the prior's).
    prior_agl_tolerance_frac: float = 0.25
    prior_agl_tolerance_m: float = 5.0
    prior_heading_min_tolerance_deg: float = 15.0  # heading gate: max(this, 3 sigma of the prior heading)
    prior_position_gate_probability: float = 0.999  # chi-square gate of the fix against a prior position
