"""Flight-controller bridge: the fused fix to the autopilot as MAVLink GPS_INPUT, over UDP or serial (pymavlink).

ArduPilot takes it as a GPS (GPS_TYPE=14, "MAV") and PX4 through its GPS_INPUT handler; core/gps_input.py turns
the filter's NavSatFix (position, ENU covariance, tracking or lost) and odometry (velocity and its covariance)
into the message: accuracies from the covariance, fix type 3 only while the filter tracks and its fix is
fresh, 0 otherwise. Sent at ``rate_hz`` on a steady timer with a 1 Hz HEARTBEAT of its own (an onboard
controller), so the link is visible to the autopilot and to a ground station. A send that fails (a serial
link that went away) is counted on /diagnostics and retried at the next period: the graph keeps navigating.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.clock import Clock, ClockType
from sensor_msgs.msg import NavSatFix, NavSatStatus

from gps_denied_nav.core.gps_input import FusedFix, GpsInputConfig, gps_input_fields
from gps_denied_nav.core.rotations import quat_to_rotmat
from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.conversions import quat_msg_to_wxyz, stamp_to_s
from gps_denied_nav.nodes.node_main import run_node
from gps_denied_nav.nodes.stage_node import StageNode, StageParams

HEARTBEAT_PERIOD_S = 1.0


@dataclass(frozen=True)
class FcBridgeParams(StageParams):
    mavlink_url: str = "udpout:127.0.0.1:14550"  # pymavlink connection: udpout:HOST:PORT, or a serial DEVICE,BAUD
    rate_hz: float = 5.0  # GPS_INPUT rate (ArduPilot's GPS drivers expect 5-10 Hz)
    system_id: int = 1  # the vehicle's MAVLink system id: the autopilot takes GPS_INPUT from its own system
    component_id: int = 197  # MAV_COMP_ID_VISUAL_INERTIAL_ODOMETRY
    geoid_separation_m: float = 0.0  # N at the site: GPS_INPUT altitude = fused ellipsoidal altitude - N
    dop_reference_sigma_m: float = 2.0  # hdop/vdop = the fused 1σ accuracies / this
    satellites_visible: int = 10  # reported while the fix is 3-D (autopilots want >= 6)
    max_fix_age_s: float = 0.5  # an older fused fix goes out as no fix


class FcBridgeNode(StageNode):
    params_cls = FcBridgeParams

    def __init__(self, **kwargs):
        super().__init__(names.FC_BRIDGE_NODE, **kwargs)

    def configure_stage(self) -> None:
        p = self.params
        if not p.rate_hz > 0.0:
            raise ValueError(f"rate_hz must be positive, got {p.rate_hz}")
        os.environ.setdefault("MAVLINK20", "1")  # MAVLink 2 unless asked otherwise (read when pymavlink loads)
        from pymavlink import mavutil  # only this node needs it

        self.mavutil = mavutil
        # A MAVLink 1 dialect has no extension fields (GPS_INPUT's yaw): send what the loaded one knows.
        self.gps_input_fields = set(mavutil.mavlink.MAVLink_gps_input_message.fieldnames)
        try:
            self.link = mavutil.mavlink_connection(p.mavlink_url, source_system=p.system_id,
                                                   source_component=p.component_id)
        except Exception as exc:  # noqa: BLE001 - pymavlink raises socket, serial and value errors alike
            raise OSError(f"MAVLink endpoint {p.mavlink_url!r}: {type(exc).__name__}: {exc}") from exc
        self.config = GpsInputConfig(p.geoid_separation_m, p.dop_reference_sigma_m, p.satellites_visible,
                                     p.max_fix_age_s)
        self.fix: NavSatFix | None = None
        self.velocity = (np.zeros(3), np.eye(3) * 1e4)  # ENU velocity and covariance until odometry arrives
        self.subscribe(NavSatFix, names.FIX, self._on_fix, depth=5)
        self.subscribe(Odometry, names.ODOMETRY, self._on_odometry, depth=5)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.timers_ = [self.create_timer(1.0 / p.rate_hz, self._send_gps_input, clock=steady),
                        self.create_timer(HEARTBEAT_PERIOD_S, self._send_heartbeat, clock=steady)]
        self.status.set("mavlink", f"{p.mavlink_url} as {p.system_id}/{p.component_id}, GPS_INPUT at {p.rate_hz:g} Hz")

    def release_stage(self) -> None:
        for timer in getattr(self, "timers_", []):
            self.destroy_timer(timer)
        self.timers_ = []
        link = self.__dict__.pop("link", None)
        if link is not None:
            link.close()

    def _on_fix(self, msg: NavSatFix) -> None:
        self.fix = msg

    def _on_odometry(self, msg: Odometry) -> None:
        R = quat_to_rotmat(quat_msg_to_wxyz(msg.pose.pose.orientation))
        t = msg.twist.twist.linear
        cov_body = np.asarray(msg.twist.covariance, dtype=float).reshape(6, 6)[:3, :3]
        self.velocity = (R @ np.array([t.x, t.y, t.z]), R @ cov_body @ R.T)  # REP-105: twist in base_link

    def fused_fix(self) -> FusedFix | None:
        msg = self.fix
        if msg is None:
            return None
        cov = (np.asarray(msg.position_covariance, dtype=float).reshape(3, 3)
               if msg.position_covariance_type != NavSatFix.COVARIANCE_TYPE_UNKNOWN else np.eye(3) * 1e6)
        return FusedFix(stamp_to_s(msg.header.stamp), msg.latitude, msg.longitude, msg.altitude, cov,
                        self.velocity[0], self.velocity[1], msg.status.status >= NavSatStatus.STATUS_FIX)

    def _send_gps_input(self) -> None:
        if not self.active:
            return
        fields = gps_input_fields(self.fused_fix(), self.get_clock().now().nanoseconds * 1e-9, self.config)
        try:
            self.link.mav.gps_input_send(**{k: v for k, v in fields.items() if k in self.gps_input_fields})
        except OSError as exc:  # a serial device unplugged, a network gone: count it, try again next period
            self.status.drop("mavlink_send_error", exc)
            return
        except (struct.error, ValueError) as exc:  # a field out of its MAVLink range: a bug, but never fatal here
            self.status.drop("gps_input_unpackable", f"{exc}: {fields}")
            return
        self.status.count("gps_input_sent")
        self.status.count("gps_input_fix_3d" if fields["fix_type"] == 3 else "gps_input_no_fix")

    def _send_heartbeat(self) -> None:
        m = self.mavutil.mavlink
        try:
            self.link.mav.heartbeat_send(m.MAV_TYPE_ONBOARD_CONTROLLER, m.MAV_AUTOPILOT_INVALID, 0, 0,
                                         m.MAV_STATE_ACTIVE if self.active else m.MAV_STATE_STANDBY)
        except OSError as exc:
            self.status.drop("mavlink_send_error", exc)


def main(args=None) -> None:
    run_node(FcBridgeNode, args)


if __name__ == "__main__":
    main()
