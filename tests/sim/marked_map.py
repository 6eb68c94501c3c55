"""A map with bright discs at known ground points, and where a rendered frame shows them: the renderers'
geometry is checked by projecting those points into the frame and finding the discs there."""
from __future__ import annotations

import cv2
import numpy as np

from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.map_raster import MapRaster


def marked_map(gsd_m: float, marks_en_m: np.ndarray, frame: LocalTangentPlane = LocalTangentPlane(60.4, 22.46)) -> MapRaster:
    """200 m square of dim texture with bright 1.2 m discs at marks_en_m [N, 2] (ENU metres)."""
    n = int(round(200.0 / gsd_m))
    img = np.random.default_rng(0).integers(10, 50, (n, n), dtype=np.uint8)
    raster = MapRaster(np.zeros((n, n, 3), np.uint8), np.ones((n, n), bool), gsd_m, -100.0, 100.0, frame, "marks")
    cols, rows = raster.enu_to_pixel(marks_en_m[:, 0], marks_en_m[:, 1])
    for c, r in zip(cols, rows):
        cv2.circle(img, (int(round(c * 256)), int(round(r * 256))), int(1.2 / gsd_m * 256), 255, -1, cv2.LINE_AA, 8)
    raster.image_rgb[:] = img[..., None]
    return raster


def blob_centroids(frame: np.ndarray, expected_uv: np.ndarray, half_px: int) -> np.ndarray:
    """[N, 2] brightness centroid of the disc within half_px of each expected pixel; inf where none shows."""
    out = []
    for u, v in expected_uv:
        c0, r0 = int(round(u)), int(round(v))
        patch = frame[r0 - half_px:r0 + half_px + 1, c0 - half_px:c0 + half_px + 1, 0].astype(float)
        w = np.clip(patch - 128.0, 0, None)
        rr, cc = np.mgrid[r0 - half_px:r0 + half_px + 1, c0 - half_px:c0 + half_px + 1]
        out.append(((w * cc).sum() / w.sum(), (w * rr).sum() / w.sum()) if w.sum() > 0 else (np.inf, np.inf))
    return np.array(out)
