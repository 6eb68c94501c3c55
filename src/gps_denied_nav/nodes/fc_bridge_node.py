"""Flight-controller bridge: the fused estimate to the autopilot over MAVLink, UDP or serial (pymavlink).

``message`` picks what it is to the autopilot:
- ``gps_input`` (default): a GPS. ArduPilot GPS_TYPE=14 ("MAV"), PX4's GPS_INPUT handler; core/gps_input.py
  turns the filter's NavSatFix (position, ENU covariance, tracking or lost) and odometry (velocity and its
  covariance) into the message: fix type 3 only while the filter tracks and its fix is fresh, 0 otherwise.
- ``odometry`` / ``vision_position_estimate``: external vision in a local frame (ArduPilot VISO_TYPE=1, PX4
  EKF2_EV_CTRL); core/mavlink_odometry.py converts the odometry ENU/FLU -> NED/FRD. A lost filter or stale
  odometry sends nothing (the autopilots time external vision out themselves), counted on /diagnostics;
  a return from lost bumps reset_counter. The latched map origin goes out as SET_GPS_GLOBAL_ORIGIN when it
  arrives and every ORIGIN_PERIOD_S, so that the autopilot's local frame is the filter's map frame.
Sent at ``rate_hz`` on a steady timer with a 1 Hz HEARTBEAT of its own (an onboard controller), so the link
is visible to the autopilot and to a ground station. A send that fails (a serial link that went away) is
counted on /diagnostics and retried at the next period; an endpoint that cannot be opened (a serial port
not there yet) or keeps failing is ERROR on /diagnostics and reopened every RECONNECT_S. Either way the
graph keeps navigating; only a malformed URL fails configure.
"""
from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from nav_msgs.msg import Odometry
from rclpy.clock import Clock, ClockType
from sensor_msgs.msg import NavSatFix, NavSatStatus

from gps_denied_nav.core.gps_input import FusedFix, GpsInputConfig, gps_input_fields
from gps_denied_nav.core.input_checks import geodetic_problem
from gps_denied_nav.core.mavlink_odometry import (FusedPose, ResetCounter, odometry_fields,
                                                  set_gps_global_origin_fields, vision_position_fields)
from gps_denied_nav.core.rotations import quat_to_rotmat
from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.conversions import quat_msg_to_wxyz, stamp_to_s
from gps_denied_nav.nodes.node_main import run_node
from gps_denied_nav.nodes.qos import latched_qos
from gps_denied_nav.nodes.stage_node import StageNode, StageParams

HEARTBEAT_PERIOD_S = 1.0
RECONNECT_S = 2.0  # an endpoint that could not be opened, or went away, is tried again this often
MAX_SEND_FAILURES_S = 2.0  # sends failing in a row for this long: the link is closed and reopened
ORIGIN_PERIOD_S = 10.0  # SET_GPS_GLOBAL_ORIGIN again, for an autopilot that booted or reconnected since
MESSAGES = ("gps_input", "odometry", "vision_position_estimate")


@dataclass(frozen=True)
class FcBridgeParams(StageParams):
    mavlink_url: str = "udpout:127.0.0.1:14550"  # pymavlink connection: udpout:HOST:PORT, or a serial DEVICE,BAUD
    message: str = "gps_input"  # gps_input (a GPS), odometry or vision_position_estimate (external vision)
    rate_hz: float = 5.0  # message rate (ArduPilot's GPS drivers expect 5-10 Hz)
    system_id: int = 1  # the vehicle's MAVLink system id: the autopilot takes GPS_INPUT from its own system
    component_id: int = 197  # MAV_COMP_ID_VISUAL_INERTIAL_ODOMETRY
    geoid_separation_m: float = 0.0  # N at the site: GPS_INPUT altitude = fused ellipsoidal altitude - N
    dop_reference_sigma_m: float = 2.0  # hdop/vdop = the fused 1σ accuracies / this
    satellites_visible: int = 10  # reported while the fix is 3-D (autopilots want >= 6)
    max_fix_age_s: float = 0.5  # an older fused fix goes out as no fix (odometry modes: is not sent)
    quality_reference_sigma_m: float = 2.0  # ODOMETRY quality 100 up to this horizontal 1σ, 100·this/σ beyond


