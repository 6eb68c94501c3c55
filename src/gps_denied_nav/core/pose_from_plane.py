"""Camera pose, and an honest covariance for it, from pixel <-> ground-point correspondences.

Matched map points lie on the ground: one plane ``up = ground_up_m`` of the ENU world, or the terrain,
each point at its own height. The camera pose follows from PnP: IPPE (Collins & Bartoli 2014) gives both
closed-form candidates on the plane that fits the points best (exact for a plane, a close start over
gentle relief), Levenberg-Marquardt refines each against the points' true 3-D positions, and the one with
the lower reprojection error wins. Solving a sloped footprint on one level plane would tilt the pose
instead: a 4 % grade at 120 m above ground moves the fix by ~5 m. The covariance is first order
(Hartley & Zisserman 2004, sec. 5.2.3): ``Sigma_pose = sigma^2 (J^T J)^-1`` with J the Jacobian of the
stacked reprojections w.r.t. OpenCV's (rvec, tvec) and sigma^2 the inlier residual variance (floored).
It is propagated through ``C = -R^T t`` (C depends on rotation and translation) to the camera centre, to
the world-frame attitude error and to the heading of base_link, then multiplied by an inflation factor
for what pixel noise does not model: non-planar ground, map registration error, correlated keypoints.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gps_denied_nav.core.rotations import rotmat_to_quat, rotvec_from_quat

# Central-difference step for the pose -> (C, attitude) propagation; rvec in rad, tvec in m. Small
# against the pose's own uncertainty, large against float64 round-off on values of ~1e3.
_DIFF_STEP = 1e-6


@dataclass(frozen=True)
class PlanarPose:
    """Camera pose in ENU with first-order covariances (already inflated)."""

    R_world_cam: np.ndarray  # [3x3] camera (OpenCV optical) axes as columns in ENU
    cam_pos_enu_m: np.ndarray  # [3] camera centre in ENU metres
    cov_pos_enu_m2: np.ndarray  # [3x3] camera-centre covariance, m^2
    cov_att_world_rad2: np.ndarray  # [3x3] covariance of the world-frame attitude error dtheta, rad^2
    heading_rad: float  # yaw of base_link, ENU: 0 = nose east, counter-clockwise positive
    heading_var_rad2: float  # variance of heading_rad
    residuals_px: np.ndarray  # [N] reprojection error norms of the correspondences used
    reprojection_rmse_px: float  # RMS of residuals_px
    sigma_px: float  # per-axis pixel noise used in the covariance (residual estimate or its floor)


def yaw_of(R_world_body: np.ndarray) -> float:
    """Heading of the body x axis (nose) in ENU, rad: 0 = east, counter-clockwise positive (REP-103)."""
    return float(np.arctan2(R_world_body[1, 0], R_world_body[0, 0]))


def tilt_of(R_world_body: np.ndarray) -> float:
    """Angle between body up (FLU z) and world up, rad: the combined roll/pitch magnitude."""
    return float(np.arccos(np.clip(R_world_body[2, 2], -1.0, 1.0)))


def _pose_outputs(rt: np.ndarray, origin_enu_m: np.ndarray, R_body_cam: np.ndarray,
                  R_ref_world_cam: np.ndarray) -> np.ndarray:
    """(rvec, tvec) [6] -> [7]: camera centre C = -R^T t (ENU, m), world attitude error (rad), yaw."""
    R_cam_world, _ = cv2.Rodrigues(rt[:3])
    cam_pos = -R_cam_world.T @ rt[3:] + origin_enu_m
    R_world_cam = R_cam_world.T
    dtheta = rotvec_from_quat(rotmat_to_quat(R_world_cam @ R_ref_world_cam.T))
    return np.concatenate([cam_pos, dtheta, [yaw_of(R_world_cam @ R_body_cam.T)]])


def _plane_basis(obj: np.ndarray) -> np.ndarray:
    """[3x3] orthonormal B whose first two columns span the best-fit plane of centred points obj [N,3].

    The third column is the plane normal (up-facing); for level points B is the identity."""
    if np.ptp(obj[:, 2]) < 1e-3:
        return np.eye(3)
    _, _, vt = np.linalg.svd(obj, full_matrices=False)
    normal = vt[2] if vt[2, 2] > 0 else -vt[2]
    east_in_plane = np.array([1.0, 0.0, 0.0]) - normal[0] * normal
    u = east_in_plane / np.linalg.norm(east_in_plane)
    return np.column_stack([u, np.cross(normal, u), normal])


def _refined_candidates(obj: np.ndarray, pixels: np.ndarray, K: np.ndarray):
    """Both IPPE solutions on the points' best-fit plane, each refined by Levenberg-Marquardt in 3-D."""
    B = _plane_basis(obj)
    in_plane = obj @ B
    in_plane[:, 2] = 0.0  # IPPE needs z = 0; the relief off the plane is restored by the refinement
    try:
        n_solutions, rvecs, tvecs, _ = cv2.solvePnPGeneric(in_plane, pixels, K, None, flags=cv2.SOLVEPNP_IPPE)
    except cv2.error:  # IPPE raises on degenerate (e.g. collinear) object points
        return
    for i in range(n_solutions):
        # x_cam = R_p (B^T X) + t: the plane solution as a pose of the world points
        R_plane, _ = cv2.Rodrigues(rvecs[i])
        rvec0, _ = cv2.Rodrigues(R_plane @ B.T)
        rvec, tvec = cv2.solvePnPRefineLM(obj, pixels, K, None, rvec0, tvecs[i].copy())
        proj, _ = cv2.projectPoints(obj, rvec, tvec, K, None)
        yield rvec.ravel(), tvec.ravel(), np.linalg.norm(proj.reshape(-1, 2) - pixels, axis=1)


