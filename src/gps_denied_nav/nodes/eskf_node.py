"""ESKF node: IMU + visual fixes + baro + initial GNSS -> odometry and NavSatFix for the autopilot.

The filter (core.eskf) fuses fixes at their exposure stamps however late they arrive. This node owns the
``map`` frame: its origin is a parameter or, when NaN, the first of several consistent GNSS fixes (or the
first visual fix when there never was GNSS), published latched on /gps_denied_nav/map_origin. The filter
starts from two GNSS fixes (position, velocity, course as yaw) and the accelerometer (roll, pitch).
Inputs are checked for plausibility first (nodes.eskf_inputs): absurd values are counted and refused;
an IMU clock that really jumped restarts the filter. While the filter is lost (diverged, or its state not
trusted) the fused NavSatFix says NO_FIX (retrieval searches globally), diagnostics say ERROR, and two
consecutive strong visual fixes re-initialise position, heading and velocity (core.eskf_relocalize).
"""
from __future__ import annotations

import math
from collections import Counter, deque

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.lifecycle import State, TransitionCallbackReturn
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from nav_msgs.msg import Path
from sensor_msgs.msg import FluidPressure, Imu, NavSatFix, NavSatStatus
from std_srvs.srv import Trigger

from gps_denied_nav.core.baro import pressure_to_altitude_m
from gps_denied_nav.core.eskf import ErrorStateKalmanFilter
from gps_denied_nav.core.eskf_diagnostics import ReinitReason, UpdateStatus
from gps_denied_nav.core.eskf_relocalize import Relocalizer, StrongFix
from gps_denied_nav.core.eskf_state import StateEstimate
from gps_denied_nav.core.eskf_alignment import wants_heading_reset
from gps_denied_nav.core.imu_gaps import ImuGapMonitor
from gps_denied_nav.core.input_checks import ConsistentFixes, StampGuard
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.rotations import quat_from_euler, quat_to_rotmat
from gps_denied_nav.core.stage_timing import FrameTimer
from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.eskf_inputs import Refused, read_baro, read_gnss, read_imu, read_visual_fix
from gps_denied_nav.nodes.eskf_outputs import (FilterHealth, counter_values, diagnostics_values, lost_fix_msg,
                                               navsatfix_msg, odometry_msg, origin_msg, visual_fix_pose_msg)
from gps_denied_nav.nodes.eskf_tf import MapTransformPublisher
from gps_denied_nav.nodes.extrinsics import Extrinsics
from gps_denied_nav.nodes.node_main import run_node
from gps_denied_nav.nodes.eskf_params import EskfParams
from gps_denied_nav.nodes.eskf_services import FilterServices
from gps_denied_nav.nodes.eskf_start import FilterStart
from gps_denied_nav.nodes.stage_node import StageNode
from gps_denied_nav.nodes.thermal_limit import ThermalLimitFollower
from gps_denied_nav_interfaces.msg import VisualFix
from gps_denied_nav_interfaces.srv import SetPose


