"""Render what a pinhole camera sees of a map: the simulator's camera, usable with any MapRaster.

The ground is the plane ``up = ground_up_m`` in the map's ENU frame, so a frame is one homography of
the map (``ground_to_image_homography`` composed with the raster's pixel<->ENU affine) and a single
``cv2.warpPerspective``. When the map is finer than the frame, the visible part of the map is first
area-averaged down to the frame's ground resolution (at the image centre): a bilinear warp alone would
alias the fine texture into shimmer that a real lens and sensor never show. ``Photometric`` then applies
what makes real frames differ from the orthophoto: exposure, gamma, colour cast, blur, vignetting,
sensor noise and JPEG. Given a terrain height field, ``render_terrain`` ray-casts the frame instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gps_denied_nav.core.camera import ground_to_image_homography, intersect_ground, pixel_rays_world
from gps_denied_nav.core.map_raster import MapRaster
from gps_denied_nav.core.terrain import TerrainGrid
from gps_denied_nav.sim.render_terrain import render_over_terrain


@dataclass(frozen=True)
class Photometric:
    """Camera/scene changes between orthophoto and frame; the defaults change nothing."""

    exposure_gain: float = 1.0  # linear multiplier on intensity
    gamma: float = 1.0  # output = input ** (1 / gamma)
    color_gain_rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)  # white-balance / colour cast
    blur_sigma_px: float = 0.0  # defocus, Gaussian
    motion_blur_px: float = 0.0  # length of a linear motion-blur kernel
    motion_blur_angle_rad: float = 0.0  # its direction in the image, from +x towards +y
    noise_sigma_dn: float = 0.0  # Gaussian sensor noise, in 8-bit digital numbers
    jpeg_quality: int = 0  # 0 = no JPEG round trip
    vignetting: float = 0.0  # relative darkening at the image corners

    @classmethod
    def random(cls, rng: np.random.Generator, strength: float = 1.0) -> Photometric:
        """Random plausible conditions; ``strength`` 0 gives the identity, 1 a harsh but real camera."""
        s = float(strength)
        return cls(exposure_gain=float(np.exp(rng.normal(0.0, 0.25 * s))),
                   gamma=float(np.exp(rng.normal(0.0, 0.12 * s))),
                   color_gain_rgb=tuple(float(g) for g in np.exp(rng.normal(0.0, 0.05 * s, 3))),
                   blur_sigma_px=float(abs(rng.normal(0.0, 0.6 * s))),
                   motion_blur_px=float(rng.uniform(0.0, 3.0 * s)),
                   motion_blur_angle_rad=float(rng.uniform(0.0, np.pi)),
                   noise_sigma_dn=float(rng.uniform(0.5, 1.0 + 4.0 * s)) if s > 0 else 0.0,
                   jpeg_quality=int(rng.uniform(95 - 45 * s, 95)) if s > 0 else 0,
                   vignetting=float(rng.uniform(0.0, 0.35 * s)))

    def apply(self, image_rgb: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """uint8 [H, W, 3] -> uint8 [H, W, 3] with these conditions (noise drawn from ``rng``)."""
        img = image_rgb
        if self.blur_sigma_px > 0.05:
            img = cv2.GaussianBlur(img, (0, 0), self.blur_sigma_px)
        if self.motion_blur_px > 1.0:
            n = int(np.ceil(self.motion_blur_px)) | 1
            kernel = np.zeros((n, n), np.float32)
            c, d = 0.5 * (n - 1), 0.5 * self.motion_blur_px
            dx, dy = d * np.cos(self.motion_blur_angle_rad), d * np.sin(self.motion_blur_angle_rad)
            cv2.line(kernel, (int(round((c - dx) * 16)), int(round((c - dy) * 16))),
                     (int(round((c + dx) * 16)), int(round((c + dy) * 16))), 1.0, 1, cv2.LINE_AA, 4)
            img = cv2.filter2D(img, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)
        x = img.astype(np.float32) * (self.exposure_gain / 255.0)
        x *= np.asarray(self.color_gain_rgb, np.float32)
        if self.vignetting > 0.0:
            h, w = x.shape[:2]
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            r2 = ((xx - 0.5 * (w - 1)) ** 2 + (yy - 0.5 * (h - 1)) ** 2) / (0.25 * (w * w + h * h))
            x *= (1.0 - self.vignetting * r2)[..., None]
        np.clip(x, 0.0, 1.0, out=x)
        if self.gamma != 1.0:
            np.power(x, 1.0 / self.gamma, out=x)
        x *= 255.0
        if self.noise_sigma_dn > 0.0:
            rng = rng if rng is not None else np.random.default_rng()
            x += rng.normal(0.0, self.noise_sigma_dn, x.shape).astype(np.float32)
        out = np.clip(x + 0.5, 0, 255).astype(np.uint8)
        if self.jpeg_quality > 0:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, int(self.jpeg_quality)])
            out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return out


def render_frame(raster: MapRaster, K: np.ndarray, R_world_cam: np.ndarray, cam_pos_enu_m: np.ndarray,
                 width_px: int, height_px: int, ground_up_m: float = 0.0,
                 photometric: Photometric | None = None, rng: np.random.Generator | None = None,
                 terrain: TerrainGrid | None = None) -> np.ndarray:
    """Perspective view of the map -> uint8 [height_px, width_px, 3] RGB.

    K: [3x3] pinhole intrinsics (px); R_world_cam: [3x3] camera axes (OpenCV optical) in ENU;
    cam_pos_enu_m: [3] in the raster's frame. The ground is the plane ``up = ground_up_m`` (m, raster
    ENU), or, given ``terrain`` (WGS84 ellipsoidal heights on the raster's ENU grid; ``ground_up_m`` is
    then unused), the height field ray-cast by ``render_terrain``. Pixels that see no valid map (outside,
    nodata, or sky) are black. ``photometric`` (drawing noise from ``rng``) is applied last.
    """
    if terrain is None:
        frame = _render_plane(raster, K, R_world_cam, cam_pos_enu_m, width_px, height_px, ground_up_m)
    else:
        frame = render_over_terrain(raster, K, R_world_cam, cam_pos_enu_m, width_px, height_px, terrain)
    if photometric is not None:
        frame = photometric.apply(frame, rng)
    return frame


def _render_plane(raster, K, R_world_cam, cam_pos_enu_m, width_px, height_px, ground_up_m) -> np.ndarray:
    """The view of the plane ``up = ground_up_m``: one homography and warpPerspective (no photometric)."""
    K = np.asarray(K, float)
    cam_pos_enu_m = np.asarray(cam_pos_enu_m, float)
    H_img_enu = ground_to_image_homography(K, R_world_cam, cam_pos_enu_m, ground_up_m)
    H_img_map = H_img_enu @ raster.enu_from_pixel_affine()
    frame = np.zeros((height_px, width_px, 3), np.uint8)
    sees = _sees_ground(K, R_world_cam, cam_pos_enu_m, ground_up_m, width_px, height_px)
    box = _footprint_box(raster, K, R_world_cam, cam_pos_enu_m, ground_up_m, width_px, height_px)
    if box is not None and sees is not False:
        c0, r0, c1, r1 = box
        crop = raster.image_rgb[r0:r1, c0:c1]
        valid = raster.valid[r0:r1, c0:c1].astype(np.uint8) * 255
        shift = np.array([[1.0, 0.0, c0], [0.0, 1.0, r0], [0.0, 0.0, 1.0]])
        H_img_crop = H_img_map @ shift
        # Map pixels per frame pixel at the principal point, from the homography's Jacobian there.
        scale = _map_px_per_image_px(np.linalg.inv(H_img_crop), K[0, 2], K[1, 2])
        if scale > 1.05:
            w, h = max(1, int(round(crop.shape[1] / scale))), max(1, int(round(crop.shape[0] / scale)))
            crop = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
            valid = cv2.resize(valid, (w, h), interpolation=cv2.INTER_AREA)
            sx, sy = crop.shape[1] / (c1 - c0), crop.shape[0] / (r1 - r0)
            # cv2.resize aligns pixel centres: x_small = (x_crop + 0.5) * sx - 0.5.
            small_from_crop = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
            H_img_crop = H_img_crop @ np.linalg.inv(small_from_crop)
        frame = cv2.warpPerspective(crop, H_img_crop, (width_px, height_px), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        seen = cv2.warpPerspective(valid, H_img_crop, (width_px, height_px), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0) >= 128
        if sees is not True:
            seen &= sees
        frame[~seen] = 0
    return frame


def _sees_ground(K, R_world_cam, cam_pos, ground_up_m, width_px, height_px):
    """True if every pixel's ray goes down to the plane, False if none does, else a bool mask [H, W]."""
    if cam_pos[2] <= ground_up_m:
        return False
    down = (R_world_cam @ np.linalg.inv(K))[2]  # ray z-component is linear in (u, v, 1)
    corners = np.array([[0, 0, 1], [width_px - 1, 0, 1], [0, height_px - 1, 1], [width_px - 1, height_px - 1, 1]])
    rz = corners @ down
    if np.all(rz < 0):
        return True
    if np.all(rz >= 0):
        return False
    u, v = np.meshgrid(np.arange(width_px), np.arange(height_px))
    return (down[0] * u + down[1] * v + down[2]) < 0


