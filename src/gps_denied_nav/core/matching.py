"""Absolute visual fix: SIFT matches between a nadir frame and georeferenced map tiles -> camera pose.

The query is described once (SIFT, RootSIFT by default, optionally on a downscaled frame), matched against
the union of the retrieved candidate tiles' precomputed features in one search (FLANN 2-NN, Lowe ratio
test, optional mutual check; ``match_descriptor_sets``), and a USAC MAGSAC homography ground -> image sorts
each tile's matches into inliers and outliers; the tile with most inliers wins. Its
inliers give the full 6-DoF camera pose by planar PnP (``pose_from_plane``) with a first-order,
inflated covariance, and the solution must be plausible (above ground, altitude in range, tilt small,
inliers spread over the image, consistent with a prior attitude/altitude when one is given) before it
is accepted. Every outcome is one ``MatchResult`` whose ``reason`` says why a frame was not accepted.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np

from gps_denied_nav.core.camera import R_BODY_CAM_NADIR, project_points
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.local_features import detect_features, match_descriptor_sets
from gps_denied_nav.core.fix_gates import PosePrior, check_plausibility
from gps_denied_nav.core.matching_config import MatchingConfig
from gps_denied_nav.core.pose_from_plane import PlanarPose, solve_planar_pose
from gps_denied_nav.core.query_features import QueryFeatures, describe_query, map_query_scale

__all__ = ["MatchingConfig", "TileFeatures", "PosePrior", "MatchResult", "VisualFix", "QueryFeatures",
           "detect_features", "describe_query", "map_query_scale", "match_frame", "check_plausibility", "inlier_spread"]


@dataclass(frozen=True)
class TileFeatures:
    """Precomputed features of one candidate map tile (corpus ``tile_features`` + retrieval)."""

    tile_id: int | str  # corpus tile id or index
    kp_enu_m: np.ndarray  # [M,2] float32 east/north of each keypoint in the corpus ENU frame, m
    desc: np.ndarray  # [M,128] float32 descriptors from detect_features
    retrieval_score: float = 0.0  # similarity from retrieval, carried into the fix


@dataclass(frozen=True)
class MatchResult:
    """Outcome of match_frame; pose fields stay None/NaN when no pose was computed."""

    accepted: bool  # True when the fix is plausible and may be fused
    reason: str  # "accepted", or "<category>: <detail>" saying why not (split at ':' to count them)
    tile_inliers: tuple[tuple[int | str, int], ...]  # (tile_id, homography inliers) per candidate
    query_features: int  # keypoints detected on the query
    detect_ms: float  # SIFT on the query
    match_ms: float  # descriptor matching, all tiles
    homography_ms: float  # USAC homographies, all tiles
    pose_ms: float  # PnP, covariance and checks
    tile_id: int | str | None = None  # best tile (most inliers)
    cam_pos_enu_m: np.ndarray | None = None  # [3] camera centre in the corpus ENU frame, m
    R_world_cam: np.ndarray | None = None  # [3x3] camera axes in ENU
    R_world_body: np.ndarray | None = None  # [3x3] base_link axes in ENU
    cov_pos_enu_m2: np.ndarray | None = None  # [3x3] camera-centre covariance, m^2 (inflated)
    cov_att_world_rad2: np.ndarray | None = None  # [3x3] world-frame attitude error covariance, rad^2
    heading_rad: float = float("nan")  # yaw of base_link, 0 = east, counter-clockwise
    heading_var_rad2: float = float("nan")  # variance of heading_rad, rad^2
    inliers: int = 0  # inliers of the final pose on the best tile
    inlier_ratio: float = 0.0  # inliers / ratio-test matches on the best tile
    reprojection_rmse_px: float = float("nan")  # RMS reprojection error of the inliers, px

    def to_visual_fix(self, stamp_s: float, frame: LocalTangentPlane,
                      retrieval_score: float = 0.0) -> VisualFix:
        """Geodetic fix of the camera centre; frame is the corpus's ENU origin."""
        lat, lon, alt = frame.to_geodetic(self.cam_pos_enu_m)
        return VisualFix(float(stamp_s), float(lat), float(lon), float(alt), self.cov_pos_enu_m2,
                         self.heading_rad, self.heading_var_rad2, self.tile_id, self.inliers,
                         self.inlier_ratio, self.reprojection_rmse_px, float(retrieval_score))


@dataclass(frozen=True)
class VisualFix:
    """Accepted fix in geodetic form, as it travels between nodes."""

    stamp_s: float
    lat_deg: float
    lon_deg: float
    alt_m: float
    cov_enu_m2: np.ndarray  # [3x3]
    heading_rad: float
    heading_var_rad2: float
    tile_id: int | str
    inliers: int
    inlier_ratio: float
    reprojection_rmse_px: float
    retrieval_score: float