class EskfNode(FilterStart, FilterServices, StageNode):
    params_cls = EskfParams

    def __init__(self, **kwargs):
        super().__init__(names.ESKF_NODE, **kwargs)

    def configure_stage(self) -> None:
        p = self.params
        self.config = p.filter_config()
        origin_given = all(math.isfinite(v) for v in (p.origin_lat_deg, p.origin_lon_deg, p.origin_alt_m))
        self.frame = LocalTangentPlane(p.origin_lat_deg, p.origin_lon_deg, p.origin_alt_m) if origin_given else None
        # A jump forward beyond the history is refused (the filter could not use the sample anyway).
        self.imu_stamps = StampGuard(max_step_s=p.history_s, reanchor_samples=p.imu_reanchor_samples)
        self.imu_gaps = ImuGapMonitor()
        self.health = FilterHealth()
        self.carried_counts: Counter = Counter()
        self._restart()
        self.last_trusted_geodetic = None
        self.status.add_source(self._filter_diagnostics)
        self.status.set_health(lambda: self.health(getattr(self, "filter", None), self.imu_gaps))
        self.odom_pub = self.publisher(Odometry, names.ODOMETRY, depth=20)
        self.fix_pub = self.publisher(NavSatFix, names.FIX, depth=20)
        self.origin_pub = self.publisher(NavSatFix, names.MAP_ORIGIN, latched=True)
        self.origin_stamp = None
        self.fix_pose_pub = self.publisher(PoseWithCovarianceStamped, names.VISUAL_FIX_POSE, depth=20)
        self.path_pub = self.publisher(Path, names.PATH, depth=2)
        self.path: deque = deque(maxlen=max(1, p.path_length))
        self.extrinsics = Extrinsics(self, p.base_frame, self.status)
        self.tf = MapTransformPublisher(self, p.tf_mode, p.odom_frame, self.status, self.extrinsics.buffer)
        self.R_base_imu = quat_to_rotmat(quat_from_euler(*np.radians(p.imu_mount_rpy_deg)))
        if self.config.motion_model == "imu":
            self.subscribe_sensor(Imu, names.IMU, self._on_imu, depth=p.imu_qos_depth)
        else:  # no IMU (a photo clip): clock ticks drive the constant-velocity model, and nothing waits for IMU
            self.tick_timer = self.create_timer(1.0 / p.cv_rate_hz, self._on_tick)
            self.get_logger().info(f"motion model {self.config.motion_model}: no IMU, propagating on clock ticks "
                                   f"at {p.cv_rate_hz:g} Hz")
        self.status.set("motion_model", self.config.motion_model)
        self.enable_timing("eskf")
        self.subscribe(VisualFix, names.VISUAL_FIX, self._on_visual_fix, depth=20)
        self.thermal = ThermalLimitFollower(self, p.reinit_max_chord_s)  # the fix interval a hot SoC allows
        self.subscribe_sensor(FluidPressure, names.BARO, self._on_baro)
        self.subscribe_sensor(NavSatFix, names.GNSS_FIX, self._on_gnss)
        self.filter_services = [self.create_service(Trigger, "~/reset", self._on_reset),
                         self.create_service(SetPose, "~/set_pose", self._on_set_pose)]

    def _restart(self, why: str = "") -> None:
        """A fresh, uninitialised filter (configure, or an IMU clock that jumped: the old time base is gone)."""
        if why:
            self.get_logger().error(f"filter restarted: {why}; waiting for GNSS or a visual fix to initialise")
            self.status.count("filter_restarts")
            # What the old filter counted stays on /diagnostics (its totals must not go down).
            self.carried_counts.update(counter_values(self.filter.diagnostics) if self.filter.initialized else {})
            self.status.count("measurements_discarded_at_restart", self.filter.pending_events)
        self.filter = ErrorStateKalmanFilter(self.config)
        self.gnss_run = ConsistentFixes(required=self.params.origin_gnss_fixes, max_speed_mps=self.params.max_speed_mps)
        self.gnss_fixes: deque = deque(maxlen=50)  # (stamp_s, pos_enu_m, cov) of the consistent run
        self.relocalizer = Relocalizer(max_chord_s=self.params.reinit_max_chord_s, max_speed_mps=self.params.max_speed_mps)
        # The latest specific force and body rate: roll and pitch at any (re-)initialisation.
        self.accel_window, self.gyro_window = deque(maxlen=200), deque(maxlen=200)
        self.last_publish_s = -math.inf
        self.last_gyro = np.zeros(3)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        if self.frame is not None:
            self.origin_pub.publish(origin_msg(self.frame, self.origin_stamp, self.params.map_frame))
        return result

    def release_stage(self) -> None:
        self.__dict__.pop("filter", None)
        if hasattr(self, "tick_timer"):
            self.destroy_timer(self.tick_timer)
            del self.tick_timer
        self.tf = None
        for service in getattr(self, "filter_services", []):
            self.destroy_service(service)
        self.filter_services = []

    # --- inputs ----------------------------------------------------------------------------------
    def _on_imu(self, msg: Imu) -> None:
        if not self.active:
            return
        p = self.params
        try:
            stamp_s, accel, gyro = read_imu(msg, p.max_accel_mps2, p.max_gyro_radps)
        except Refused as exc:
            self.status.drop(exc.reason, exc)
            return
        frame_id = msg.header.frame_id
        if frame_id and frame_id != p.base_frame:  # REP-145: the data is in its own frame; the filter's is base_link
            R = self.extrinsics.rotation(frame_id, self.R_base_imu, "imu")
            accel, gyro = R @ accel, R @ gyro
        last_s, verdict = self.imu_stamps.last_s, self.imu_stamps.check(stamp_s)
        if verdict == "reanchored":
            self._restart(f"the IMU clock jumped from {last_s:.3f} s to {stamp_s:.3f} s")
        elif verdict != "ok":
            self.status.drop(f"imu_{verdict}", f"{stamp_s:.6f} s after {last_s:.6f} s")
            return
        self.status.count("imu_received")
        self.imu_gaps.add(stamp_s)
        self.last_gyro = gyro
        self.accel_window.append(accel)
        self.gyro_window.append(gyro)
        self._advance(stamp_s, accel, gyro)

    def _on_tick(self) -> None:
        """Constant-velocity model: the node's clock (/clock in a replay) is the filter's input."""
        stamp_s = self.get_clock().now().nanoseconds * 1e-9
        if not self.active or stamp_s <= 0.0:  # no /clock yet
            return
        last_s, verdict = self.imu_stamps.last_s, self.imu_stamps.check(stamp_s)
        if verdict == "reanchored":
            self._restart(f"the clock jumped from {last_s:.3f} s to {stamp_s:.3f} s")
        elif verdict != "ok":
            return  # a clock standing still (lockstep replay waiting) or stepping back: nothing to do
        self.status.count("clock_ticks")
        self._advance(stamp_s, np.zeros(3), np.zeros(3))

    def _advance(self, stamp_s: float, accel, gyro) -> None:
        """Propagate to a new input stamp and publish on schedule."""
        p = self.params
        if not self.filter.initialized or stamp_s <= self.filter.stamp_s:
            return  # before the initialisation stamp
        self.filter.propagate(stamp_s, accel, gyro)
        if self.filter.stamp_s != stamp_s:
            return  # the filter refused the sample: nothing new to publish
        period_s = 1.0 / p.publish_rate_hz
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
            fix = read_gnss(msg, self.params.gnss_default_sigma_m)
        except Refused as exc:
            self.status.drop(exc.reason, exc)
            return
        if not self.filter.initialized and self._refused_clock("gnss", fix.stamp_s):
            return
        self.status.count("gnss_received")
        sigma_m = math.sqrt(float(np.max(np.linalg.eigvalsh(fix.cov_enu_m2))))
        if not self.gnss_run.add(fix.stamp_s, fix.lat_deg, fix.lon_deg, fix.alt_m, sigma_m):
            self.gnss_fixes.clear()  # the run restarts here: older fixes disagree with this one
        if self.frame is None:
            if not self.gnss_run.trusted:
                return
            self._set_frame(*self.gnss_run.run[0].geodetic, msg.header.stamp)
        pos = self.frame.to_enu(fix.lat_deg, fix.lon_deg, fix.alt_m)
        if self.filter.initialized:
            self._log_outcome(self.filter.update_gnss(fix.stamp_s, pos, fix.cov_enu_m2))
            return
        self.gnss_fixes.append((fix.stamp_s, pos, fix.cov_enu_m2))
        if self.gnss_run.trusted:
            self._try_initialize_from_gnss()

    def _on_baro(self, msg: FluidPressure) -> None:
        if not self.active or not self.filter.initialized:
            return
        try:
            stamp_s, pressure_pa = read_baro(msg)
        except Refused as exc:
            self.status.drop(exc.reason, exc)
            return
        altitude_m = float(pressure_to_altitude_m(pressure_pa))
        self._log_outcome(self.filter.update_baro(stamp_s, altitude_m, self.params.baro_sigma_m**2))

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
        try:
            fix, heading_rad, heading_var_rad2 = read_visual_fix(msg)
        except Refused as exc:
            self.status.drop(exc.reason, exc)
            return exc.reason
        if not self.filter.initialized and self._refused_clock("visual_fix", fix.stamp_s):
            return "refused_clock"
        self.status.count("visual_fixes_received")  # refused ones are counted under their reason only
        if self.frame is None:
            self._set_frame(fix.lat_deg, fix.lon_deg, fix.alt_m, msg.header.stamp)
        stamp_s, cov = fix.stamp_s, fix.cov_enu_m2
        pos = self.frame.to_enu(fix.lat_deg, fix.lon_deg, fix.alt_m)
        self.fix_pose_pub.publish(visual_fix_pose_msg(msg.header.stamp, pos, cov, heading_rad, heading_var_rad2,
                                                      self.params.map_frame))
        strong = msg.inliers >= self.params.reinit_min_inliers
        if not self.filter.initialized:
            # No GNSS ever: position and heading from the fix, velocity unknown (any UAV airspeed).
            self._initialize(stamp_s, pos, None, heading_rad, vel_sigma_mps=15.0,
                             pos_sigma_m=float(np.sqrt(np.max(np.linalg.eigvalsh(cov)))))
            return "initialised"
        if self.filter.needs_reinit and strong:
            return self._relocalize(StrongFix(stamp_s, pos, cov, heading_rad, heading_var_rad2), msg.inliers)
        self.relocalizer.clear()
        if wants_heading_reset(self.filter.yaw_sigma_rad, heading_var_rad2, msg.inliers,
                               self.params.heading_align_sigma_rad, self.params.reinit_min_inliers):
            # A coarse heading (GNSS course) meets a precise one: fuse the position, then set the heading
            # by a reset instead of a linear update that would leak the correction into roll/pitch.
            outcome = self.filter.update_visual_fix(stamp_s, pos, cov)
            self._log_outcome(outcome)
            if outcome.status is UpdateStatus.ACCEPTED:
                self.get_logger().info(f"heading aligned on a {msg.inliers}-inlier visual fix (heading 1σ was "
                                       f"{math.degrees(self.filter.yaw_sigma_rad):.1f} deg)")
                self._log_outcome(self.filter.reset_heading(stamp_s, heading_rad, heading_var_rad2))
            return outcome.status.value
        outcome = self.filter.update_visual_fix(stamp_s, pos, cov, heading_rad, heading_var_rad2)
        self._log_outcome(outcome)
        return outcome.status.value

    # --- helpers ---------------------------------------------------------------------------------
    def _set_frame(self, lat_deg: float, lon_deg: float, alt_m: float, stamp=None) -> None:
        self.frame = LocalTangentPlane(lat_deg, lon_deg, alt_m)
        self.origin_stamp = stamp
        self.origin_pub.publish(origin_msg(self.frame, stamp, self.params.map_frame))
        self.get_logger().info(f"map origin set at {lat_deg:.7f}, {lon_deg:.7f}, {alt_m:.1f} m")

    def _log_outcome(self, outcome) -> None:
        """Accept/reject counts come from the filter (a deferred update is decided later); log rejections."""
        if outcome.status is UpdateStatus.REJECTED:
            self.get_logger().warning(f"{outcome.kind.value} at {outcome.stamp_s:.2f} s rejected: NIS "
                                      f"{outcome.nis:.1f} > {outcome.gate_threshold:.1f}", throttle_duration_sec=2.0)

    def _publish(self) -> None:
        f = self.filter
        reason = f.reinit_reason  # one check of the state (a Cholesky of P) per publish, at 50 Hz
        if reason is ReinitReason.INVALID_STATE:  # nothing of this state may reach the autopilot: NO_FIX only
            if self.last_trusted_geodetic is not None:
                self.fix_pub.publish(lost_fix_msg(f.stamp_s, self.last_trusted_geodetic))
            return
        est = StateEstimate(f.stamp_s, f.state, f.covariance)
        odom = odometry_msg(est, self.last_gyro, self.params.map_frame, self.params.base_frame)
        self.odom_pub.publish(odom)
        tracking = reason is ReinitReason.NONE
        fix = navsatfix_msg(est, self.frame, has_fix=tracking, base_frame=self.params.base_frame)
        self.fix_pub.publish(fix)
        if tracking:
            self.last_trusted_geodetic = (fix.latitude, fix.longitude, fix.altitude)
        self.tf.publish(odom)
        self._extend_path(odom)

    def _extend_path(self, odom: Odometry) -> None:
        """~path for rviz: one pose per path_period_s of the fused trajectory, the last path_length of them."""
        stamp_s = self.filter.stamp_s
        if self.path and stamp_s - self.path[-1][0] < self.params.path_period_s:
            return
        self.path.append((stamp_s, PoseStamped(header=odom.header, pose=odom.pose.pose)))
        self.path_pub.publish(Path(header=odom.header, poses=[pose for _, pose in self.path]))

    def _filter_diagnostics(self) -> dict:
        if not hasattr(self, "filter") or not self.filter.initialized:
            return {"filter": "waiting for initialisation", **self.carried_counts}
        values = diagnostics_values(self.filter.diagnostics, self.imu_gaps) | {"gnss_run": len(self.gnss_run.run)}
        return values | {k: values.get(k, 0) + n for k, n in self.carried_counts.items()}


def main(args=None) -> None:
    run_node(EskfNode, args)


if __name__ == "__main__":
    main()
