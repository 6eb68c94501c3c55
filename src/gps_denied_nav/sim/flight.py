"""Simulate a survey flight over a map raster: camera frames, IMU, barometer, GNSS and ground truth.

This is the demo's stand-in for a real aircraft: a lawnmower survey (``SurveyTrajectory``) flown inside
the map with a margin, nadir frames rendered from the map (``render_frame``) with random photometric
changes at their exposure stamps, IMU and barometer samples synthesised from the exact kinematics
(``imu_model``), GNSS only for the first seconds (initialisation, then it is "lost"), and truth at the
camera and IMU rates. Everything is numpy arrays on one clock (seconds from the start of the flight);
``clip.write_clip`` turns it into the ROS 2 bag of interfaces.md. Over a terrain height field the
aircraft still holds its altitude above the reference ground (``ground_up_m``), as a UAV holding baro
altitude does, so its height above the ground it sees varies with the terrain.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from gps_denied_nav.core.camera import R_BODY_CAM_NADIR, CameraIntrinsics
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.map_raster import MapRaster
from gps_denied_nav.core.rotations import quat_to_rotmat_batch
from gps_denied_nav.core.terrain import TerrainGrid
from gps_denied_nav.sim.imu_model import (BaroNoiseModel, BaroSamples, ImuNoiseModel, ImuSamples, synthesize_baro,
                                          synthesize_imu)
from gps_denied_nav.core.vpr_views import appearance_shift
from gps_denied_nav.sim.render import Photometric, render_frame
from gps_denied_nav.sim.trajectory import Kinematics, SurveyTrajectory

GROUND_PRESSURE_PA = 101325.0  # standard-atmosphere reference pressure at the map's ground plane


@dataclass(frozen=True)
class FlightConfig:
    """What to fly and which sensors to simulate (defaults: the demo flight)."""

    seed: int = 0
    duration_s: float = 90.0
    camera_width_px: int = 640
    camera_height_px: int = 480
    camera_hfov_deg: float = 60.0
    camera_rate_hz: float = 2.0
    camera_time_offset_s: float = 0.0137  # exposures are not on the IMU sample grid
    photometric_strength: float = 0.6  # 0: frames look exactly like the map
    appearance: str = "as_mapped"  # a season/weather family of core.vpr_views.APPEARANCES applied to every frame
    imu_rate_hz: float = 200.0
    imu_noise: ImuNoiseModel = field(default_factory=ImuNoiseModel.bmi088_class)
    baro_rate_hz: float = 25.0
    baro_noise: BaroNoiseModel = field(
        default_factory=lambda: replace(BaroNoiseModel.bmp388_class(), noise_sigma_m=0.3))
    gnss_rate_hz: float = 5.0
    gnss_s: float = 15.0  # GNSS is available for this long, then lost
    gnss_sigma_h_m: float = 1.5  # per horizontal axis
    gnss_sigma_v_m: float = 3.0
    altitude_agl_m: float = 120.0
    speed_mps: float = 12.0
    leg_s: float = 30.0  # survey legs last at most this long, so that even short flights have turns
    max_bank_deg: float = 15.0
    margin_m: float | None = None  # map edge to flight path; None: footprint half-diagonal + bank shift
    ground_up_m: float = 0.0  # height of the ground plane in the raster's ENU frame (the baro reference)
    terrain: TerrainGrid | None = None  # ellipsoidal heights rendered instead of the plane; None: flat
    # Sensor noise (IMU, baro, GNSS) from its own seed: the same trajectory and frames with fresh sensor
    # draws, for Monte Carlo runs that reuse one flight's matched frames. None: the flight's own draws.
    sensor_seed: int | None = None
    render_frames: bool = True  # False: no images (sensors and truth only); needs a sensor_seed

    @classmethod
    def over_terrain(cls, terrain: TerrainGrid, frame: LocalTangentPlane, **kwargs) -> FlightConfig:
        """A flight over ``terrain`` whose reference ground (``ground_up_m``, from which the aircraft holds
        ``altitude_agl_m`` and the baro measures) is the terrain's mean height in the raster's ``frame``."""
        return cls(terrain=terrain, ground_up_m=float(np.mean(terrain.heights_m)) - frame.origin_alt_m, **kwargs)


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Truth at stamps t_s [N]: WGS84 position, ENU pose/velocity in the raster frame, body rate."""

    t_s: np.ndarray
    lat_deg: np.ndarray
    lon_deg: np.ndarray
    alt_m: np.ndarray  # ellipsoidal height
    pos_enu_m: np.ndarray  # [N, 3]
    vel_enu_mps: np.ndarray  # [N, 3]
    q_world_body: np.ndarray  # [N, 4] Hamilton [w, x, y, z]
    omega_body_radps: np.ndarray  # [N, 3]


@dataclass(frozen=True, eq=False)
class FlightData:
    """All samples of one simulated flight; stamps in seconds from its start."""

    config: FlightConfig
    frame: LocalTangentPlane  # ENU frame of the map raster = of pos_enu_m
    camera: CameraIntrinsics
    R_body_cam: np.ndarray  # [3x3]
    image_stamps_s: np.ndarray  # [F] exposure times
    images_rgb: np.ndarray  # [F, H, W, 3] uint8
    imu: ImuSamples  # t_s, accel_body_mps2 (specific force), gyro_body_radps, true biases
    baro: BaroSamples  # t_s, pressure_pa, true_bias_m
    baro_reference_pa: float  # pressure of the standard atmosphere at the ground plane
    gnss_stamps_s: np.ndarray
    gnss_lat_deg: np.ndarray
    gnss_lon_deg: np.ndarray
    gnss_alt_m: np.ndarray
    truth_camera: GroundTruth
    truth_imu: GroundTruth

    @property
    def duration_s(self) -> float:
        return self.config.duration_s


