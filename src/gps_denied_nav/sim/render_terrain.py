"""Render what a pinhole camera sees of a map draped over a height field: ray casting, then one remap.

Over terrain that is not flat a frame is no longer a homography of the map. Each pixel's ray is
intersected with the height field by fixed-point iteration on its depth (``ray_cast_terrain``), which
gives the (east, north) the pixel sees, and ``cv2.remap`` samples the map there. As in the flat renderer,
a map finer than the frame is first area-averaged down to the frame's ground resolution at the image
centre, so fine texture does not alias. There is no occlusion test: the iteration finds *an*
intersection, which on the gentle slopes where it converges (see ``ray_cast_terrain``) is the first one.
"""
from __future__ import annotations

import cv2
import numpy as np

from gps_denied_nav.core.map_raster import MapRaster
from gps_denied_nav.core.terrain import TerrainGrid

MAX_ITERATIONS = 12
TOLERANCE_M = 0.01  # stop once no ray's ground point moves more than this in an iteration
# A ray whose ground point still moves more than this on the last iteration did not converge (a slope too
# steep for its angle, or a grazing ray): it is drawn black rather than at a wrong place.
GIVE_UP_M = 0.1
_MIN_DESCENT = 1e-6  # rays closer than this to horizontal (per unit depth) never reach the ground


