"""Warp a camera frame into a north-up nadir view at a fixed ground sampling distance.

Corpus tiles are north-up orthophoto crops; a UAV frame is rotated by the heading and keystoned by roll
and pitch. With the attitude from the filter and the height above ground, the flat-ground homography
(`core.camera.ground_to_image_homography`) maps every output pixel to a camera pixel, so one
`cv2.warpPerspective` makes the query look like a tile whatever the heading, roll and pitch. The output is
centred on the ground point under the optical axis, not under the camera: at 14 deg of tilt and 120 m
above ground the two are 30 m apart, and centring under the camera would leave that side of the output
outside the footprint. The caller gets the offset so a position found for the output centre converts
back to the camera position.
"""
from __future__ import annotations

import cv2
import numpy as np

from .camera import ground_to_image_homography, intersect_ground, pixel_rays_world

# Mid-grey maps to ~0 after the backbone's input normalisation, so the area outside the footprint
# contributes no strong activations of its own.
FILL_VALUE = 127


def north_up_grid_to_ground(centre_enu_m: np.ndarray, out_gsd_m: float, out_size_px: int) -> np.ndarray:
    """[3x3] A with [east_m, north_m, 1] ~ A @ [col, row, 1] for a north-up grid centred on centre_enu_m.

    Pixel centres follow the map raster convention: column -> east, row -> south, (col + 0.5) * gsd.
    """
    half_m = 0.5 * out_size_px * out_gsd_m
    return np.array([[out_gsd_m, 0.0, centre_enu_m[0] - half_m + 0.5 * out_gsd_m],
                     [0.0, -out_gsd_m, centre_enu_m[1] + half_m - 0.5 * out_gsd_m],
                     [0.0, 0.0, 1.0]])


def query_footprint_m(K: np.ndarray, width_px: int, height_px: int, altitude_agl_m: float, scale: float = 1.0,
                      max_m: float = float("inf")) -> float:
    """Side (m) of the square north-up query: ``scale`` x the short side of a nadir frame's ground footprint
    at ``altitude_agl_m`` above ground (pinhole K [3x3]), at most ``max_m`` (a corpus tile's side).

    From the lens and the height, not a fixed size: the 105 m that suits 120 m above ground with a 60 deg
    lens would describe mostly fill at the 40 m of a survey drone (its frame covers ~38 x 69 m)."""
    short_m = altitude_agl_m * min(width_px / float(K[0, 0]), height_px / float(K[1, 1]))
    return float(min(scale * short_m, max_m))


def optical_axis_ground_offset(K: np.ndarray, R_world_cam: np.ndarray, altitude_agl_m: float) -> np.ndarray:
    """[2] east/north metres from the point under the camera to where the optical axis meets the ground.

    Falls back to [0, 0] when the axis does not hit the ground (camera looking at or above the horizon).
    """
    principal_point = np.array([[K[0, 2], K[1, 2]]])
    ray = pixel_rays_world(K, R_world_cam, principal_point)
    hit = intersect_ground(np.array([0.0, 0.0, altitude_agl_m]), ray)[0]
    return np.zeros(2) if np.isnan(hit[0]) else hit[:2]


def rectify_to_north_up(image_rgb: np.ndarray, K: np.ndarray, R_world_cam: np.ndarray, altitude_agl_m: float,
                        out_gsd_m: float, out_size_px: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera frame -> north-up nadir view centred on the optical axis' ground point.

    image_rgb: [H x W x 3] uint8, undistorted, with pinhole intrinsics K [3x3].
    R_world_cam: [3x3] camera axes in ENU (attitude from the filter, OpenCV optical frame).
    altitude_agl_m: camera height above the (flat) ground.
    Returns (image [S x S x 3] uint8 with FILL_VALUE outside the footprint, valid [S x S] bool,
    centre_offset_enu_m [2]: output centre minus the ground point under the camera, in metres).
    """
    if altitude_agl_m <= 0.0:
        raise ValueError(f"altitude_agl_m must be positive, got {altitude_agl_m}")
    K = np.asarray(K, dtype=float)
    offset_m = optical_axis_ground_offset(K, R_world_cam, altitude_agl_m)
    # Pre-shrink with area averaging: warpPerspective's bilinear sampling aliases when the output GSD is
    # coarser than the camera's (120 m AGL gives ~0.2 m/px, tiles are ~0.47 m/px).
    camera_gsd_m = altitude_agl_m / max(K[0, 0], K[1, 1])
    scale = min(1.0, camera_gsd_m / out_gsd_m)
    if scale < 0.9:
        height, width = image_rgb.shape[:2]
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        sx, sy = size[0] / width, size[1] / height
        image_rgb = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)
        # Pixel centres stay aligned: u' + 0.5 = (u + 0.5) * s (same as CameraIntrinsics.scaled).
        K = np.diag([sx, sy, 1.0]) @ K + np.array([[0, 0, 0.5 * sx - 0.5], [0, 0, 0.5 * sy - 0.5], [0, 0, 0]])
    H_image_ground = ground_to_image_homography(K, R_world_cam, np.array([0.0, 0.0, altitude_agl_m]))
    H_image_out = H_image_ground @ north_up_grid_to_ground(offset_m, out_gsd_m, out_size_px)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    out = cv2.warpPerspective(image_rgb, H_image_out, (out_size_px, out_size_px), flags=flags,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(FILL_VALUE,) * 3)
    inside = np.full(image_rgb.shape[:2], 255, np.uint8)
    valid = cv2.warpPerspective(inside, H_image_out, (out_size_px, out_size_px),
                                flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0) > 0
    # The third row of H is the depth along the optical axis: ground beyond the horizon projects with
    # negative depth into the image, mirrored, so it must be masked explicitly.
    cols, rows = np.meshgrid(np.arange(out_size_px), np.arange(out_size_px))
    depth = H_image_out[2, 0] * cols + H_image_out[2, 1] * rows + H_image_out[2, 2]
    valid &= depth > 0
    out[~valid] = FILL_VALUE
    return out, valid, offset_m