def flight_margin_m(config: FlightConfig, origin_alt_m: float = 0.0) -> float:
    """Distance kept between the flight path and the map edge: the camera footprint's half-diagonal at
    the flight altitude, plus how far a full bank tilts the view, plus 10 m. Over a terrain the altitude
    is taken above its lowest point (``origin_alt_m``: ellipsoidal height of the raster frame's origin)."""
    cam = CameraIntrinsics.from_hfov(config.camera_width_px, config.camera_height_px, config.camera_hfov_deg)
    half_diag_px = 0.5 * math.hypot(cam.width_px, cam.height_px)
    h = config.altitude_agl_m
    if config.terrain is not None:
        h += max(0.0, config.ground_up_m - (config.terrain.range_m[0] - origin_alt_m))
    return h * half_diag_px / cam.fx_px + h * math.tan(math.radians(config.max_bank_deg)) + 10.0


def plan_trajectory(raster: MapRaster, config: FlightConfig, rng: np.random.Generator) -> SurveyTrajectory:
    """The survey pattern inside the raster (minus the margin); its place and directions from ``rng``."""
    m = flight_margin_m(config, raster.frame.origin_alt_m) if config.margin_m is None else config.margin_m
    return SurveyTrajectory.survey(raster.east_min_m + m, raster.north_min_m + m, raster.east_max_m - m,
                                   raster.north_max_m - m, min_duration_s=config.duration_s + 1.0,
                                   speed_mps=config.speed_mps, max_bank_rad=math.radians(config.max_bank_deg),
                                   max_leg_m=config.leg_s * config.speed_mps, place=tuple(rng.uniform(0, 1, 2)),
                                   reverse_legs=bool(rng.integers(2)), reverse_lanes=bool(rng.integers(2)),
                                   altitude_m=config.ground_up_m + config.altitude_agl_m)


def _truth(frame: LocalTangentPlane, k: Kinematics) -> GroundTruth:
    lat, lon, alt = frame.to_geodetic(k.pos_enu_m)
    return GroundTruth(k.t_s, lat, lon, alt, k.pos_enu_m, k.vel_enu_mps, k.q_world_body, k.omega_body_radps)


def _stamps(rate_hz: float, end_s: float, offset_s: float = 0.0) -> np.ndarray:
    return offset_s + np.arange(int(math.floor((end_s - offset_s) * rate_hz + 1e-9)) + 1) / rate_hz


def simulate_flight(raster: MapRaster, config: FlightConfig = FlightConfig(),
                    progress: Callable[[float, float], None] | None = None) -> FlightData:
    """Fly ``config`` over ``raster``; ``progress(frames_done, frames_total)`` is called while rendering."""
    if not config.render_frames and config.sensor_seed is None:
        raise ValueError("a flight without frames needs a sensor_seed: the sensor draws follow the frames' otherwise")
    rng = np.random.default_rng(config.seed)
    trajectory = plan_trajectory(raster, config, rng)
    cam = CameraIntrinsics.from_hfov(config.camera_width_px, config.camera_height_px, config.camera_hfov_deg)
    t_cam = _stamps(config.camera_rate_hz, config.duration_s, config.camera_time_offset_s)
    k_cam = trajectory.sample(t_cam)
    R_world_cam = quat_to_rotmat_batch(k_cam.q_world_body) @ R_BODY_CAM_NADIR
    images = np.empty((len(t_cam) if config.render_frames else 0, cam.height_px, cam.width_px, 3), np.uint8)
    appearance_rng = np.random.default_rng([config.seed, 7])  # its own stream: frames as_mapped stay bit-identical
    for i in range(len(images)):
        photometric = Photometric.random(rng, config.photometric_strength)
        images[i] = render_frame(raster, cam.K, R_world_cam[i], k_cam.pos_enu_m[i], cam.width_px, cam.height_px,
                                 config.ground_up_m, photometric, rng, terrain=config.terrain)
        if config.appearance != "as_mapped":  # a season or weather the map was not taken in
            images[i] = appearance_shift(images[i], config.appearance, appearance_rng)
        if progress is not None:
            progress(i + 1, len(t_cam))
    if config.sensor_seed is not None:
        rng = np.random.default_rng([config.seed, config.sensor_seed])
    k_imu = trajectory.sample(_stamps(config.imu_rate_hz, config.duration_s))
    imu = synthesize_imu(k_imu.t_s, k_imu.accel_enu_mps2, k_imu.q_world_body, k_imu.omega_body_radps,
                         config.imu_noise, rng)
    k_baro = trajectory.sample(_stamps(config.baro_rate_hz, config.duration_s))
    baro = synthesize_baro(k_baro.t_s, k_baro.pos_enu_m[:, 2] - config.ground_up_m, config.baro_noise, rng,
                           sea_level_pressure_pa=GROUND_PRESSURE_PA)
    t_gnss = _stamps(config.gnss_rate_hz, min(config.gnss_s, config.duration_s))
    k_gnss = trajectory.sample(t_gnss)
    noise = rng.standard_normal((len(t_gnss), 3)) * [config.gnss_sigma_h_m, config.gnss_sigma_h_m,
                                                     config.gnss_sigma_v_m]
    gnss_lat, gnss_lon, gnss_alt = raster.frame.to_geodetic(k_gnss.pos_enu_m + noise)
    return FlightData(config, raster.frame, cam, R_BODY_CAM_NADIR.copy(), t_cam, images, imu, baro,
                      GROUND_PRESSURE_PA, t_gnss, gnss_lat, gnss_lon, gnss_alt,
                      _truth(raster.frame, k_cam), _truth(raster.frame, k_imu))
