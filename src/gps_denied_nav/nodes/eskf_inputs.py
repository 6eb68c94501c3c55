"""The ESKF node's inputs, checked for plausibility before anything reaches the filter.

Each reader turns one message into plain values or raises `Refused` with a reason key (counted on
/diagnostics as ``dropped_<key>``) and a detail for the log. The checks themselves are ROS-free
(`core.input_checks`); this module only knows the message layouts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import FluidPressure, Imu, NavSatFix

from gps_denied_nav.core.input_checks import covariance_problem, geodetic_problem, imu_problem, variance_problem
from gps_denied_nav.nodes.conversions import stamp_to_s
from gps_denied_nav.nodes.eskf_outputs import fix_covariance_enu_m2

MIN_PRESSURE_PA, MAX_PRESSURE_PA = 5.0e3, 1.2e5  # 20 km altitude .. below the Dead Sea in a storm
MAX_FIX_SIGMA_M = 1.0e4  # a "fix" vaguer than 10 km is no fix


class Refused(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class GeoFix:
    stamp_s: float
    lat_deg: float
    lon_deg: float
    alt_m: float
    cov_enu_m2: np.ndarray  # [3x3]


def _stamp_s(kind: str, header) -> float:
    """Header stamp in seconds; a nanosecond field of a second or more is malformed, not 4.29 s later."""
    if not 0 <= header.stamp.nanosec < 1_000_000_000:
        raise Refused(f"{kind}_stamp_malformed", f"{kind} stamp nanosec {header.stamp.nanosec} >= 1e9")
    return stamp_to_s(header.stamp)


def read_imu(msg: Imu, max_accel_mps2: float, max_gyro_radps: float) -> tuple[float, np.ndarray, np.ndarray]:
    a, w = msg.linear_acceleration, msg.angular_velocity
    accel, gyro = np.array([a.x, a.y, a.z]), np.array([w.x, w.y, w.z])
    problem = imu_problem(accel, gyro, max_accel_mps2, max_gyro_radps)
    if problem:
        raise Refused(problem, f"IMU sample accel {accel} m/s², gyro {gyro} rad/s (limits ±{max_accel_mps2:.0f} "
                               f"m/s², ±{max_gyro_radps:.0f} rad/s)")
    return _stamp_s("imu", msg.header), accel, gyro


def _geo_fix(kind: str, stamp_s: float, lat: float, lon: float, alt: float, cov: np.ndarray) -> GeoFix:
    problem = geodetic_problem(lat, lon, alt) or covariance_problem(cov, MAX_FIX_SIGMA_M)
    if problem:
        raise Refused(f"{kind}_{problem}", f"{kind} at {lat}, {lon}, {alt} m with covariance diagonal "
                                           f"{np.diag(cov)} m²")
    return GeoFix(stamp_s, lat, lon, alt, cov)


def read_gnss(msg: NavSatFix, default_sigma_m: float) -> GeoFix:
    cov = fix_covariance_enu_m2(msg, default_sigma_m)
    return _geo_fix("gnss", _stamp_s("gnss", msg.header), msg.latitude, msg.longitude, msg.altitude, cov)


def read_visual_fix(msg) -> tuple[GeoFix, float, float]:
    """-> (fix, heading rad, heading variance rad²) of a gps_denied_nav_interfaces/VisualFix."""
    cov = np.asarray(msg.position_covariance_enu_m2, dtype=float).reshape(3, 3)
    fix = _geo_fix("visual_fix", _stamp_s("visual_fix", msg.header), msg.latitude_deg, msg.longitude_deg, msg.altitude_m,
                   cov)
    if not math.isfinite(msg.heading_rad) or variance_problem(msg.heading_variance_rad2, math.pi**2):
        raise Refused("visual_fix_heading_invalid", f"heading {msg.heading_rad} rad, variance "
                                                    f"{msg.heading_variance_rad2} rad²")
    return fix, float(msg.heading_rad), float(msg.heading_variance_rad2)


def read_baro(msg: FluidPressure) -> tuple[float, float]:
    """-> (stamp s, pressure Pa)."""
    if not (math.isfinite(msg.fluid_pressure) and MIN_PRESSURE_PA <= msg.fluid_pressure <= MAX_PRESSURE_PA):
        raise Refused("baro_out_of_range", f"pressure {msg.fluid_pressure} Pa")
    return _stamp_s("baro", msg.header), float(msg.fluid_pressure)


def check_clock(kind: str, stamp_s: float, imu_last_s: float | None, history_s: float, future_s: float) -> None:
    """Refused unless ``stamp_s`` lies within [-history_s, +future_s] of the newest IMU stamp."""
    if imu_last_s is None:
        raise Refused(f"{kind}_before_imu", f"{kind} at {stamp_s:.3f} s before any IMU sample")
    if not -history_s <= stamp_s - imu_last_s <= future_s:
        raise Refused(f"{kind}_off_imu_clock", f"{kind} stamped {stamp_s - imu_last_s:+.3f} s from the IMU "
                                                f"(accepted {-history_s:g}..{future_s:g} s)")
