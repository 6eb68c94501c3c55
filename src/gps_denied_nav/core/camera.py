"""Pinhole camera model and the ground-plane homography that links camera pixels to map metres.

Camera frame is OpenCV's optical frame (x right, y down, z along the optical axis). The map is a
flat ground plane at height ``ground_up_m`` in the ENU world frame, so every view of it is a
homography: ``pixel ~ H_image_ground @ [east_m, north_m, 1]`` (Hartley & Zisserman 2004, sec. 8.1.1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Camera axes (columns) in body FLU for the default nadir mount: optical axis down (-z_body),
# image "up" (-y_cam) towards the nose (+x_body), image right (+x_cam) to starboard (-y_body).
R_BODY_CAM_NADIR = np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])

# Bounds on intrinsics that arrive from outside (CameraInfo). Past them a value is a corrupt or mistyped
# message, not a camera, and every fix computed with it would be confidently wrong.
MAX_IMAGE_SIDE_PX = 20000  # above any aerial frame camera (a 150 MP sensor is ~14000 px wide)
FOV_RANGE_DEG = (1.0, 179.0)  # a long telephoto to a fisheye; a pinhole reaches 180 deg only at f = 0
PIXEL_ASPECT_RANGE = (0.5, 2.0)  # fx / fy; real sensors have square or nearly square pixels
PRINCIPAL_POINT_MARGIN = 0.1  # share of the side the principal point may lie off the image (crops)
MAX_ABS_DISTORTION = 100.0  # real lenses stay within tens even in OpenCV's rational model
DISTORTION_LENGTHS = (0, 4, 5, 8, 12, 14)  # the coefficient counts cv2.undistortPoints accepts
SKEW_TOLERANCE = 1e-6  # |K[0,1]|, |K[1,0]| relative to fx; the model has no skew, so a real one would be lost


def focal_range_px(side_px: int) -> tuple[float, float]:
    """(min, max) focal length in pixels giving a field of view within FOV_RANGE_DEG across ``side_px``."""
    lo_deg, hi_deg = FOV_RANGE_DEG
    return 0.5 * side_px / math.tan(math.radians(0.5 * hi_deg)), 0.5 * side_px / math.tan(math.radians(0.5 * lo_deg))


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels; distortion coefficients in OpenCV order (k1, k2, p1, p2, k3)."""

    fx_px: float
    fy_px: float
    cx_px: float
    cy_px: float
    width_px: int
    height_px: int
    distortion: tuple[float, ...] = ()

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx_px, 0.0, self.cx_px], [0.0, self.fy_px, self.cy_px], [0.0, 0.0, 1.0]])

    @classmethod
    def from_hfov(cls, width_px: int, height_px: int, hfov_deg: float) -> CameraIntrinsics:
        """Square pixels, principal point at the image centre."""
        f = 0.5 * width_px / np.tan(0.5 * np.radians(hfov_deg))
        return cls(f, f, 0.5 * (width_px - 1), 0.5 * (height_px - 1), width_px, height_px)

    @classmethod
    def from_K(cls, K: np.ndarray, width_px: int, height_px: int,
               distortion: tuple[float, ...] = ()) -> CameraIntrinsics:
        """Checked intrinsics from a [3x3] camera matrix; ValueError naming what is not a plausible camera."""
        _check_image_size(width_px, height_px)  # first: an empty CameraInfo is "no size", not "bad K"
        K = np.asarray(K, dtype=float)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)):
            raise ValueError(f"camera matrix K must be a finite 3x3, got {K.tolist()}")
        if not np.allclose(K[2], (0.0, 0.0, 1.0), rtol=0.0, atol=1e-9):
            raise ValueError(f"camera matrix K's last row is {K[2].tolist()}, expected [0, 0, 1]")
        skew = max(abs(K[0, 1]), abs(K[1, 0]))
        if skew > SKEW_TOLERANCE * abs(K[0, 0]):
            raise ValueError(f"camera matrix K has skew ({K[0, 1]}, {K[1, 0]}); the pinhole model has none")
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]),
                   int(width_px), int(height_px), tuple(float(d) for d in distortion)).validate()

    def validate(self) -> CameraIntrinsics:
        """Self if every field is physically plausible (the bounds above), else ValueError naming it."""
        _check_image_size(self.width_px, self.height_px)
        for name, value in (("fx_px", self.fx_px), ("fy_px", self.fy_px), ("cx_px", self.cx_px),
                            ("cy_px", self.cy_px)):
            if not math.isfinite(value):
                raise ValueError(f"camera {name} is {value}")
        for name, f, side in (("fx_px", self.fx_px, self.width_px), ("fy_px", self.fy_px, self.height_px)):
            lo, hi = focal_range_px(side)
            if not lo <= f <= hi:
                raise ValueError(f"camera {name} {f} outside [{lo:.4g}, {hi:.4g}] px (a field of view of "
                                 f"{FOV_RANGE_DEG[0]}..{FOV_RANGE_DEG[1]} deg across {side} px)")
        aspect = self.fx_px / self.fy_px
        if not PIXEL_ASPECT_RANGE[0] <= aspect <= PIXEL_ASPECT_RANGE[1]:
            raise ValueError(f"camera fx_px / fy_px = {aspect:.4g} outside "
                             f"{PIXEL_ASPECT_RANGE[0]}..{PIXEL_ASPECT_RANGE[1]}")
        for name, c, side in (("cx_px", self.cx_px, self.width_px), ("cy_px", self.cy_px, self.height_px)):
            margin = PRINCIPAL_POINT_MARGIN * side  # the image spans [-0.5, side - 0.5] in pixel-centre coordinates
            if not -0.5 - margin <= c <= side - 0.5 + margin:
                raise ValueError(f"camera principal point {name} {c} lies off the {side} px image "
                                 f"by more than {margin:g} px")
        if len(self.distortion) not in DISTORTION_LENGTHS:
            raise ValueError(f"camera has {len(self.distortion)} distortion coefficients, expected one of "
                             f"{DISTORTION_LENGTHS}")
        for i, d in enumerate(self.distortion):
            if not abs(d) <= MAX_ABS_DISTORTION:  # also refuses NaN
                raise ValueError(f"camera distortion coefficient {i} is {d} (|d| > {MAX_ABS_DISTORTION} or not finite)")
        return self

    def scaled(self, factor: float) -> CameraIntrinsics:
        """Intrinsics of the same camera after resizing the image by ``factor``."""
        return CameraIntrinsics(self.fx_px * factor, self.fy_px * factor,
                                (self.cx_px + 0.5) * factor - 0.5, (self.cy_px + 0.5) * factor - 0.5,
                                int(round(self.width_px * factor)), int(round(self.height_px * factor)),
                                self.distortion)


