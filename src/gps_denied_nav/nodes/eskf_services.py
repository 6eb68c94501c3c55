"""The filter node's services, as robot_localization offers them: ``~/reset`` (std_srvs/Trigger: forget the
state and start again from GNSS or a visual fix; the map origin stays, so the frame consumers use does not
move) and ``~/set_pose`` (gps_denied_nav_interfaces/SetPose: start again at a pose in ``map``, e.g. a known
take-off point when GNSS is jammed on the ground). A mixin of EskfNode, which owns the state."""
from __future__ import annotations

import math

import numpy as np

from gps_denied_nav.core.rotations import euler_from_quat
from gps_denied_nav.nodes.conversions import quat_msg_to_wxyz, stamp_to_s
from gps_denied_nav.nodes.eskf_inputs import Refused, check_clock

SET_POSE_VEL_SIGMA_MPS = 15.0  # velocity after set_pose: unknown (any UAV airspeed) until fixes constrain it


class FilterServices:
    def _on_reset(self, _request, response):
        if not self.active:
            response.success, response.message = False, "the node is not active"
            return response
        self._restart("reset requested on ~/reset")
        response.success = True
        response.message = "filter restarted; it initialises again from GNSS or a visual fix (the map origin stays)"
        return response

    def _on_set_pose(self, request, response):
        try:
            message = self._set_pose(request.pose)
            response.success, response.message = True, message
        except Refused as exc:
            self.status.drop(exc.reason, exc)
            response.success, response.message = False, str(exc)
        return response

    def _set_pose(self, msg) -> str:
        if not self.active:
            raise Refused("set_pose_inactive", "the node is not active")
        if self.frame is None:
            raise Refused("set_pose_without_origin", "the map frame has no origin yet: set origin_lat_deg/"
                          "origin_lon_deg/origin_alt_m or wait for the first GNSS fixes")
        if msg.header.frame_id not in ("", self.params.map_frame):
            raise Refused("set_pose_wrong_frame", f"pose in '{msg.header.frame_id}', expected "
                          f"'{self.params.map_frame}' (transform it first)")
        p = msg.pose.pose.position
        pos = np.array([p.x, p.y, p.z], dtype=float)
        cov = np.asarray(msg.pose.covariance, dtype=float).reshape(6, 6)
        q = quat_msg_to_wxyz(msg.pose.pose.orientation)
        pos_cov = cov[:3, :3]
        if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(pos_cov)) and np.all(np.isfinite(q))
                and abs(np.linalg.norm(q) - 1.0) < 1e-3):
            raise Refused("set_pose_invalid", f"position {pos}, orientation {q} (unit quaternion expected)")
        eigenvalues = np.linalg.eigvalsh(0.5 * (pos_cov + pos_cov.T))
        yaw_var = float(cov[5, 5])
        if not (eigenvalues.min() > 0.0 and math.isfinite(yaw_var) and 0.0 < yaw_var <= math.pi**2):
            raise Refused("set_pose_invalid", f"position covariance eigenvalues {eigenvalues} and yaw variance "
                          f"{yaw_var} must be positive (yaw at most pi^2)")
        stamp_s = stamp_to_s(msg.header.stamp)
        newest_s = self.imu_stamps.last_s
        if stamp_s == 0.0:
            if newest_s is None:
                raise Refused("set_pose_before_imu", "no IMU sample (or clock tick) yet to stamp the pose with")
            stamp_s = newest_s
        else:
            check_clock("set_pose", stamp_s, newest_s, self.params.history_s, self.params.max_future_s)
        yaw_rad = euler_from_quat(q)[2]
        self._restart("pose set on ~/set_pose")
        self._initialize(stamp_s, pos, None, yaw_rad, pos_sigma_m=float(math.sqrt(eigenvalues.max())),
                         vel_sigma_mps=SET_POSE_VEL_SIGMA_MPS, yaw_sigma_rad=math.sqrt(yaw_var))
        return (f"filter set at {pos.round(2).tolist()} m in {self.params.map_frame}, yaw "
                f"{math.degrees(yaw_rad):.1f} deg, at {stamp_s:.3f} s")
