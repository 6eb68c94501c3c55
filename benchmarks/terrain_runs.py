"""One Monte Carlo run of the terrain evaluation: a flight's sensors fed to the real filter node, scored.

The run re-synthesises a cached flight's IMU, baro and GNSS with fresh noise (``FlightConfig.sensor_seed``)
and feeds them, with the flight's cached visual fixes (3-D position and covariance from the matcher, each
arriving LATENCY_S after its exposure, none inside the camera outage), to ``EskfNode``'s own callbacks in
arrival order - the deployed filter with its GNSS initialisation, baro offset, gates, heading alignment and
re-localisation, with no DDS or executor in between. Every PROBE_PERIOD_S the filter's state is scored
against the truth in its own map frame (the origin it took from the first GNSS fixes).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LATENCY_S = 0.5  # exposure -> fix at the filter (the graph's realtime p95 is ~0.4 s on 2 cores)
PROBE_PERIOD_S = 0.5
CLIP_EPOCH_S = 1_700_000_000.0  # stamps as in the clips
GNSS_SIGMA_M = (1.5, 1.5, 3.0)  # FlightConfig's GNSS noise, stated in the messages' covariance

_node_state: dict = {}


@dataclass(frozen=True)
class RunSpec:
    terrain: str
    seed: int  # flight (trajectory, frames, cached fixes)
    sensor_seed: int  # fresh IMU/baro/GNSS noise
    imu_class: str  # "bmi088" or "consumer_mems"
    outage_s: tuple  # (start, end) of the camera outage, flight seconds


def init_worker(params_file: str) -> None:
    """Once per worker process: rclpy with the package's parameters."""
    import rclpy

    from gps_denied_nav.replay.graph import ros_args

    rclpy.init(args=ros_args(params_file))
    _node_state["ready"] = True


def fly(spec: RunSpec, flight, fixes: np.ndarray, corpus_frame, overrides: dict) -> dict:
    """Feed one run to a fresh EskfNode; returns the probe series (arrays) and the node's counters."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import FluidPressure, Imu, NavSatFix, NavSatStatus

    from gps_denied_nav.core.eskf_diagnostics import ReinitReason
    from gps_denied_nav.nodes.conversions import s_to_stamp
    from gps_denied_nav.nodes.eskf_node import EskfNode
    from gps_denied_nav_interfaces.msg import VisualFix

    node = EskfNode(parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    events = []  # (arrival flight seconds, order, callback, message)
    imu = flight.imu
    for t, a, w in zip(imu.t_s, imu.accel_body_mps2, imu.gyro_body_radps):
        msg = Imu()
        msg.header.stamp = s_to_stamp(CLIP_EPOCH_S + t)
        msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = (float(v) for v in a)
        msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = (float(v) for v in w)
        events.append((t, 0, node._on_imu, msg))
    for t, p in zip(flight.baro.t_s, flight.baro.pressure_pa):
        msg = FluidPressure(fluid_pressure=float(p))
        msg.header.stamp = s_to_stamp(CLIP_EPOCH_S + t)
        events.append((t, 1, node._on_baro, msg))
    gnss_cov = np.diag(np.square(GNSS_SIGMA_M)).ravel().tolist()
    for t, lat, lon, alt in zip(flight.gnss_stamps_s, flight.gnss_lat_deg, flight.gnss_lon_deg, flight.gnss_alt_m):
        msg = NavSatFix(latitude=float(lat), longitude=float(lon), altitude=float(alt), position_covariance=gnss_cov,
                        position_covariance_type=NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN)
        msg.status.status = NavSatStatus.STATUS_FIX
        msg.header.stamp = s_to_stamp(CLIP_EPOCH_S + t)
        events.append((t, 2, node._on_gnss, msg))
    lat, lon, alt = corpus_frame.to_geodetic(fixes[:, 1:4]) if len(fixes) else ([], [], [])
    fed_s = []
    for row, la, lo, al in zip(fixes, lat, lon, alt):
        t = float(row[0])
        if spec.outage_s[0] <= t < spec.outage_s[1]:
            continue
        fed_s.append(t)
        msg = VisualFix(latitude_deg=float(la), longitude_deg=float(lo), altitude_m=float(al),
                        heading_rad=float(row[13]), heading_variance_rad2=float(row[14]), inliers=int(row[15]))
        msg.position_covariance_enu_m2 = [float(v) for v in row[4:13]]
        msg.header.stamp = s_to_stamp(CLIP_EPOCH_S + t)
        msg.header.frame_id = "map"
        events.append((t + LATENCY_S, 3, node._on_visual_fix, msg))
    probes = np.arange(PROBE_PERIOD_S, flight.duration_s - 1e-6, PROBE_PERIOD_S)
    events += [(t, 4, None, None) for t in probes]
    events.sort(key=lambda e: (e[0], e[1]))

    truth = flight.truth_imu
    out = {k: [] for k in ("t_s", "err_enu_m", "cov_pos_m2", "lost")}
    truth_enu = None
    for _, _, callback, msg in events:
        if callback is not None:
            callback(msg)
            continue
        f = node.filter
        if not f.initialized or node.frame is None:
            continue
        if truth_enu is None:
            truth_enu = node.frame.to_enu(truth.lat_deg, truth.lon_deg, truth.alt_m)  # [N, 3]
        t_s = f.stamp_s - CLIP_EPOCH_S
        i = int(np.clip(np.searchsorted(truth.t_s, t_s - 1e-6), 0, len(truth.t_s) - 1))
        out["t_s"].append(t_s)
        out["err_enu_m"].append(f.pos_enu_m - truth_enu[i])
        out["cov_pos_m2"].append(f.covariance[:3, :3].copy())
        out["lost"].append(f.reinit_reason is not ReinitReason.NONE)
    counts = node.status.snapshot()
    node.destroy_node()
    result = {k: np.array(v) for k, v in out.items()}
    result["counts"] = dict(counts)
    result["fix_stamps_s"] = np.array(fed_s)  # exposures of the fixes fed (the camera outage left out)
    return result
