"""Views of a region rendered from its own map, for training and evaluating place recognition on it.

A view is what the inference node describes in flight: a perspective camera frame (``sim.render``: any yaw,
roll/pitch up to ``max_tilt_deg``, height above ground in a range, so scale varies), changed by a random camera
(``Photometric``: exposure, gamma, white balance, blur, noise, JPEG, vignetting) and by an *appearance family*
(a season or weather the map was not taken in), then rectified north-up with an attitude that is slightly
wrong, exactly as the node rectifies with the filter's attitude. Its label is the ground point under the
optical axis. Families are named so that one can be held out of training and used only to test: a model that
learned the map's colours, not its layout, fails on the held-out family.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gps_denied_nav.core.camera import R_BODY_CAM_NADIR, CameraIntrinsics
from gps_denied_nav.core.rectify import optical_axis_ground_offset, query_footprint_m, rectify_to_north_up
from gps_denied_nav.core.rotations import quat_from_euler, quat_to_rotmat

APPEARANCES = ("as_mapped", "autumn", "overcast", "cloud_shadows", "low_sun")


def appearance_shift(image_rgb: np.ndarray, family: str, rng: np.random.Generator) -> np.ndarray:
    """uint8 RGB -> the same scene in another season or weather (strength drawn from ``rng``)."""
    if family == "as_mapped":
        return image_rgb
    img = image_rgb.astype(np.float32)
    if family == "autumn":  # vegetation turns yellow-brown: green hues rotate towards orange
        hsv = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
        green = np.clip(1.0 - np.abs(hsv[..., 0] - 55.0) / 35.0, 0.0, 1.0)  # OpenCV hue 0..180, green ~55
        hsv[..., 0] = hsv[..., 0] - green * rng.uniform(25.0, 40.0)
        hsv[..., 1] = np.clip(hsv[..., 1] * (1.0 + 0.3 * green), 0, 255)
        return cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    if family == "overcast":  # flat light: less contrast and saturation, darker
        grey = img.mean(axis=2, keepdims=True)
        img = grey + (img - grey) * rng.uniform(0.3, 0.6)
        img = img.mean() + (img - img.mean()) * rng.uniform(0.5, 0.75)
        return np.clip(img * rng.uniform(0.75, 0.95), 0, 255).astype(np.uint8)
    if family == "cloud_shadows":  # soft dark blobs a few tens of metres across
        h, w = img.shape[:2]
        field = cv2.resize(rng.random((6, 6)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        shade = np.where(field > rng.uniform(0.5, 0.7), rng.uniform(0.45, 0.65), 1.0).astype(np.float32)
        shade = cv2.GaussianBlur(shade, (0, 0), max(h, w) / 30.0)
        return np.clip(img * shade[..., None], 0, 255).astype(np.uint8)
    if family == "low_sun":  # warm cast, strong gamma, darker shadows
        img = 255.0 * (img / 255.0) ** rng.uniform(1.3, 1.8)
        return np.clip(img * np.array([1.12, 1.0, 0.82], np.float32), 0, 255).astype(np.uint8)
    raise ValueError(f"unknown appearance family {family!r}; known: {APPEARANCES}")


def colour_jitter(image_rgb: np.ndarray, rng: np.random.Generator, hue_deg: float = 36.0,
                  saturation: tuple[float, float] = (0.6, 1.4), grey_probability: float = 0.1) -> np.ndarray:
    """uint8 RGB -> the same with every hue turned by one random angle within +-``hue_deg`` and the saturation
    scaled (or, with ``grey_probability``, dropped): the generic colour augmentation of the contrastive-learning
    literature (torchvision's ColorJitter hue 0.1). It teaches the model that a field's layout, not its tint,
    names the place; it is no season in particular (autumn turns only the greens, and further)."""
    if rng.random() < grey_probability:
        return np.repeat(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    hsv = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = np.mod(hsv[..., 0] + rng.uniform(-hue_deg, hue_deg) / 2.0, 180.0)  # OpenCV hue: 2 deg a unit
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(*saturation), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


@dataclass(frozen=True)
class ViewConfig:
    # Height above ground as a multiple of the corpus' tile side: (0.57, 1.07) is 85-160 m over 150 m tiles,
    # 120 m +- 30 %, the scale range training must cover; a 40 m-tile corpus gets 23-43 m.
    altitude_per_tile_side: tuple[float, float] = (0.57, 1.07)
    max_tilt_deg: float = 15.0  # roll and pitch, uniform
    attitude_error_deg: float = 1.0  # 1-sigma roll/pitch error of the attitude used to rectify (yaw: 2x)
    photometric_strength: tuple[float, float] = (0.3, 1.0)
    camera_width_px: int = 640
    camera_height_px: int = 480
    camera_hfov_deg: float = 60.0
    min_valid_fraction: float = 0.9  # of the rectified footprint: a view over the map's edge is not a query
    colour_jitter_probability: float = 0.0  # share of views also given a generic colour jitter (colour_jitter)
    # The camera stands above a uniform point of the tile's central ``camera_span_of_tile`` x side square. 0.5
    # (the central half) leaves ground points beyond the outermost tile centres all but unseen, and there a
    # flight's frames have only one positive tile to find.
    camera_span_of_tile: float = 0.5


@dataclass
class View:
    image: np.ndarray  # rectified north-up query, uint8 RGB, as the inference node makes it
    ground_centre_enu_m: np.ndarray  # [2] the optical axis' ground point: the label
    appearance: str


def render_view(raster, ground_up_m: float, tile_size_m: float, tile_px: int, centre_enu_m: np.ndarray,
                appearance: str, rng: np.random.Generator, config: ViewConfig = ViewConfig()) -> View | None:
    """One view whose camera stands above ``centre_enu_m`` (raster ENU); None when it sees too little map."""
    from gps_denied_nav.sim.render import Photometric, render_frame  # sim: the map's renderer

    camera = CameraIntrinsics.from_hfov(config.camera_width_px, config.camera_height_px, config.camera_hfov_deg)
    roll, pitch = np.radians(rng.uniform(-config.max_tilt_deg, config.max_tilt_deg, 2))
    yaw = rng.uniform(-np.pi, np.pi)
    R_world_cam = quat_to_rotmat(quat_from_euler(roll, pitch, yaw)) @ R_BODY_CAM_NADIR
    altitude_m = rng.uniform(*config.altitude_per_tile_side) * tile_size_m
    position = np.array([centre_enu_m[0], centre_enu_m[1], ground_up_m + altitude_m])
    photometric = Photometric.random(rng, rng.uniform(*config.photometric_strength))
    frame = render_frame(raster, camera.K, R_world_cam, position, camera.width_px, camera.height_px, ground_up_m,
                         photometric, rng)
    frame = appearance_shift(frame, appearance, rng)
    if config.colour_jitter_probability and rng.random() < config.colour_jitter_probability:
        frame = colour_jitter(frame, rng)
    # Rectified as the node does: north-up, the frame's short ground side, at the corpus' ground sampling,
    # with the attitude the filter would have (a degree off).
    error = np.radians(rng.normal(0.0, config.attitude_error_deg, 3) * np.array([1.0, 1.0, 2.0]))
    R_estimate = quat_to_rotmat(quat_from_euler(roll + error[0], pitch + error[1], yaw + error[2])) @ R_BODY_CAM_NADIR
    gsd_m = tile_size_m / tile_px
    footprint_m = query_footprint_m(camera.K, camera.width_px, camera.height_px, altitude_m, 1.0, tile_size_m)
    image, valid, _ = rectify_to_north_up(frame, camera.K, R_estimate, altitude_m, gsd_m,
                                          max(32, int(round(footprint_m / gsd_m))))
    seen = image.reshape(-1, 3).max(axis=1) > 0  # render_frame paints what sees no map black
    if valid.mean() < config.min_valid_fraction or seen.mean() < config.min_valid_fraction:
        return None
    ground = position[:2] + optical_axis_ground_offset(camera.K, R_world_cam, altitude_m)
    return View(image, ground, appearance)


def render_views(raster, ground_up_m: float, tile_size_m: float, tile_px: int, tile_bounds_enu_m: np.ndarray,
                 per_tile: int, appearances: tuple[str, ...], rng: np.random.Generator,
                 config: ViewConfig = ViewConfig(), progress=None) -> list[View]:
    """``per_tile`` views over each tile (camera above a random point of its central ``camera_span_of_tile``
    square), appearance families drawn uniformly from ``appearances``."""
    views, total = [], len(tile_bounds_enu_m) * per_tile
    lo, hi = 0.5 - 0.5 * config.camera_span_of_tile, 0.5 + 0.5 * config.camera_span_of_tile
    for t, (e0, n0, e1, n1) in enumerate(np.asarray(tile_bounds_enu_m, float)):
        made = tries = 0
        while made < per_tile and tries < 10 * per_tile:
            tries += 1
            centre = np.array([rng.uniform((1 - lo) * e0 + lo * e1, (1 - hi) * e0 + hi * e1),
                               rng.uniform((1 - lo) * n0 + lo * n1, (1 - hi) * n0 + hi * n1)])
            view = render_view(raster, ground_up_m, tile_size_m, tile_px, centre,
                               appearances[int(rng.integers(len(appearances)))], rng, config)
            if view is not None:
                views.append(view)
                made += 1
        if progress is not None:
            progress(min((t + 1) * per_tile, total), total)
    return views