def solve_planar_pose(K: np.ndarray, pixels_px: np.ndarray, ground_en_m: np.ndarray,
                      ground_up_m: float | np.ndarray = 0.0, sigma_floor_px: float = 0.5,
                      covariance_inflation: float = 1.0,
                      R_body_cam: np.ndarray | None = None) -> PlanarPose | None:
    """Pose of a pinhole camera (undistorted pixels) from N >= 4 pixel <-> ground correspondences.

    K: [3x3] intrinsics (px). pixels_px: [N,2] undistorted query pixels. ground_en_m: [N,2] east/north
    of the same points (m); ground_up_m: their height (m, ENU up), one for all or [N] (terrain under each
    point). R_body_cam: [3x3] camera axes in body FLU, only
    used for the heading. sigma_floor_px: lower bound on the per-axis pixel noise (a few perfect matches
    must not claim millimetres). covariance_inflation: factor on every output covariance.
    Returns None when PnP fails or the geometry is degenerate (J^T J singular).
    """
    pixels = np.ascontiguousarray(pixels_px, dtype=np.float64).reshape(-1, 2)
    ground = np.asarray(ground_en_m, dtype=np.float64).reshape(-1, 2)
    if len(pixels) < 4:
        return None
    heights = np.broadcast_to(np.asarray(ground_up_m, dtype=np.float64), (len(ground),))
    # Centre the object points: PnP and the Jacobian stay well conditioned far from the ENU origin.
    origin = np.array([*ground.mean(axis=0), heights.mean()])
    obj = np.column_stack([ground - origin[:2], heights - origin[2]])
    candidates = list(_refined_candidates(obj, pixels, K))
    if not candidates:
        return None
    rvec, tvec, residuals = min(candidates, key=lambda c: float(np.sum(c[2] ** 2)))
    _, jac = cv2.projectPoints(obj, rvec, tvec, K, None)
    J = jac[:, :6]  # columns: d(u,v)/d(rvec, tvec); the rest are intrinsics and distortion
    dof = max(2 * len(pixels) - 6, 1)
    sigma2 = max(float(np.sum(residuals**2)) / dof, sigma_floor_px**2)
    JtJ = J.T @ J
    # Columns mix rad and m, so J^T J is never well scaled; 1e14 only flags true rank loss.
    if not np.all(np.isfinite(JtJ)) or np.linalg.cond(JtJ) > 1e14:
        return None
    cov_pose = sigma2 * np.linalg.inv(JtJ)

    R_body_cam = np.eye(3) if R_body_cam is None else np.asarray(R_body_cam, dtype=float)
    R_world_cam = cv2.Rodrigues(rvec)[0].T
    rt = np.concatenate([rvec, tvec])
    G = np.empty((7, 6))
    for k in range(6):
        step = np.zeros(6)
        step[k] = _DIFF_STEP
        plus = _pose_outputs(rt + step, origin, R_body_cam, R_world_cam)
        minus = _pose_outputs(rt - step, origin, R_body_cam, R_world_cam)
        diff = plus - minus
        diff[6] = np.arctan2(np.sin(diff[6]), np.cos(diff[6]))  # yaw wraps at +-pi
        G[:, k] = diff / (2.0 * _DIFF_STEP)
    cov_out = covariance_inflation * (G @ cov_pose @ G.T)
    R_world_body = R_world_cam @ R_body_cam.T
    return PlanarPose(
        R_world_cam=R_world_cam,
        cam_pos_enu_m=-R_world_cam @ tvec + origin,
        cov_pos_enu_m2=cov_out[:3, :3],
        cov_att_world_rad2=cov_out[3:6, 3:6],
        heading_rad=yaw_of(R_world_body),
        heading_var_rad2=float(cov_out[6, 6]),
        residuals_px=residuals,
        reprojection_rmse_px=float(np.sqrt(np.mean(residuals**2))),
        sigma_px=float(np.sqrt(sigma2)),
    )