class FcBridgeNode(StageNode):
    params_cls = FcBridgeParams

    def __init__(self, **kwargs):
        super().__init__(names.FC_BRIDGE_NODE, **kwargs)

    def configure_stage(self) -> None:
        p = self.params
        if not p.rate_hz > 0.0:
            raise ValueError(f"rate_hz must be positive, got {p.rate_hz}")
        if p.message not in MESSAGES:
            raise ValueError(f"message must be one of {', '.join(MESSAGES)}, got {p.message!r}")
        os.environ.setdefault("MAVLINK20", "1")  # MAVLink 2 unless asked otherwise (read when pymavlink loads)
        from pymavlink import mavutil  # only this node needs it

        self.mavutil = mavutil
        self.message = p.message
        local = p.message != "gps_input"
        needed = (p.message, "set_gps_global_origin") if local else (p.message,)
        missing = [m for m in needed if not hasattr(mavutil.mavlink, f"MAVLink_{m}_message")]
        if missing:
            raise ValueError(f"the loaded MAVLink dialect has no {', '.join(missing).upper()}: set MAVLINK20=1")
        # A MAVLink 1 dialect has no extension fields (GPS_INPUT's yaw): send what the loaded one knows.
        self.fieldnames = {m: set(getattr(mavutil.mavlink, f"MAVLink_{m}_message").fieldnames) for m in needed}
        self.link, self.link_error, self.send_failures = None, "", 0
        self.status.set_health(self._health)
        try:
            self._connect()
        except Exception as exc:  # noqa: BLE001 - anything but an OSError: the URL itself is wrong
            raise ValueError(f"MAVLink endpoint {p.mavlink_url!r}: {type(exc).__name__}: {exc}") from exc
        self.config = GpsInputConfig(p.geoid_separation_m, p.dop_reference_sigma_m, p.satellites_visible,
                                     p.max_fix_age_s)
        self.fix: NavSatFix | None = None
        self.odometry: Odometry | None = None
        self.origin: NavSatFix | None = None
        self.origin_due = False
        self.resets = ResetCounter()
        self.velocity = (np.zeros(3), np.eye(3) * 1e4)  # ENU velocity and covariance until odometry arrives
        self.subscribe(NavSatFix, names.FIX, self._on_fix, depth=5)
        self.subscribe(Odometry, names.ODOMETRY, self._on_odometry, depth=5)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.timers_ = [self.create_timer(1.0 / p.rate_hz, self._send_local if local else self._send_gps_input,
                                          clock=steady),
                        self.create_timer(HEARTBEAT_PERIOD_S, self._send_heartbeat, clock=steady),
                        self.create_timer(RECONNECT_S, self._reconnect, clock=steady)]
        if local:
            self.subscribe(NavSatFix, names.MAP_ORIGIN, self._on_map_origin, qos=latched_qos())
            self.timers_.append(self.create_timer(ORIGIN_PERIOD_S, self._origin_due_again, clock=steady))
        self.status.set("mavlink", f"{p.mavlink_url} as {p.system_id}/{p.component_id}, "
                                   f"{p.message.upper()} at {p.rate_hz:g} Hz")

    def release_stage(self) -> None:
        for timer in getattr(self, "timers_", []):
            self.destroy_timer(timer)
        self.timers_ = []
        link = self.__dict__.pop("link", None)
        if link is not None:
            link.close()

    def _connect(self) -> None:
        """Open the endpoint; an OSError (no such serial device, no permission, no route) leaves the node
        configured without a link, ERROR on /diagnostics, retried every RECONNECT_S: the autopilot's port may
        appear later (a USB adapter enumerating) and the graph navigates meanwhile."""
        p = self.params
        try:
            self.link = self.mavutil.mavlink_connection(p.mavlink_url, source_system=p.system_id,
                                                        source_component=p.component_id)
        except OSError as exc:
            self.link = None
            self.link_error = f"MAVLink endpoint {p.mavlink_url!r}: {type(exc).__name__}: {exc}"
            self.status.drop("mavlink_connect_error", self.link_error)
            return
        self.link_error, self.send_failures = "", 0
        self.status.count("mavlink_connected")

    def _reconnect(self) -> None:
        if self.link is None:
            try:
                self._connect()
            except Exception as exc:  # noqa: BLE001 - an exception escaping a timer stops the executor
                self.link_error = f"MAVLink endpoint {self.params.mavlink_url!r}: {type(exc).__name__}: {exc}"

    def _link_failed(self, exc: Exception) -> None:
        """A send failed: counted; after MAX_SEND_FAILURES_S of failures in a row the link is closed and reopened
        (a serial adapter unplugged and plugged back gets a new file descriptor)."""
        self.status.drop("mavlink_send_error", exc)
        self.send_failures += 1
        if self.send_failures >= max(2, MAX_SEND_FAILURES_S * self.params.rate_hz) and self.link is not None:
            link, self.link = self.link, None
            self.link_error = f"MAVLink endpoint {self.params.mavlink_url!r} gone: {type(exc).__name__}: {exc}"
            try:
                link.close()
            except OSError:
                pass

    def _check_port(self) -> None:
        """pymavlink swallows a serial write error and marks the port dead: raise it as the OSError it was."""
        if getattr(self.link, "portdead", False):
            raise OSError(errno.EIO, f"serial device {self.params.mavlink_url} is dead (unplugged?)")

    def _health(self):
        if self.link is None and self.link_error:
            return DiagnosticStatus.ERROR, f"{self.link_error}; retrying every {RECONNECT_S:g} s"
        return None

    def _on_fix(self, msg: NavSatFix) -> None:
        self.fix = msg
        self.resets.observe(msg.status.status >= NavSatStatus.STATUS_FIX)  # back from lost: re-localised

    def _on_odometry(self, msg: Odometry) -> None:
        self.odometry = msg
        R = quat_to_rotmat(quat_msg_to_wxyz(msg.pose.pose.orientation))
        t = msg.twist.twist.linear
        cov_body = np.asarray(msg.twist.covariance, dtype=float).reshape(6, 6)[:3, :3]
        self.velocity = (R @ np.array([t.x, t.y, t.z]), R @ cov_body @ R.T)  # REP-105: twist in base_link

    def _on_map_origin(self, msg: NavSatFix) -> None:
        problem = geodetic_problem(msg.latitude, msg.longitude, msg.altitude)
        if problem:
            self.status.drop(f"map_origin_{problem}", f"{msg.latitude}, {msg.longitude}, {msg.altitude} m")
            return
        self.origin, self.origin_due = msg, True

    def _origin_due_again(self) -> None:
        self.origin_due = self.origin is not None

    def fused_fix(self) -> FusedFix | None:
        msg = self.fix
        if msg is None:
            return None
        cov = (np.asarray(msg.position_covariance, dtype=float).reshape(3, 3)
               if msg.position_covariance_type != NavSatFix.COVARIANCE_TYPE_UNKNOWN else np.eye(3) * 1e6)
        return FusedFix(stamp_to_s(msg.header.stamp), msg.latitude, msg.longitude, msg.altitude, cov,
                        self.velocity[0], self.velocity[1], msg.status.status >= NavSatStatus.STATUS_FIX)

    def _send(self, message: str, fields: dict) -> bool:
        """``<message>_send`` with the fields the loaded dialect knows; failures counted, never raised."""
        known = self.fieldnames[message]
        if self.link is None:
            self.status.count(f"{message}_not_connected")
            return False
        try:
            getattr(self.link.mav, f"{message}_send")(**{k: v for k, v in fields.items() if k in known})
            self._check_port()
        except OSError as exc:  # a serial device unplugged, a network gone: count it, try again next period
            self._link_failed(exc)
            return False
        except (struct.error, ValueError) as exc:  # a field out of its MAVLink range: a bug, but never fatal here
            self.status.drop(f"{message}_unpackable", f"{exc}: {fields}")
            return False
        self.send_failures = 0
        self.status.count(f"{message}_sent")
        return True

    def _send_gps_input(self) -> None:
        if not self.active:
            return
        fields = gps_input_fields(self.fused_fix(), self.get_clock().now().nanoseconds * 1e-9, self.config)
        if self._send("gps_input", fields):
            self.status.count("gps_input_fix_3d" if fields["fix_type"] == 3 else "gps_input_no_fix")

    def _send_local(self) -> None:
        """ODOMETRY or VISION_POSITION_ESTIMATE from the latest odometry; nothing while lost or stale."""
        if not self.active:
            return
        if self.origin_due:
            o = self.origin
            self.origin_due = not self._send("set_gps_global_origin", set_gps_global_origin_fields(
                o.latitude, o.longitude, o.altitude - self.params.geoid_separation_m, self.params.system_id))
        odom, fix = self.odometry, self.fix
        if odom is None or fix is None:
            self.status.count(f"{self.message}_withheld_no_estimate")
            return
        tracking = fix.status.status >= NavSatStatus.STATUS_FIX
        if not tracking:
            self.status.count(f"{self.message}_withheld_lost")
            return
        age_s = self.get_clock().now().nanoseconds * 1e-9 - stamp_to_s(odom.header.stamp)
        if not 0.0 <= age_s <= self.params.max_fix_age_s:
            self.status.count(f"{self.message}_withheld_stale")
            return
        pose = fused_pose(odom, tracking)
        if self.message == "odometry":
            fields = odometry_fields(pose, self.resets.count, self.params.quality_reference_sigma_m)
        else:
            fields = vision_position_fields(pose, self.resets.count)
        self._send(self.message, fields)

    def _send_heartbeat(self) -> None:
        m = self.mavutil.mavlink
        if self.link is None:
            return
        try:
            self.link.mav.heartbeat_send(m.MAV_TYPE_ONBOARD_CONTROLLER, m.MAV_AUTOPILOT_INVALID, 0, 0,
                                         m.MAV_STATE_ACTIVE if self.active else m.MAV_STATE_STANDBY)
            self._check_port()
        except OSError as exc:
            self._link_failed(exc)


def fused_pose(msg: Odometry, tracking: bool) -> FusedPose:
    """nav_msgs/Odometry (map ENU pose, REP-105 body twist, 6x6 covariances) -> core's FusedPose."""
    p, t = msg.pose.pose.position, msg.twist.twist
    return FusedPose(stamp_to_s(msg.header.stamp), np.array([p.x, p.y, p.z]),
                     quat_msg_to_wxyz(msg.pose.pose.orientation), np.array([t.linear.x, t.linear.y, t.linear.z]),
                     np.array([t.angular.x, t.angular.y, t.angular.z]),
                     np.asarray(msg.pose.covariance, dtype=float).reshape(6, 6),
                     np.asarray(msg.twist.covariance, dtype=float).reshape(6, 6), tracking)


def main(args=None) -> None:
    run_node(FcBridgeNode, args)


if __name__ == "__main__":
    main()
