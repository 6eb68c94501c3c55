"""ESKF node: IMU + visual fixes + baro + initial GNSS -> odometry and NavSatFix for the autopilot.

The filter (core.eskf) fuses fixes at their exposure stamps however late they arrive. This node owns the
``map`` frame: its origin is a parameter or, when NaN, the first GNSS fix (or the first visual fix when
there never was GNSS), published latched on /gps_denied_nav/map_origin. The filter starts from two GNSS
fixes (position, velocity, course as yaw) and the accelerometer (roll, pitch). When the filter diverges
the fused NavSatFix says NO_FIX, which sends retrieval to a global search, and the next strong visual
fix re-initialises the position.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import FluidPressure, Imu, NavSatFix, NavSatStatus

from gps_denied_nav.core.baro import pressure_to_altitude_m
from gps_denied_nav.core.eskf import EskfConfig, ErrorStateKalmanFilter
from gps_denied_nav.core.eskf_diagnostics import UpdateStatus
from gps_denied_nav.core.eskf_propagation import ProcessNoise
from gps_denied_nav.core.eskf_state import StateEstimate
from gps_denied_nav.core.eskf_alignment import initial_attitude, wants_heading_reset
from gps_denied_nav.core.imu_gaps import ImuGapMonitor
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.rotations import quat_from_euler
from gps_denied_nav.core.stage_timing import FrameTimer
from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.conversions import require_finite, stamp_to_s
from gps_denied_nav.nodes.eskf_outputs import (diagnostics_values, fix_covariance_enu_m2, navsatfix_msg, odometry_msg,
                                               origin_msg, transform_msg)
from gps_denied_nav.nodes.node_main import run_node
from gps_denied_nav.nodes.stage_node import StageNode, StageParams
from gps_denied_nav_interfaces.msg import VisualFix

_NOISE = ProcessNoise()
# GNSS fixes this far apart give the initial velocity and course: long enough that fix noise
# (~1.5 m) makes under 1 m/s of velocity error, short enough that turns barely bias it.
INIT_BASELINE_S = 2.0
_FILTER = EskfConfig()


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
    gate_probability: float = _FILTER.gate_probability  # chi-square gate of every update
    history_s: float = _FILTER.history_s  # fixes later than this are refused
    max_position_cov_trace_m2: float = _FILTER.max_position_cov_trace_m2  # above: lost, search globally
    max_consecutive_visual_rejections: int = _FILTER.max_consecutive_visual_rejections
    publish_rate_hz: float = 50.0  # odometry / NavSatFix rate (at most the IMU rate)
    baro_sigma_m: float = 0.5  # baro altitude noise
    gnss_default_sigma_m: float = 3.0  # used when a GNSS fix carries no covariance
    init_min_speed_mps: float = 2.0  # GNSS course is taken as the initial yaw above this speed
    reinit_min_inliers: int = 60  # a visual fix this strong re-initialises the position when lost
    reinit_velocity_sigma_mps: float = 5.0  # velocity 1σ after a re-initialisation (its value is kept)
    reinit_tilt_sigma_rad: float = 0.1  # roll/pitch 1σ after a re-initialisation (heading from the fix)
    heading_align_sigma_rad: float = 0.05  # heading 1σ above which a strong visual fix resets the heading
    publish_tf: bool = True  # map -> base_link on /tf (when tf2_ros is installed)


class EskfNode(StageNode):
    params_cls = EskfParams

    def __init__(self, **kwargs):
        super().__init__(names.ESKF_NODE, **kwargs)

    def configure_stage(self) -> None:
        p = self.params
        noise = ProcessNoise(p.accel_noise_density_mps2_rthz, p.gyro_noise_density_radps_rthz,
                             p.accel_bias_random_walk_mps3_rthz, p.gyro_bias_random_walk_radps2_rthz,
                             p.baro_offset_random_walk_m_rts)
        self.filter = ErrorStateKalmanFilter(EskfConfig(
            process_noise=noise, gate_probability=p.gate_probability, history_s=p.history_s,
            max_position_cov_trace_m2=p.max_position_cov_trace_m2,
            max_consecutive_visual_rejections=p.max_consecutive_visual_rejections))
        origin_given = all(math.isfinite(v) for v in (p.origin_lat_deg, p.origin_lon_deg, p.origin_alt_m))
        self.frame = LocalTangentPlane(p.origin_lat_deg, p.origin_lon_deg, p.origin_alt_m) if origin_given else None
        self.gnss_fixes: deque = deque(maxlen=50)  # (stamp_s, pos_enu_m, cov) waiting for initialisation
        self.accel_window: deque = deque(maxlen=200)  # specific force and body rate before initialisation
        self.gyro_window: deque = deque(maxlen=200)
        self.last_imu_s = -math.inf
        self.imu_gaps = ImuGapMonitor()
        self.last_publish_s = -math.inf
        self.last_gyro = np.zeros(3)
        self.status.add_source(self._filter_diagnostics)
        self.odom_pub = self.publisher(Odometry, names.ODOMETRY, depth=20)
        self.fix_pub = self.publisher(NavSatFix, names.FIX, depth=20)
        self.origin_pub = self.publisher(NavSatFix, names.MAP_ORIGIN,
                                         qos=QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.tf_broadcaster = None
        if p.publish_tf:
            try:
                from tf2_ros import TransformBroadcaster
                self.tf_broadcaster = TransformBroadcaster(self)
            except ImportError:
                self.get_logger().info("tf2_ros is not installed: map -> base_link goes out on odometry only")
        # Deep IMU queue: replayed at speed, a shallow one loses samples (ros2-on-pip.md).
        self.subscribe(Imu, names.IMU, self._on_imu, depth=2000)
        self.enable_timing("eskf")
        self.subscribe(VisualFix, names.VISUAL_FIX, self._on_visual_fix, depth=20)
        self.subscribe(FluidPressure, names.BARO, self._on_baro, depth=50)
        self.subscribe(NavSatFix, names.GNSS_FIX, self._on_gnss, depth=20)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        if self.frame is not None:
            self.origin_pub.publish(origin_msg(self.frame))
        return result

    def release_stage(self) -> None:
        self.__dict__.pop("filter", None)
        self.tf_broadcaster = None

    # --- inputs ----------------------------------------------------------------------------------
    def _on_imu(self, msg: Imu) -> None:
        if not self.active:
            return
        a, w = msg.linear_acceleration, msg.angular_velocity
        stamp_s = stamp_to_s(msg.header.stamp)
        try:
            require_finite("imu sample", a.x, a.y, a.z, w.x, w.y, w.z)
        except ValueError as exc:
            self.status.drop("bad_imu", exc)
            return
        if stamp_s <= self.last_imu_s:
            self.status.drop("imu_stamp_backwards", f"{stamp_s:.6f} s after {self.last_imu_s:.6f} s")
            return
        self.last_imu_s = stamp_s
        self.status.count("imu_received")
        self.imu_gaps.add(stamp_s)
        accel, gyro = np.array([a.x, a.y, a.z]), np.array([w.x, w.y, w.z])
        self.last_gyro = gyro
        if not self.filter.initialized:
            self.accel_window.append(accel)
            self.gyro_window.append(gyro)
            return
        if stamp_s <= self.filter.stamp_s:
            return  # before the initialisation stamp
        self.filter.propagate(stamp_s, accel, gyro)
        period_s = 1.0 / self.params.publish_rate_hz
        if stamp_s - self.last_publish_s >= period_s - 1e-6:
            # Keep the schedule, not the sample: restarting it at each publishing sample stretches every
            # period by up to one IMU interval (43-48 Hz instead of 50 with a 400 Hz IMU).
            behind = stamp_s - self.last_publish_s >= 2.0 * period_s
            self.last_publish_s = stamp_s if behind else self.last_publish_s + period_s
            self._publish()

    def _on_gnss(self, msg: NavSatFix) -> None:
        if not self.active or msg.status.status == NavSatStatus.STATUS_NO_FIX:
            return
        try:
            require_finite("GNSS fix", msg.latitude, msg.longitude, msg.altitude)
        except ValueError as exc:
            self.status.drop("bad_gnss", exc)
            return
        self.status.count("gnss_received")
        self._ensure_frame(msg.latitude, msg.longitude, msg.altitude)
        stamp_s = stamp_to_s(msg.header.stamp)
        pos = self.frame.to_enu(msg.latitude, msg.longitude, msg.altitude)
        cov = fix_covariance_enu_m2(msg, self.params.gnss_default_sigma_m)
        if self.filter.initialized:
            self._log_outcome(self.filter.update_gnss(stamp_s, pos, cov))
            return
        self.gnss_fixes.append((stamp_s, pos, cov))
        self._try_initialize_from_gnss()

    def _on_baro(self, msg: FluidPressure) -> None:
        if not self.active or not self.filter.initialized:
            return
        if not (math.isfinite(msg.fluid_pressure) and msg.fluid_pressure > 0.0):
            self.status.drop("bad_baro", f"pressure {msg.fluid_pressure} Pa")
            return
        altitude_m = float(pressure_to_altitude_m(msg.fluid_pressure))
        self._log_outcome(self.filter.update_baro(stamp_to_s(msg.header.stamp), altitude_m, self.params.baro_sigma_m**2))

    def _on_visual_fix(self, msg: VisualFix) -> None:
        if not self.active:
            return
        timer, outcome = FrameTimer(), "callback_error"
        try:
            outcome = self._fuse_visual_fix(msg)
        finally:
            timer.mark("fusion")  # rollback to the exposure stamp, update, replay of the stored IMU
            self.finish_frame(msg.header, timer, outcome, forwarded=False)

    def _fuse_visual_fix(self, msg: VisualFix) -> str:
        """Fuse one fix; returns how it ended (the filter's outcome, or what was done instead)."""
        cov = np.asarray(msg.position_covariance_enu_m2, dtype=float).reshape(3, 3)
        values = (msg.latitude_deg, msg.longitude_deg, msg.altitude_m, msg.heading_rad, *cov.ravel())
        if not all(math.isfinite(v) for v in values) or np.any(np.linalg.eigvalsh(cov) <= 0.0):
            self.status.drop("bad_visual_fix", "NaN or non-positive-definite covariance")
            return "bad_visual_fix"
        self.status.count("visual_fixes_received")
        self._ensure_frame(msg.latitude_deg, msg.longitude_deg, msg.altitude_m)
        stamp_s = stamp_to_s(msg.header.stamp)
        pos = self.frame.to_enu(msg.latitude_deg, msg.longitude_deg, msg.altitude_m)
        if not self.filter.initialized:
            # No GNSS ever: position and heading from the fix, velocity unknown (any UAV airspeed).
            self._initialize(stamp_s, pos, None, msg.heading_rad, vel_sigma_mps=15.0,
                             pos_sigma_m=float(np.sqrt(np.max(np.linalg.eigvalsh(cov)))))
            return "initialised"
        if self.filter.needs_reinit and msg.inliers >= self.params.reinit_min_inliers:
            self.get_logger().warning(f"re-initialising position from a {msg.inliers}-inlier visual fix "
                                      f"({self.filter.reinit_reason.value})")
            # Heading from the fix, velocity and tilt loosened: divergence has spoilt them too.
            outcome = self.filter.reinitialize_position(
                stamp_s, pos, cov, yaw_rad=msg.heading_rad, yaw_var_rad2=msg.heading_variance_rad2,
                vel_sigma_mps=self.params.reinit_velocity_sigma_mps, tilt_sigma_rad=self.params.reinit_tilt_sigma_rad)
            self._log_outcome(outcome)
            return f"reinitialised_{outcome.status.value}"
        if wants_heading_reset(self.filter.yaw_sigma_rad, msg.heading_variance_rad2, msg.inliers,
                               self.params.heading_align_sigma_rad, self.params.reinit_min_inliers):
            # A coarse heading (GNSS course) meets a precise one: fuse the position, then set the heading
            # by a reset instead of a linear update that would leak the correction into roll/pitch.
            outcome = self.filter.update_visual_fix(stamp_s, pos, cov)
            self._log_outcome(outcome)
            if outcome.status is UpdateStatus.ACCEPTED:
                self.get_logger().info(f"heading aligned on a {msg.inliers}-inlier visual fix (heading 1σ was "
                                       f"{math.degrees(self.filter.yaw_sigma_rad):.1f} deg)")
                self._log_outcome(self.filter.reset_heading(stamp_s, msg.heading_rad, msg.heading_variance_rad2))
            return outcome.status.value
        outcome = self.filter.update_visual_fix(stamp_s, pos, cov, msg.heading_rad, msg.heading_variance_rad2)
        self._log_outcome(outcome)
        return outcome.status.value

    # --- helpers ---------------------------------------------------------------------------------
    def _ensure_frame(self, lat_deg: float, lon_deg: float, alt_m: float) -> None:
        if self.frame is None:
            self.frame = LocalTangentPlane(lat_deg, lon_deg, alt_m)
            self.origin_pub.publish(origin_msg(self.frame))
            self.get_logger().info(f"map origin set at {lat_deg:.7f}, {lon_deg:.7f}, {alt_m:.1f} m")

    def _try_initialize_from_gnss(self) -> None:
        """Position from the newest fix; velocity and course from it and a fix INIT_BASELINE_S older."""
        t1, p1, cov1 = self.gnss_fixes[-1]
        older = [(t, p) for t, p, _ in self.gnss_fixes if INIT_BASELINE_S <= t1 - t <= 2 * INIT_BASELINE_S]
        if not older:
            return
        t0, p0 = older[-1]
        vel = (p1 - p0) / (t1 - t0)
        if np.hypot(vel[0], vel[1]) < self.params.init_min_speed_mps:
            self.status.count("waiting_for_motion")
            return
        sigma_m = math.sqrt(max(np.trace(cov1[:2, :2]) / 2.0, 0.25))
        self._initialize(t1, p1, vel, math.atan2(vel[1], vel[0]), pos_sigma_m=sigma_m,
                         vel_sigma_mps=max(2.0 * sigma_m / INIT_BASELINE_S, 0.5), chord_s=t1 - t0)

    def _initialize(self, stamp_s: float, pos, vel, yaw_rad: float, pos_sigma_m: float = 5.0,
                    vel_sigma_mps: float = 1.5, chord_s: float = 0.0) -> None:
        """Start the filter; ``vel`` is the GNSS chord over the last ``chord_s`` seconds, or None (unknown)."""
        # In flight the manoeuvre's acceleration is modelled and the chord turned forward (core.eskf_alignment).
        window = len(self.accel_window) >= 20
        roll, pitch, yaw_rad, vel, tilt_sigma_rad = initial_attitude(
            np.mean(self.accel_window, axis=0) if window else None,
            np.mean(self.gyro_window, axis=0) if window else None, vel, yaw_rad, chord_s, vel_sigma_mps)
        self.filter.initialize(stamp_s, pos, np.zeros(3) if vel is None else vel,
                               quat_from_euler(roll, pitch, yaw_rad), pos_sigma_m=pos_sigma_m,
                               vel_sigma_mps=vel_sigma_mps, att_sigma_rad=(tilt_sigma_rad, tilt_sigma_rad, 0.2))
        self.get_logger().info(f"filter initialised at {stamp_s:.2f} s: roll {math.degrees(roll):.1f}, "
                               f"pitch {math.degrees(pitch):.1f}, yaw {math.degrees(yaw_rad):.1f} deg "
                               f"(tilt 1σ {math.degrees(tilt_sigma_rad):.1f} deg)")

    def _log_outcome(self, outcome) -> None:
        """Accept/reject counts come from the filter (a deferred update is decided later); log rejections."""
        if outcome.status is UpdateStatus.REJECTED:
            self.get_logger().warning(f"{outcome.kind.value} at {outcome.stamp_s:.2f} s rejected: NIS "
                                      f"{outcome.nis:.1f} > {outcome.gate_threshold:.1f}", throttle_duration_sec=2.0)

    def _publish(self) -> None:
        f = self.filter
        est = StateEstimate(f.stamp_s, f.state, f.covariance)
        odom = odometry_msg(est, self.last_gyro)
        self.odom_pub.publish(odom)
        self.fix_pub.publish(navsatfix_msg(est, self.frame, has_fix=not f.needs_reinit))
        if self.tf_broadcaster is not None:
            self.tf_broadcaster.sendTransform(transform_msg(odom))

    def _filter_diagnostics(self) -> dict:
        if not hasattr(self, "filter") or not self.filter.initialized:
            return {"filter": "waiting for initialisation"}
        return diagnostics_values(self.filter.diagnostics, self.imu_gaps)


def main(args=None) -> None:
    run_node(EskfNode, args)


if __name__ == "__main__":
    main()