def _check_image_size(width_px: int, height_px: int) -> None:
    for name, side in (("width_px", width_px), ("height_px", height_px)):
        if not 1 <= side <= MAX_IMAGE_SIDE_PX:
            raise ValueError(f"camera {name} {side} outside 1..{MAX_IMAGE_SIDE_PX}")


def ground_to_image_homography(K: np.ndarray, R_world_cam: np.ndarray, cam_pos_enu_m: np.ndarray,
                               ground_up_m: float = 0.0) -> np.ndarray:
    """[3x3] H with pixel ~ H @ [east_m, north_m, 1] for ground points at height ground_up_m.

    A ground point P = (e, n, g) lands at X_cam = R_world_cam^T (P - C); writing P - C as
    [e_x e_y (g e_z - C)] @ [e, n, 1]^T gives H = K R^T [e_x, e_y, g e_z - C].
    """
    c = np.asarray(cam_pos_enu_m, dtype=float)
    plane = np.array([[1.0, 0.0, -c[0]], [0.0, 1.0, -c[1]], [0.0, 0.0, ground_up_m - c[2]]])
    return K @ R_world_cam.T @ plane


def project_points(K: np.ndarray, R_world_cam: np.ndarray, cam_pos_enu_m: np.ndarray,
                   points_enu_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points [N,3] -> (pixels [N,2], depth_m [N]); depth <= 0 means behind the camera."""
    x_cam = (np.asarray(points_enu_m, dtype=float) - cam_pos_enu_m) @ R_world_cam
    depth = x_cam[:, 2]
    uv = (x_cam @ K.T)[:, :2] / depth[:, None]
    return uv, depth


def pixel_rays_world(K: np.ndarray, R_world_cam: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Pixels [N,2] -> unit ray directions [N,3] in the world frame."""
    homog = np.column_stack([pixels, np.ones(len(pixels))])
    rays = np.linalg.solve(K, homog.T).T @ R_world_cam.T
    return rays / np.linalg.norm(rays, axis=1, keepdims=True)


def intersect_ground(cam_pos_enu_m: np.ndarray, rays_world: np.ndarray,
                     ground_up_m: float = 0.0) -> np.ndarray:
    """Ray/ground-plane intersections [N,3]; NaN where a ray does not point down to the plane."""
    dz = rays_world[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (ground_up_m - cam_pos_enu_m[2]) / dz
    pts = cam_pos_enu_m + s[:, None] * rays_world
    pts[~(s > 0)] = np.nan
    return pts


def camera_mount_rotation(mount_rpy_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """R_body_cam of a camera mounted with the given roll/pitch/yaw (deg, about the camera's own
    x, y, z axes) relative to the default nadir mount ``R_BODY_CAM_NADIR``."""
    from gps_denied_nav.core.rotations import quat_from_euler, quat_to_rotmat

    r, p, y = np.radians(mount_rpy_deg)
    return R_BODY_CAM_NADIR @ quat_to_rotmat(quat_from_euler(r, p, y))
