"""Single faults injected into a flight clip, and the score of a run that met one (issue 8's fault table).

Each fault is one finite but absurd input, or a loss, of the kind that used to ruin a flight for good:
an IMU sample of 1e12 m/s² or 1e12 rad/s, an IMU sample stamped two hours ahead, a first GNSS fix at
latitude 200, a strong visual fix whose heading variance is NaN, 5000 visual fixes stamped an hour
ahead, two seconds of IMU missing. `faulted_messages` rewrites a clip's message stream with one of them;
`write_faulted_clip` writes that as a bag for a full-graph replay (benchmarks/eval_faults.py), and the
node test feeds the same stream to the filter node's callbacks (tests/nodes/test_eskf_faults.py).
A run passes when every fused fix it still claims from ``SETTLE_S`` after the fault is within
``MAX_CLAIMED_ERROR_M`` of the truth, it ends within ``MAX_END_ERROR_M``, and it claims at least half as
many fixes after the fault as the clean run (refusing to claim anything is not recovery).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from sensor_msgs.msg import NavSatStatus

from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.report import GeoTrack
from gps_denied_nav.core.report_state import StateTrack
from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.conversions import quat_msg_to_wxyz, s_to_stamp, stamp_to_s
from gps_denied_nav.replay.bag_types import BAG_VERSION, typestore
from gps_denied_nav.replay.player import message_class
from gps_denied_nav.sim.clip import read_clip, read_ground_truth
from gps_denied_nav_interfaces.msg import VisualFix

FAULTS = ("imu_accel_1e12", "imu_gyro_1e12", "imu_stamp_2h_ahead", "gnss_first_latitude_200",
          "visual_fix_nan_heading_variance", "visual_fixes_hour_ahead", "imu_gap_2s")
VISUAL_FIX_TYPE = "gps_denied_nav_interfaces/msg/VisualFix"
SETTLE_S = 15.0
MAX_CLAIMED_ERROR_M = 50.0
MAX_END_ERROR_M = 5.0
IMU_GAP_S = 2.0
FUTURE_FIXES = 5000


@dataclass
class Message:
    """One message of a clip: log time, topic, ROS 2 type name and the decoded rclpy message."""

    t_ns: int
    topic: str
    msgtype: str
    msg: object

    def raw(self) -> bytes:
        return serialize_message(self.msg)


def read_messages(clip: Path, topics: set[str] | None = None) -> list[Message]:
    """Every message of ``clip`` (or those on ``topics``) decoded, in log-time order."""
    return [Message(t_ns, topic, msgtype, deserialize_message(raw, message_class(msgtype)))
            for topic, t_ns, raw, msgtype in read_clip(clip) if topics is None or topic in topics]


def fault_time_s(messages: list[Message], fault: str, at_s: float) -> float:
    """The stamp (s) at which ``fault`` strikes: ``at_s`` after the clip's start, or the first GNSS fix."""
    if fault == "gnss_first_latitude_200":
        return next(m.t_ns for m in messages if m.topic == names.GNSS_FIX) * 1e-9
    return messages[0].t_ns * 1e-9 + at_s


def _strong_fix(t_s: float, truth: GeoTrack, stamp_s: float, heading_var_rad2: float) -> VisualFix:
    """A confident visual fix on the true position at ``t_s`` (the fault is in its stamp or variance)."""
    fix = VisualFix(latitude_deg=float(np.interp(t_s, truth.t_s, truth.lat_deg)),
                    longitude_deg=float(np.interp(t_s, truth.t_s, truth.lon_deg)),
                    altitude_m=float(np.interp(t_s, truth.t_s, truth.alt_m)), heading_rad=0.0,
                    heading_variance_rad2=heading_var_rad2, inliers=500)
    fix.header.stamp = s_to_stamp(stamp_s)
    fix.position_covariance_enu_m2 = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 4.0]
    return fix