def _homography_inliers(px: np.ndarray, en: np.ndarray, config: MatchingConfig) -> np.ndarray:
    """Boolean [K] inliers of a USAC homography ground (centred east/north) -> image pixels."""
    if len(px) < max(config.min_inliers, 4):
        return np.zeros(len(px), bool)
    # Ground -> image so that the threshold is in query pixels; centring keeps the DLT conditioned.
    # North is negated: seen from above, (east, north) -> (col, row) with rows pointing down is a
    # reflection, and USAC discards orientation-reversing minimal samples as degenerate.
    ground = (en - en.mean(axis=0)) * np.array([1.0, -1.0])
    _, mask = cv2.findHomography(ground, px, config.usac_method, config.ransac_threshold_px,
                                 maxIters=config.ransac_max_iterations,
                                 confidence=config.ransac_confidence)
    return np.zeros(len(px), bool) if mask is None else mask.ravel().astype(bool)


def _similarity_inliers(px: np.ndarray, en: np.ndarray, K: np.ndarray, R_world_cam_prior: np.ndarray,
                        config: MatchingConfig) -> np.ndarray:
    """Boolean [K] inliers of a similarity ground -> straight-down view (keypoints px re-projected through the
    prior's tilt into a virtual nadir camera of the same yaw and K)."""
    if len(px) < max(config.min_inliers, 4):
        return np.zeros(len(px), bool)
    forward = R_world_cam_prior[:, 1] * np.array([1.0, 1.0, 0.0])  # image down, levelled: keeps the yaw
    if np.linalg.norm(forward) < 1e-6:
        return np.zeros(len(px), bool)
    y = forward / np.linalg.norm(forward)
    R_nadir = np.column_stack([np.cross(y, [0.0, 0.0, -1.0]), y, [0.0, 0.0, -1.0]])
    rays = R_nadir.T @ R_world_cam_prior @ np.linalg.solve(K, np.column_stack([px, np.ones(len(px))]).T)
    nadir_px = (K @ rays).T
    nadir_px = nadir_px[:, :2] / nadir_px[:, 2:]
    ground = (en - en.mean(axis=0)) * np.array([1.0, -1.0])  # north up -> rows down, as for the homography
    _, mask = cv2.estimateAffinePartial2D(ground, nadir_px, method=cv2.RANSAC,
                                          ransacReprojThreshold=config.ransac_threshold_px,
                                          maxIters=config.ransac_max_iterations, confidence=config.ransac_confidence)
    return np.zeros(len(px), bool) if mask is None else mask.ravel().astype(bool)


def inlier_spread(pixels_px: np.ndarray, width_px: int, height_px: int) -> float:
    """Area of the convex hull of pixels [N,2] as a fraction of the image area."""
    if len(pixels_px) < 3:
        return 0.0
    hull = cv2.convexHull(np.asarray(pixels_px, dtype=np.float32))
    return float(cv2.contourArea(hull)) / float(width_px * height_px)


def _solve_and_reselect(K: np.ndarray, px: np.ndarray, en: np.ndarray, up: np.ndarray, inl: np.ndarray,
                        config: MatchingConfig, R_body_cam: np.ndarray) -> tuple[PlanarPose | None, np.ndarray]:
    """PnP on the homography inliers, then once more on the matches the pose itself explains.

    en [K,2] and up [K] are the matched map points' east/north and ground heights (m). The pose has 6 DoF
    against the homography's 8, so its own inlier set is the one its residuals and covariance must describe.
    """
    ground = np.column_stack([en, up])

    def solve(mask: np.ndarray) -> PlanarPose | None:
        return solve_planar_pose(K, px[mask], en[mask], up[mask], config.sigma_floor_px,
                                 config.covariance_inflation, R_body_cam)

    pose = solve(inl)
    for _ in range(2):
        if pose is None:
            break
        uv, depth = project_points(K, pose.R_world_cam, pose.cam_pos_enu_m, ground)
        new_inl = (depth > 0) & (np.linalg.norm(uv - px, axis=1) < config.ransac_threshold_px)
        if np.array_equal(new_inl, inl) or new_inl.sum() < 4:
            break
        inl = new_inl
        pose = solve(inl)
    return pose, inl