def ray_cast_terrain(K: np.ndarray, R_world_cam: np.ndarray, cam_pos_enu_m: np.ndarray, width_px: int,
                     height_px: int, terrain: TerrainGrid, origin_alt_m: float = 0.0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each pixel's ray meets the terrain -> (east_m, north_m, hit), each [height_px, width_px].

    K: [3x3] intrinsics (px); R_world_cam: [3x3] camera axes (OpenCV optical) in ENU; cam_pos_enu_m: [3]
    in the terrain's ENU frame, whose origin is at ellipsoidal height ``origin_alt_m`` (ENU up = terrain
    height - origin_alt_m). east_m, north_m: float64, NaN where ``hit`` is False: the ray does not go down,
    meets the ground behind the camera, or did not converge.

    Along the ray P(t) = C + t d (d = R K^-1 [u, v, 1], so t is the depth in metres) the ground point is
    the fixed point of t = (C_up - h(P_en(t))) / (-d_up), started from the plane at the terrain height
    under the image centre. That map is a contraction, so the iteration converges geometrically, when
    |grad h| * |d_en| / |d_up| < 1: the terrain slope times the ray's horizontal run per metre of descent.
    A level nadir 60-degree camera has |d_en| / |d_up| <= 0.75 at its corners, so any slope under 1 / 0.75
    would do; a 4 % grade with hills (slopes ~0.1) gains about a digit per iteration and takes three or four.
    """
    K, R = np.asarray(K, float), np.asarray(R_world_cam, float)
    cam = np.asarray(cam_pos_enu_m, float)
    A = R @ np.linalg.inv(K)  # d = A @ [u, v, 1]: each component is linear in (u, v)
    u, v = np.arange(width_px, dtype=float), np.arange(height_px, dtype=float)
    d_east, d_north, d_up = (((A[k, 0] * u)[None, :] + (A[k, 1] * v + A[k, 2])[:, None]).astype(np.float32)
                             for k in range(3))
    down = d_up < -_MIN_DESCENT
    length = np.sqrt(d_east * d_east + d_north * d_north + d_up * d_up)
    lookup = _GridLookup(terrain, origin_alt_m, cam)
    col_per_t, row_per_t = d_east / np.float32(terrain.step_m), d_north / np.float32(-terrain.step_m)
    # Rays that do not go down get depth 0 (the lookup under the camera) and are dropped at the end.
    inv_d_up = np.where(down, np.float32(1.0) / np.where(down, d_up, np.float32(-1.0)), np.float32(0.0))
    t = lookup.centre_height_m(A @ [K[0, 2], K[1, 2], 1.0], terrain.step_m) * inv_d_up
    step_m = np.zeros_like(t)
    for _ in range(MAX_ITERATIONS):
        t_next = lookup(t * col_per_t, t * row_per_t) * inv_d_up
        step_m = np.abs(t_next - t) * length
        t = t_next
        if not step_m.max(initial=0.0) > TOLERANCE_M:
            break
    hit = down & (t > 0.0) & (step_m <= GIVE_UP_M)
    t_m = np.where(hit, t, np.nan).astype(np.float64)
    return cam[0] + t_m * d_east, cam[1] + t_m * d_north, hit


def render_over_terrain(raster: MapRaster, K: np.ndarray, R_world_cam: np.ndarray, cam_pos_enu_m: np.ndarray,
                        width_px: int, height_px: int, terrain: TerrainGrid) -> np.ndarray:
    """Perspective view of the map draped over ``terrain`` -> uint8 [height_px, width_px, 3] RGB.

    Arguments as ``render.render_frame``; terrain heights are ellipsoidal (m) on the raster's ENU grid.
    Pixels whose ray misses the ground or lands off the map or on nodata are black. No photometric.
    """
    K = np.asarray(K, float)
    frame = np.zeros((height_px, width_px, 3), np.uint8)
    east, north, hit = ray_cast_terrain(K, R_world_cam, cam_pos_enu_m, width_px, height_px, terrain,
                                        raster.frame.origin_alt_m)
    if not hit.any():
        return frame
    cols, rows = raster.enu_to_pixel(east, north)
    c0, c1 = max(int(np.floor(np.nanmin(cols))) - 2, 0), min(int(np.ceil(np.nanmax(cols))) + 3, raster.width_px)
    r0, r1 = max(int(np.floor(np.nanmin(rows))) - 2, 0), min(int(np.ceil(np.nanmax(rows))) + 3, raster.height_px)
    if c1 <= c0 or r1 <= r0:
        return frame
    crop = raster.image_rgb[r0:r1, c0:c1]
    valid = raster.valid[r0:r1, c0:c1].astype(np.uint8) * 255
    x, y = cols - c0, rows - r0
    scale = _map_px_per_image_px(x, y, K[0, 2], K[1, 2])
    if scale > 1.05:  # the same pre-downsampling as the flat renderer, for the same reason
        w, h = max(1, int(round(crop.shape[1] / scale))), max(1, int(round(crop.shape[0] / scale)))
        crop = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
        valid = cv2.resize(valid, (w, h), interpolation=cv2.INTER_AREA)
        sx, sy = crop.shape[1] / (c1 - c0), crop.shape[0] / (r1 - r0)
        x, y = (x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5  # cv2.resize aligns pixel centres
    # Missed rays look up far outside the crop, where remap reads the black border.
    map_x = np.where(hit, x, -16.0).astype(np.float32)
    map_y = np.where(hit, y, -16.0).astype(np.float32)
    frame = cv2.remap(crop, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    seen = cv2.remap(valid, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0) >= 128
    frame[~(seen & hit)] = 0
    return frame


class _GridLookup:
    """Bilinear terrain height relative to the camera (m, float32) at grid offsets from the camera's node
    coordinates; outside the grid the nearest edge is held, as ``TerrainGrid.height_at`` does."""

    def __init__(self, terrain: TerrainGrid, origin_alt_m: float, cam_pos_enu_m: np.ndarray):
        # Relative heights and offsets in grid cells keep float32 exact to millimetres far from the origin.
        rel = np.asarray(terrain.heights_m, float) - origin_alt_m - cam_pos_enu_m[2]
        rel = np.pad(rel, ((0, int(rel.shape[0] < 2)), (0, int(rel.shape[1] < 2))), mode="edge")
        self.flat = rel.astype(np.float32).ravel()
        self.rows, self.cols = rel.shape
        self.col_cam = np.float32((cam_pos_enu_m[0] - terrain.east_min_m) / terrain.step_m)
        self.row_cam = np.float32((terrain.north_max_m - cam_pos_enu_m[1]) / terrain.step_m)
        self.mean_m = np.float32(rel[:terrain.heights_m.shape[0], :terrain.heights_m.shape[1]].mean())

    def __call__(self, dcol: np.ndarray, drow: np.ndarray) -> np.ndarray:
        """Offsets (grid cells, float32 [...]) from the camera's node coordinates -> heights [...]."""
        c = np.clip(dcol + self.col_cam, np.float32(0.0), np.float32(self.cols - 1))
        r = np.clip(drow + self.row_cam, np.float32(0.0), np.float32(self.rows - 1))
        c_floor = np.minimum(np.floor(c), np.float32(self.cols - 2))
        r_floor = np.minimum(np.floor(r), np.float32(self.rows - 2))
        fc, fr = c - c_floor, r - r_floor
        i = r_floor.astype(np.int32) * self.cols + c_floor.astype(np.int32)
        h00, h01 = self.flat.take(i), self.flat.take(i + 1)
        h10, h11 = self.flat.take(i + self.cols), self.flat.take(i + self.cols + 1)
        top = h00 + (h01 - h00) * fc
        bottom = h10 + (h11 - h10) * fc
        return top + (bottom - top) * fr

    def centre_height_m(self, ray: np.ndarray, step_m: float) -> np.float32:
        """Relative terrain height where the ray [3] (the image centre's) meets it; the mean if it does not."""
        if not ray[2] < -_MIN_DESCENT:
            return self.mean_m
        per_t = np.array([ray[0] / step_m, -ray[1] / step_m], np.float32)
        h = self.mean_m
        for _ in range(MAX_ITERATIONS):
            t = np.float32(h / ray[2])
            if not t > 0.0:  # the camera is below the ground there
                return self.mean_m
            h = self((t * per_t[0])[None], (t * per_t[1])[None])[0]
        return h


def _map_px_per_image_px(x: np.ndarray, y: np.ndarray, u: float, v: float) -> float:
    """Square root of the area scale image -> map at pixel (u, v), from the sampled map coordinates
    x, y [H, W] by central differences; 1.0 where the pixel or its neighbours see no ground."""
    h, w = x.shape
    if h < 3 or w < 3:
        return 1.0
    j, i = min(max(int(round(u)), 1), w - 2), min(max(int(round(v)), 1), h - 2)
    J = 0.5 * np.array([[x[i, j + 1] - x[i, j - 1], x[i + 1, j] - x[i - 1, j]],
                        [y[i, j + 1] - y[i, j - 1], y[i + 1, j] - y[i - 1, j]]])
    scale = float(np.sqrt(abs(np.linalg.det(J))))
    return scale if np.isfinite(scale) else 1.0
