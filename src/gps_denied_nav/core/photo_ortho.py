"""An orthophoto GeoTIFF from overlapping nadir photos and their metadata: a map to provision from.

Each photo is projected onto the take-off ground plane from its own pose (GPS position, DJI relative
altitude, gimbal attitude, and the yaw its images confirm: ``photo_pose``) and the mosaic keeps, for every
output pixel, the photo whose centre is nearest (the least relief displacement). No bundle adjustment: the
map inherits the GPS errors of the photos, a few metres for consumer GPS, which the manifest must carry as
its registration sigma (``registration_sigma_m``, set by the caller: ``gdn provision --map-sigma-m``).
Trees and buildings are drawn where the ground plane puts them, displaced from their feet by their height
over the camera's; matching therefore relies on the ground (roads, grass, paths) and the covariance must say so.
The GeoTIFF is written in a transverse Mercator projection centred on the photos (metres, true north up).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rasterio.crs import CRS
from rasterio.transform import Affine

from gps_denied_nav.core.camera import CameraIntrinsics, ground_to_image_homography
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.geotiff_writer import write_geotiff
from gps_denied_nav.core.photo_metadata import PhotoMetadata
from gps_denied_nav.core.photo_pose import (PairMotion, camera_rotation, pair_motion, photo_positions_enu,
                                            sequence_yaw_correction)

MOTION_WIDTH_PX = 1000  # photos are compared for their motion at this width (SIFT on 4000 px is 16x slower)


@dataclass(frozen=True)
class OrthoConfig:
    gsd_m: float = 0.05  # output pixel size, m
    max_distance_m: float = 60.0  # output pixels further than this from every photo's centre stay empty
    correct_yaw: bool = True  # check the metadata yaw against the images' motion (see photo_pose)


@dataclass
class OrthoResult:
    path: Path
    frame: LocalTangentPlane  # ENU frame at the first photo, on the take-off ground
    ground_alt_m: float  # take-off ground, ellipsoidal (median of GPS altitude - relative altitude)
    yaw_used_deg: list[float]
    yaw_note: str
    motions: list[PairMotion] = field(default_factory=list)
    size_px: tuple[int, int] = (0, 0)


def _gray(path: Path, width_px: int) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_REDUCED_GRAYSCALE_2)
    if image is None:
        raise ValueError(f"{path}: cannot decode the image")
    scale = width_px / image.shape[1]
    return cv2.resize(image, (width_px, round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)


def usable(meta: PhotoMetadata) -> str | None:
    """Why a photo cannot go into an orthophoto, or None."""
    if not meta.has_gps or meta.alt_m is None:
        return "no GPS position/altitude"
    if meta.relative_alt_m is None or not meta.relative_alt_m > 2.0:
        return "no height above the take-off ground (DJI RelativeAltitude)"
    if meta.K is None:
        return "no focal length / sensor size"
    if meta.camera_yaw_deg is None:
        return "no camera yaw"
    return None


def build_orthophoto(photos: list[PhotoMetadata], out_path, config: OrthoConfig = OrthoConfig()) -> OrthoResult:
    """Mosaic the photos (in flight order) into ``out_path``; ValueError naming the photo that cannot be used."""
    for meta in photos:
        problem = usable(meta)
        if problem:
            raise ValueError(f"{meta.path}: {problem}")
    if not photos:
        raise ValueError("no photos to build an orthophoto from")
    ground_alt_m = float(np.median([m.alt_m - m.relative_alt_m for m in photos]))
    frame = LocalTangentPlane(photos[0].lat_deg, photos[0].lon_deg, ground_alt_m)
    en = photo_positions_enu([m.lat_deg for m in photos], [m.lon_deg for m in photos], frame)
    yaw_meta = np.array([m.camera_yaw_deg for m in photos], float)
    motions, note, yaw = [], "metadata yaw", yaw_meta.copy()
    if config.correct_yaw and len(photos) > 1:
        grays = [_gray(m.path, MOTION_WIDTH_PX) for m in photos]
        for i in range(len(photos) - 1):
            motion = pair_motion(grays[i], grays[i + 1], en[i], en[i + 1], i, i + 1)
            if motion is not None:
                motions.append(motion)
        correction, note = sequence_yaw_correction(yaw_meta, motions)
        if correction is not None:
            yaw = yaw_meta + correction
    poses = []
    for meta, (east, north), yaw_deg in zip(photos, en, yaw):
        tilt_forward = (meta.gimbal_rpy_deg[1] + 90.0) if meta.gimbal_rpy_deg else 0.0
        roll = meta.gimbal_rpy_deg[0] if meta.gimbal_rpy_deg else 0.0
        poses.append((meta, camera_rotation(float(yaw_deg), roll, tilt_forward),
                      np.array([east, north, meta.relative_alt_m])))
    # Output grid: every photo's footprint, north up.
    corners = []
    for meta, R, C in poses:
        Hinv = np.linalg.inv(ground_to_image_homography(meta.K, R, C, 0.0))
        px = np.array([[0, 0, 1], [meta.width_px - 1, 0, 1], [0, meta.height_px - 1, 1],
                       [meta.width_px - 1, meta.height_px - 1, 1]], float) @ Hinv.T
        corners.append(px[:, :2] / px[:, 2:])
    corners = np.concatenate(corners)
    e0, n1 = corners[:, 0].min(), corners[:, 1].max()
    width = int(math.ceil((corners[:, 0].max() - e0) / config.gsd_m))
    height = int(math.ceil((n1 - corners[:, 1].min()) / config.gsd_m))
    grid_to_enu = np.array([[config.gsd_m, 0.0, e0 + 0.5 * config.gsd_m],
                            [0.0, -config.gsd_m, n1 - 0.5 * config.gsd_m], [0.0, 0.0, 1.0]])
    mosaic = np.zeros((height, width, 3), np.uint8)
    best = np.full((height, width), np.float32(config.max_distance_m))
    cols, rows = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    grid_e = e0 + (cols + 0.5) * config.gsd_m
    grid_n = n1 - (rows + 0.5) * config.gsd_m
    for meta, R, C in poses:
        image = cv2.cvtColor(cv2.imread(str(meta.path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        K = np.asarray(meta.K, float)
        # Area-average the photo down to about the output resolution first (no aliasing in the warp).
        photo_gsd_m = meta.relative_alt_m / K[0, 0]
        scale = min(1.0, photo_gsd_m / config.gsd_m * 1.5)
        if scale < 0.95:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            K = CameraIntrinsics.from_K(K, meta.width_px, meta.height_px).scaled(scale).K
        H_image_grid = ground_to_image_homography(K, R, C, 0.0) @ grid_to_enu  # output pixel -> photo pixel
        warped = cv2.warpPerspective(image, H_image_grid, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        seen = cv2.warpPerspective(np.full(image.shape[:2], 255, np.uint8), H_image_grid, (width, height),
                                   flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                                   borderValue=0) > 0
        distance = np.hypot(grid_e - C[0], grid_n - C[1])
        take = seen & (distance < best)
        mosaic[take] = warped[take]
        best[take] = distance[take]
    valid = best < config.max_distance_m
    crs = CRS.from_proj4(f"+proj=tmerc +lat_0={frame.origin_lat_deg:.10f} +lon_0={frame.origin_lon_deg:.10f} "
                         "+k=1 +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs")
    transform = Affine(config.gsd_m, 0.0, e0, 0.0, -config.gsd_m, n1)
    path = write_geotiff(out_path, mosaic, crs, transform, valid)
    return OrthoResult(Path(path), frame, ground_alt_m, [float(y) for y in yaw], note, motions, (width, height))