def match_frame(query: np.ndarray | QueryFeatures, K: np.ndarray, candidates: list[TileFeatures],
                config: MatchingConfig = MatchingConfig(), ground_up_m: float = 0.0,
                prior: PosePrior | None = None, R_body_cam: np.ndarray = R_BODY_CAM_NADIR,
                distortion: tuple[float, ...] = (),
                terrain_up_m: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> MatchResult:
    """Camera pose and position fix of one query frame against candidate map tiles.

    query: [H,W,3] RGB or [H,W] gray uint8, or its ``describe_query`` features. K: [3x3] intrinsics (px);
    distortion in OpenCV order, applied to the keypoints (ignored with features: they are undistorted).
    candidates: tiles whose kp_enu_m lie in the corpus ENU frame, with the ground plane at ground_up_m (m),
    or, given terrain_up_m (east [K], north [K] -> ground height [K], m, corpus ENU), each keypoint at the
    terrain's height under it.
    prior: optional attitude/altitude for the sanity checks.
    R_body_cam: [3x3] camera mount (camera axes in body FLU) for R_world_body and the heading.
    """
    features = query if isinstance(query, QueryFeatures) else describe_query(query, K, config, distortion)
    if features.scale != 1.0:  # keypoints from a smaller image: their noise in the frame's pixels is larger
        config = replace(config, ransac_threshold_px=config.ransac_threshold_px / features.scale,
                         sigma_floor_px=config.sigma_floor_px / features.scale)
    kp, desc, width_px, height_px = features.kp_px, features.desc, features.width_px, features.height_px
    detect_ms, match_ms, homography_ms = features.detect_ms, 0.0, 0.0
    if len(kp) < config.min_inliers:
        return MatchResult(False, f"too few query features: {len(kp)}", (), len(kp), detect_ms, 0.0, 0.0, 0.0)

    t1 = time.perf_counter()
    tile_pairs = match_descriptor_sets(desc, [tile.desc for tile in candidates], config.ratio, config.mutual_check,
                                       config.flann_trees, config.flann_checks)
    match_ms = 1e3 * (time.perf_counter() - t1)
    per_tile = []
    for tile, pairs in zip(candidates, tile_pairs):
        t2 = time.perf_counter()
        px, en = kp[pairs[:, 0]].astype(float), tile.kp_enu_m[pairs[:, 1]].astype(float)
        if config.geometry_model == "similarity" and prior is not None and prior.R_world_body is not None:
            inl = _similarity_inliers(px, en, K, np.asarray(prior.R_world_body) @ np.asarray(R_body_cam), config)
        else:
            inl = _homography_inliers(px, en, config)
        homography_ms += 1e3 * (time.perf_counter() - t2)
        per_tile.append((tile, px, en, inl))
    tile_inliers = tuple((t.tile_id, int(inl.sum())) for t, _, _, inl in per_tile)
    best_count = max((n for _, n in tile_inliers), default=0)
    if best_count < config.min_inliers:
        return MatchResult(False, f"too few inliers: {best_count}", tile_inliers, len(kp), detect_ms, match_ms,
                           homography_ms, 0.0)

    t3 = time.perf_counter()
    tile, px, en, inl = max(per_tile, key=lambda item: int(item[3].sum()))
    up = np.full(len(en), float(ground_up_m)) if terrain_up_m is None else \
        np.asarray(terrain_up_m(en[:, 0], en[:, 1]), dtype=float).reshape(len(en))
    pose, inl = _solve_and_reselect(K, px, en, up, inl, config, R_body_cam)
    n_inl = int(inl.sum())
    if pose is None:
        return MatchResult(False, "pose failed: degenerate planar PnP", tile_inliers, len(kp), detect_ms,
                           match_ms, homography_ms, 1e3 * (time.perf_counter() - t3), tile_id=tile.tile_id)
    R_world_body = pose.R_world_cam @ np.asarray(R_body_cam).T
    spread = inlier_spread(px[inl], width_px, height_px)
    if n_inl < config.min_inliers:
        reason = f"too few inliers: {n_inl} fit the pose"
    elif spread < config.min_inlier_spread:
        reason = f"inliers clustered: hull {spread:.0%} of the image"
    else:
        ground_below_m = ground_up_m if terrain_up_m is None else \
            float(np.asarray(terrain_up_m(pose.cam_pos_enu_m[:1], pose.cam_pos_enu_m[1:2])).ravel()[0])
        reason = check_plausibility(pose.cam_pos_enu_m, R_world_body, ground_below_m, config, prior,
                                    pose.heading_rad, pose.cov_pos_enu_m2)
    cov_map = np.diag([config.map_registration_sigma_m**2] * 2 + [config.terrain_sigma_m**2])
    return MatchResult(
        reason is None, reason or "accepted", tile_inliers, len(kp), detect_ms, match_ms, homography_ms,
        1e3 * (time.perf_counter() - t3), tile_id=tile.tile_id, cam_pos_enu_m=pose.cam_pos_enu_m,
        R_world_cam=pose.R_world_cam, R_world_body=R_world_body, cov_pos_enu_m2=pose.cov_pos_enu_m2 + cov_map,
        cov_att_world_rad2=pose.cov_att_world_rad2, heading_rad=pose.heading_rad,
        heading_var_rad2=pose.heading_var_rad2, inliers=n_inl, inlier_ratio=n_inl / max(len(px), 1),
        reprojection_rmse_px=pose.reprojection_rmse_px)
