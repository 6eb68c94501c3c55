"""Filter state -> nav_msgs/Odometry and sensor_msgs/NavSatFix (with covariances), and back from fixes;
the filter's figures for /diagnostics."""
from __future__ import annotations

import math

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import NavSatFix, NavSatStatus

from gps_denied_nav.core.eskf_diagnostics import EskfDiagnostics
from gps_denied_nav.core.eskf_state import E_ATT, E_GYRO_BIAS, E_POS, E_VEL, StateEstimate
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.imu_gaps import ImuGapMonitor
from gps_denied_nav.core.rotations import quat_from_euler, quat_to_rotmat
from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.conversions import s_to_stamp, wxyz_to_quat_msg


def odometry_msg(est: StateEstimate, gyro_body_radps: np.ndarray, map_frame: str = names.MAP_FRAME,
                 base_frame: str = names.BODY_FRAME) -> Odometry:
    """map -> base_link pose with covariance; twist in base_link (REP-105: twist in the child frame)."""
    s, P = est.state, est.covariance
    msg = Odometry()
    msg.header.stamp = s_to_stamp(est.stamp_s)
    msg.header.frame_id = map_frame
    msg.child_frame_id = base_frame
    p = msg.pose.pose.position
    p.x, p.y, p.z = (float(v) for v in s.pos_enu_m)
    wxyz_to_quat_msg(s.q_world_body, msg.pose.pose.orientation)
    pose_cov = np.zeros((6, 6))
    pose_cov[:3, :3] = P[E_POS, E_POS]
    # The filter's angle error is local (body frame); rotate it to the fixed frame ROS expects.
    R = quat_to_rotmat(s.q_world_body)
    pose_cov[3:, 3:] = R @ P[E_ATT, E_ATT] @ R.T
    msg.pose.covariance = [float(v) for v in pose_cov.ravel()]
    v_body = R.T @ s.vel_enu_mps
    t = msg.twist.twist
    t.linear.x, t.linear.y, t.linear.z = (float(v) for v in v_body)
    w = np.asarray(gyro_body_radps) - s.gyro_bias_radps
    t.angular.x, t.angular.y, t.angular.z = (float(v) for v in w)
    twist_cov = np.zeros((6, 6))
    twist_cov[:3, :3] = R.T @ P[E_VEL, E_VEL] @ R
    twist_cov[3:, 3:] = np.diag(np.diag(P[E_GYRO_BIAS, E_GYRO_BIAS]))  # rate error = gyro bias error
    msg.twist.covariance = [float(v) for v in twist_cov.ravel()]
    return msg


def navsatfix_msg(est: StateEstimate, frame: LocalTangentPlane, has_fix: bool,
                  base_frame: str = names.BODY_FRAME) -> NavSatFix:
    """Fused WGS84 position with its ENU covariance; status NO_FIX asks retrieval to search globally."""
    lat, lon, alt = frame.to_geodetic(est.state.pos_enu_m)
    msg = NavSatFix(latitude=float(lat), longitude=float(lon), altitude=float(alt))
    msg.header.stamp = s_to_stamp(est.stamp_s)
    msg.header.frame_id = base_frame
    msg.status.status = NavSatStatus.STATUS_FIX if has_fix else NavSatStatus.STATUS_NO_FIX
    msg.status.service = NavSatStatus.SERVICE_GPS
    msg.position_covariance = [float(v) for v in est.covariance[E_POS, E_POS].ravel()]
    msg.position_covariance_type = NavSatFix.COVARIANCE_TYPE_KNOWN
    return msg


def visual_fix_pose_msg(stamp, pos_enu_m: np.ndarray, cov_enu_m2: np.ndarray, heading_rad: float,
                        heading_var_rad2: float, map_frame: str = names.MAP_FRAME) -> PoseWithCovarianceStamped:
    """A visual fix in ``map`` as a standard message (rviz, robot_localization's pose input): position and
    heading (yaw about up) with their covariance; roll and pitch are not measured (variance 1e6)."""
    msg = PoseWithCovarianceStamped()
    msg.header.stamp, msg.header.frame_id = stamp, map_frame
    p = msg.pose.pose.position
    p.x, p.y, p.z = (float(v) for v in pos_enu_m)
    wxyz_to_quat_msg(quat_from_euler(0.0, 0.0, heading_rad), msg.pose.pose.orientation)
    cov = np.zeros((6, 6))
    cov[:3, :3] = cov_enu_m2
    cov[3, 3] = cov[4, 4] = 1e6
    cov[5, 5] = heading_var_rad2
    msg.pose.covariance = [float(v) for v in cov.ravel()]
    return msg