def _footprint_box(raster, K, R_world_cam, cam_pos, ground_up_m, width_px, height_px):
    """Map-pixel box (c0, r0, c1, r1) holding the frame's ground footprint, clipped; None if empty."""
    t = np.linspace(0.0, 1.0, 9)
    border = np.concatenate([np.column_stack([t * (width_px - 1), np.zeros_like(t)]),
                             np.column_stack([t * (width_px - 1), np.full_like(t, height_px - 1)]),
                             np.column_stack([np.zeros_like(t), t * (height_px - 1)]),
                             np.column_stack([np.full_like(t, width_px - 1), t * (height_px - 1)])])
    ground = intersect_ground(cam_pos, pixel_rays_world(K, R_world_cam, border), ground_up_m)
    if np.isnan(ground).any():  # the view reaches the horizon: the footprint is unbounded
        c0, r0, c1, r1 = 0, 0, raster.width_px, raster.height_px
    else:
        cols, rows = raster.enu_to_pixel(ground[:, 0], ground[:, 1])
        c0, c1 = int(np.floor(cols.min())) - 2, int(np.ceil(cols.max())) + 3
        r0, r1 = int(np.floor(rows.min())) - 2, int(np.ceil(rows.max())) + 3
    c0, r0 = max(c0, 0), max(r0, 0)
    c1, r1 = min(c1, raster.width_px), min(r1, raster.height_px)
    return (c0, r0, c1, r1) if c1 > c0 and r1 > r0 else None


def _map_px_per_image_px(H_map_img: np.ndarray, u: float, v: float) -> float:
    """Square root of the area scale of the homography image -> map at pixel (u, v)."""
    p = H_map_img @ [u, v, 1.0]
    J = (H_map_img[:2, :2] * p[2] - np.outer(p[:2], H_map_img[2, :2])) / p[2] ** 2
    return float(np.sqrt(abs(np.linalg.det(J))))