def faulted_messages(messages: list[Message], fault: str, at_s: float, truth: GeoTrack) -> list[Message]:
    """A copy of ``messages`` with ``fault`` injected (see FAULTS); inputs are not modified."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
    t_fault_s = fault_time_s(messages, fault, at_s)
    t_fault_ns = int(t_fault_s * 1e9)
    out = list(messages)
    imu = [i for i, m in enumerate(out) if m.topic == names.IMU and m.t_ns >= t_fault_ns]
    if fault in ("imu_accel_1e12", "imu_gyro_1e12", "imu_stamp_2h_ahead"):
        i = imu[0]
        bad = Message(out[i].t_ns, out[i].topic, out[i].msgtype, copy.deepcopy(out[i].msg))
        if fault == "imu_accel_1e12":
            bad.msg.linear_acceleration.x = 1e12
            out[i] = bad
        elif fault == "imu_gyro_1e12":
            bad.msg.angular_velocity.z = 1e12
            out[i] = bad
        else:
            bad.msg.header.stamp = s_to_stamp(stamp_to_s(bad.msg.header.stamp) + 7200.0)
            out.insert(i + 1, bad)
    elif fault == "imu_gap_2s":
        gone = {i for i in imu if out[i].t_ns < t_fault_ns + int(IMU_GAP_S * 1e9)}
        out = [m for i, m in enumerate(out) if i not in gone]
    elif fault == "gnss_first_latitude_200":
        i = next(i for i, m in enumerate(out) if m.topic == names.GNSS_FIX)
        bad = copy.deepcopy(out[i].msg)
        bad.latitude = 200.0
        out[i] = Message(out[i].t_ns, out[i].topic, out[i].msgtype, bad)
    elif fault == "visual_fix_nan_heading_variance":
        out.append(Message(t_fault_ns, names.VISUAL_FIX, VISUAL_FIX_TYPE,
                           _strong_fix(t_fault_s, truth, t_fault_s, float("nan"))))
    else:  # visual_fixes_hour_ahead: spread over 5 s, as a clock fault in a matcher would send them
        for k in range(FUTURE_FIXES):
            t_ns = t_fault_ns + int(k * 5e9 / FUTURE_FIXES)
            out.append(Message(t_ns, names.VISUAL_FIX, VISUAL_FIX_TYPE,
                               _strong_fix(t_ns * 1e-9, truth, t_ns * 1e-9 + 3600.0, 1e-3)))
    out.sort(key=lambda m: m.t_ns)  # stable: an inserted message stays after the one it copies
    return out


def write_faulted_clip(clip: Path, out: Path, fault: str, at_s: float) -> Path:
    """``clip`` with ``fault`` injected ``at_s`` after its start, written as an MCAP bag at ``out``."""
    messages = read_messages(clip)
    faulted = faulted_messages(messages, fault, at_s, GeoTrack.from_arrays(*read_ground_truth(clip)))
    writer = Writer(out, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    try:
        conns = {}
        for m in faulted:
            if m.topic not in conns:
                conns[m.topic] = writer.add_connection(m.topic, m.msgtype, typestore=typestore())
            writer.write(conns[m.topic], m.t_ns, m.raw())
    finally:
        writer.close()
    return out


@dataclass(frozen=True)
class FaultScore:
    fault: str
    fault_s: float                 # stamp the fault struck at
    claimed_after: int             # fused fixes published with a fix status after it
    max_claimed_error_m: float     # worst of those from SETTLE_S after the fault on (NaN: none)
    end_error_m: float             # horizontal error of the last published estimate

    def problems(self, clean_claimed_after: int) -> list[str]:
        """What fails the acceptance of issue 8 (empty: it passes)."""
        out = []
        if self.max_claimed_error_m > MAX_CLAIMED_ERROR_M:  # NaN (none claimed) is judged by the count
            out.append(f"a fix claimed {SETTLE_S:.0f} s after the fault is {self.max_claimed_error_m:.1f} m off")
        if not self.end_error_m <= MAX_END_ERROR_M:
            out.append(f"the run ends {self.end_error_m:.1f} m off")
        if self.claimed_after < 0.5 * clean_claimed_after:
            out.append(f"{self.claimed_after} fixes claimed after the fault, clean run {clean_claimed_after}")
        return out


def score_fault(fault: str, fault_s: float, fixes: list, truth: GeoTrack) -> FaultScore:
    """Score the fused NavSatFix messages ``fixes`` of a run against the clip's ``truth``."""
    frame = LocalTangentPlane(truth.lat_deg[0], truth.lon_deg[0], 0.0)
    t = np.array([stamp_to_s(m.header.stamp) for m in fixes])
    claimed = np.array([m.status.status != NavSatStatus.STATUS_NO_FIX for m in fixes], dtype=bool)
    lla = np.array([(m.latitude, m.longitude, m.altitude) for m in fixes], dtype=float).reshape(-1, 3)
    est = frame.to_enu(lla[:, 0], lla[:, 1], lla[:, 2]).reshape(-1, 3)[:, :2]
    true = frame.to_enu(*(np.interp(t, truth.t_s, col) for col in (truth.lat_deg, truth.lon_deg, truth.alt_m)))
    true = true.reshape(-1, 3)[:, :2]
    err = np.linalg.norm(est - true, axis=1)
    late = claimed & (t >= fault_s + SETTLE_S)
    return FaultScore(fault, fault_s, int(np.sum(claimed & (t >= fault_s))),
                      float(np.max(err[late])) if np.any(late) else math.nan,
                      float(err[-1]) if len(err) else math.inf)


def odometry_track(frame: LocalTangentPlane, odoms: list) -> StateTrack:
    """nav_msgs/Odometry messages of the filter (map frame ``frame``) as a StateTrack with covariances."""
    t = [stamp_to_s(m.header.stamp) for m in odoms]
    pos = np.array([[m.pose.pose.position.x, m.pose.pose.position.y, m.pose.pose.position.z] for m in odoms])
    q = np.array([quat_msg_to_wxyz(m.pose.pose.orientation) for m in odoms])
    v = np.array([[m.twist.twist.linear.x, m.twist.twist.linear.y, m.twist.twist.linear.z] for m in odoms])
    pose = np.array([m.pose.covariance for m in odoms]).reshape(-1, 6, 6)
    twist = np.array([m.twist.covariance for m in odoms]).reshape(-1, 6, 6)
    return StateTrack.from_body_twist(frame, t, pos, q, v, pose[:, :3, :3], twist[:, :3, :3], pose[:, 3:, 3:])


NEES_95_UPPER_3DOF = 9.348  # chi2.ppf(0.975, 3)


def nees_after_gap(series, fault_s: float, delay_s: float = 2.0, window_s: float = 10.0) -> dict:
    """Share of velocity and attitude NEES samples inside the upper 95 % bound, from ``delay_s`` after the
    end of the IMU gap for ``window_s`` (a StateErrorSeries of the run)."""
    start = fault_s + IMU_GAP_S + delay_s
    window = (series.t_s >= start) & (series.t_s < start + window_s)
    return {name: float(np.mean(getattr(series, f"nees_{name}")[window] <= NEES_95_UPPER_3DOF))
            for name in ("vel", "att")}