def origin_msg(frame: LocalTangentPlane, stamp=None, map_frame: str = names.MAP_FRAME) -> NavSatFix:
    """The map frame's origin (latched): stamped when it was set, frame_id the map frame."""
    msg = NavSatFix(latitude=frame.origin_lat_deg, longitude=frame.origin_lon_deg, altitude=frame.origin_alt_m)
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = map_frame
    msg.status.status = NavSatStatus.STATUS_FIX
    return msg


def fix_covariance_enu_m2(msg: NavSatFix, default_sigma_m: float) -> np.ndarray:
    """[3x3] ENU covariance of a NavSatFix (REP: ENU order), or a default when it carries none."""
    if msg.position_covariance_type == NavSatFix.COVARIANCE_TYPE_UNKNOWN:
        return np.eye(3) * default_sigma_m**2
    cov = np.asarray(msg.position_covariance, dtype=float).reshape(3, 3)
    return cov if msg.position_covariance_type == NavSatFix.COVARIANCE_TYPE_KNOWN else np.diag(np.diag(cov))


def counter_values(d: EskfDiagnostics) -> dict[str, int]:
    """The filter's per-kind counters as /diagnostics keys (``visual_fix_too_new``, ...)."""
    return {f"{kind.value}_{name}": getattr(c, name) for kind, c in d.counters.items()
            for name in ("accepted", "rejected", "too_old", "too_new", "invalid")}


def diagnostics_values(d: EskfDiagnostics, imu_gaps: ImuGapMonitor) -> dict:
    """The filter's verdict, counters per measurement kind, last NIS per kind and the IMU gap counts."""
    values = {"filter": "lost: " + d.reinit_reason.value if d.needs_reinit else "tracking",
              "last_invalid_measurement": d.last_invalid,
              "position_sigma_m": math.sqrt(max(d.position_cov_trace_m2, 0.0)),
              "consecutive_visual_rejections": d.consecutive_visual_rejections,
              "imu_samples_dropped_by_filter": d.imu_samples_dropped,
              "imu_gaps": imu_gaps.gaps, "imu_samples_missing": imu_gaps.samples_missing,
              "imu_max_gap_ms": 1e3 * imu_gaps.max_gap_s}
    values.update(counter_values(d))
    for kind, rec in d.last_innovation.items():
        values[f"{kind.value}_last_nis"] = rec.nis
    return values


class FilterHealth:
    """The filter's level on /diagnostics: ERROR while it is lost or its state is not trusted (nothing it
    publishes then claims a fix), WARN for IMU gaps, samples the filter dropped and fixes too old or too
    new since the last report, else OK. Call once per diagnostics period."""

    def __init__(self):
        self._seen = (0, 0, 0)

    def __call__(self, filter_, imu_gaps: ImuGapMonitor) -> tuple[bytes, str]:
        if filter_ is None or not filter_.initialized:
            return DiagnosticStatus.WARN, "waiting for initialisation: no estimate published"
        d = filter_.diagnostics
        late = sum(c.too_old + c.too_new for c in d.counters.values())
        seen, self._seen = self._seen, (imu_gaps.gaps, d.imu_samples_dropped, late)
        if d.needs_reinit:
            problem = filter_.state_problem
            return DiagnosticStatus.ERROR, (f"lost ({d.reinit_reason.value}{': ' + problem if problem else ''}): "
                                            "publishing NO_FIX, searching globally")
        news = [f"{now - before} {what}" for now, before, what in zip(
            self._seen, seen, ("IMU gaps", "IMU samples dropped by the filter", "measurements too old or too new"))
            if now > before]
        if news:
            return DiagnosticStatus.WARN, "tracking; since the last report: " + ", ".join(news)
        return DiagnosticStatus.OK, "tracking"


def lost_fix_msg(stamp_s: float, geodetic: tuple[float, float, float]) -> NavSatFix:
    """NO_FIX at the last trusted position, covariance type UNKNOWN: a state that is not trusted must not
    leave the node, not even as a position."""
    msg = NavSatFix(latitude=float(geodetic[0]), longitude=float(geodetic[1]), altitude=float(geodetic[2]))
    msg.header.stamp = s_to_stamp(stamp_s)
    msg.header.frame_id = names.BODY_FRAME
    msg.status.status = NavSatStatus.STATUS_NO_FIX
    msg.position_covariance_type = NavSatFix.COVARIANCE_TYPE_UNKNOWN
    return msg
