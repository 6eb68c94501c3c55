"""Parameters of the ESKF node (the ``eskf_node`` block of params/gps_denied_nav.yaml, same defaults)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from gps_denied_nav.core.eskf_config import EskfConfig, ImuGapModel
from gps_denied_nav.core.eskf_propagation import ConstantVelocityNoise, ProcessNoise
from gps_denied_nav.nodes.stage_node import StageParams

_NOISE, _CV = ProcessNoise(), ConstantVelocityNoise()
# GNSS fixes this far apart give the initial velocity and course: long enough that fix noise
# (~1.5 m) makes under 1 m/s of velocity error, short enough that turns barely bias it.
INIT_BASELINE_S = 2.0
_FILTER = EskfConfig()
TF_MODES = ("map_to_odom", "map_to_base_link", "none")


@dataclass(frozen=True)
class EskfParams(StageParams):
    origin_lat_deg: float = math.nan  # map frame origin; NaN: the first GNSS (or visual) fix
    origin_lon_deg: float = math.nan
    origin_alt_m: float = math.nan
    accel_noise_density_mps2_rthz: float = _NOISE.accel_noise_density_mps2_rthz
    gyro_noise_density_radps_rthz: float = _NOISE.gyro_noise_density_radps_rthz
    accel_bias_random_walk_mps3_rthz: float = _NOISE.accel_bias_random_walk_mps3_rthz
    gyro_bias_random_walk_radps2_rthz: float = _NOISE.gyro_bias_random_walk_radps2_rthz
    baro_offset_random_walk_m_rts: float = _NOISE.baro_offset_random_walk_m_rts
    accel_bias_init_sigma_mps2: float = 0.1  # 1σ of the accelerometer bias left after the boot calibration
    gyro_bias_init_sigma_radps: float = 5e-3  # 1σ of the gyro bias at start (0.29 °/s)
    gate_probability: float = _FILTER.gate_probability  # chi-square gate of every update
    history_s: float = _FILTER.history_s  # fixes later than this are refused
    max_position_cov_trace_m2: float = _FILTER.max_position_cov_trace_m2  # above: lost, search globally
    max_consecutive_visual_rejections: int = _FILTER.max_consecutive_visual_rejections
    max_accel_mps2: float = _FILTER.max_accel_mps2  # IMU range: samples beyond it are faults, refused
    max_gyro_radps: float = _FILTER.max_gyro_radps
    max_speed_mps: float = _FILTER.max_speed_mps  # a faster state is diverged; fixes moving faster disagree
    max_future_s: float = _FILTER.max_future_s  # measurements stamped further ahead of the IMU are refused
    max_pending_events: int = _FILTER.max_pending_events
    imu_gap_nominal_max_s: float = _FILTER.imu_gap.nominal_max_s  # longer IMU intervals are gaps
    imu_gap_accel_density_mps2_rthz: float = _FILTER.imu_gap.accel_density_mps2_rthz  # unknown motion over a gap
    imu_gap_gyro_density_radps_rthz: float = _FILTER.imu_gap.gyro_density_radps_rthz
    imu_reanchor_samples: int = 20  # consecutive samples after a clock jump that make it the new time base
    origin_gnss_fixes: int = 3  # consistent GNSS fixes in a row before the map origin is set from them
    publish_rate_hz: float = 50.0  # odometry / NavSatFix rate (at most the IMU rate)
    baro_sigma_m: float = 0.5  # baro altitude noise
    gnss_default_sigma_m: float = 3.0  # used when a GNSS fix carries no covariance
    init_min_speed_mps: float = 2.0  # GNSS course is taken as the initial yaw above this speed
    reinit_min_inliers: int = 60  # a visual fix this strong re-initialises the position when lost
    reinit_max_chord_s: float = 3.0  # the two strong fixes that re-initialise a lost filter: at most this apart
    reinit_tilt_sigma_rad: float = 0.1  # roll/pitch 1σ after a re-initialisation (heading from the fix)
    heading_align_sigma_rad: float = 0.05  # heading 1σ above which a strong visual fix resets the heading
    imu_mount_rpy_deg: tuple = (0.0, 0.0, 0.0)  # IMU frame in base_link (deg) when TF lacks it (REP-145)
    imu_qos_depth: int = 200  # best-effort IMU queue: 1 s at 200 Hz rides out a busy executor, then drops the oldest
    # REP-105 frames. tf_mode "map_to_odom": map -> odom from the fused pose and the latest odom -> base_link (as
    # robot_localization and amcl do, beside MAVROS/VIO odometry); "map_to_base_link" only where this node is
    # the sole odometry source; "none". Published through tf2_ros where it is installed (not on PyPI).
    map_frame: str = "map"
    odom_frame: str = "odom"
    base_frame: str = "base_link"
    tf_mode: str = "map_to_odom"
    path_length: int = 600  # poses kept on ~path (nav_msgs/Path for rviz), one per path_period_s
    path_period_s: float = 1.0
    # "imu" (the ESKF on IMU samples) or "constant_velocity" (no IMU: a photo clip; fixes carry position,
    # velocity and heading; params/vision_only.yaml): white acceleration and heading-rate densities, tick rate.
    motion_model: str = "imu"
    cv_accel_density_mps2_rthz: float = _CV.accel_density_mps2_rthz
    cv_yaw_rate_density_radps_rthz: float = _CV.yaw_rate_density_radps_rthz
    cv_rate_hz: float = 20.0

    def filter_config(self) -> EskfConfig:
        """The filter's configuration (raises ValueError on a bad value: configure then fails)."""
        if self.tf_mode not in TF_MODES:
            raise ValueError(f"tf_mode must be one of {TF_MODES}, got {self.tf_mode!r}")
        if not self.cv_rate_hz > 0.0:
            raise ValueError(f"cv_rate_hz must be positive, got {self.cv_rate_hz}")
        noise = ProcessNoise(self.accel_noise_density_mps2_rthz, self.gyro_noise_density_radps_rthz,
                             self.accel_bias_random_walk_mps3_rthz, self.gyro_bias_random_walk_radps2_rthz,
                             self.baro_offset_random_walk_m_rts)
        return EskfConfig(
            process_noise=noise, gate_probability=self.gate_probability, history_s=self.history_s,
            max_position_cov_trace_m2=self.max_position_cov_trace_m2,
            max_consecutive_visual_rejections=self.max_consecutive_visual_rejections,
            max_accel_mps2=self.max_accel_mps2, max_gyro_radps=self.max_gyro_radps, max_speed_mps=self.max_speed_mps,
            max_future_s=self.max_future_s, max_pending_events=self.max_pending_events,
            motion_model=self.motion_model, constant_velocity=ConstantVelocityNoise(
                self.cv_accel_density_mps2_rthz, self.cv_yaw_rate_density_radps_rthz),
            imu_gap=ImuGapModel(self.imu_gap_nominal_max_s, self.imu_gap_accel_density_mps2_rthz,
                                self.imu_gap_gyro_density_radps_rthz))
