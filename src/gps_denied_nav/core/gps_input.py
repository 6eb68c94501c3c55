"""The fused fix as MAVLink GPS_INPUT (ArduPilot GPS_TYPE=14 "MAV", PX4's GPS_INPUT handler): ROS-free
arithmetic, tested on its own; fc_bridge_node sends what it returns.

- Position: WGS84 latitude/longitude in 1e-7 degrees; GPS_INPUT's altitude is above mean sea level, the
  filter's is ellipsoidal: MSL = ellipsoidal - the geoid separation N at the site (a parameter: EGM96 gives
  N ~ 18 m in southern Finland, ~ 47 m in southern England).
- Accuracies from the filter's covariance, 1σ: horizontal along the worst axis, vertical, speed along the
  worst axis. A real receiver's DOPs do not exist here: hdop/vdop are the accuracies divided by a reference
  σ (``dop_reference_sigma_m``), so that an autopilot gating on HDOP (ArduPilot's arming check, GPS_HDOP_GOOD
  1.4) sees the fix degrade as the filter's covariance grows.
- Fix type 3 (3-D) only while the filter tracks and its fix is fresh; 0 (no fix) when it is lost or stale,
  so that the autopilot falls back to its own dead reckoning instead of trusting an old position.
- Time: the fix's stamp as GPS week and milliseconds (GPS time = UTC + GPS_LEAP_SECONDS since 1980-01-06).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GPS_EPOCH_UNIX_S = 315_964_800  # 1980-01-06T00:00:00Z
GPS_LEAP_SECONDS = 18  # GPS - UTC since 2017-01-01 (no leap second announced since)
SECONDS_PER_WEEK = 604_800
FIX_NONE, FIX_3D = 0, 3
IGNORE_YAW = 0  # yaw 0 already means "not available" in GPS_INPUT


@dataclass(frozen=True)
class FusedFix:
    """What the filter published: stamp (UTC s), WGS84 position, ENU position covariance, ENU velocity and
    its covariance, whether it tracks (NavSatFix STATUS_FIX) or is lost."""
    stamp_s: float
    lat_deg: float
    lon_deg: float
    alt_ellipsoid_m: float
    cov_enu_m2: np.ndarray  # 3x3
    vel_enu_mps: np.ndarray  # 3
    vel_cov_m2ps2: np.ndarray  # 3x3
    tracking: bool


@dataclass(frozen=True)
class GpsInputConfig:
    geoid_separation_m: float = 0.0  # N at the site: MSL altitude = ellipsoidal - N
    dop_reference_sigma_m: float = 2.0  # hdop = horizontal 1σ / this (and vdop likewise), clipped to [0.5, 99]
    satellites_visible: int = 10  # reported as is: autopilots want >= 6 for a 3-D fix
    max_fix_age_s: float = 0.5  # an older fused fix is sent as no fix


def gps_week_ms(stamp_utc_s: float) -> tuple[int, int]:
    """(GPS week, ms into it); (0, 0) for a stamp before the GPS epoch (e.g. a sim clock not yet running)."""
    gps_s = max(stamp_utc_s - GPS_EPOCH_UNIX_S + GPS_LEAP_SECONDS, 0.0)
    week = int(gps_s // SECONDS_PER_WEEK)
    return week, int(round((gps_s - week * SECONDS_PER_WEEK) * 1000.0))


def _sigma_max(cov: np.ndarray) -> float:
    cov = np.asarray(cov, dtype=float)
    return float(math.sqrt(max(float(np.max(np.linalg.eigvalsh(0.5 * (cov + cov.T)))), 0.0)))


def gps_input_fields(fix: FusedFix | None, now_utc_s: float, config: GpsInputConfig) -> dict:
    """The GPS_INPUT fields (pymavlink names) for the latest fused fix at ``now_utc_s`` (the sending time on
    the same clock as the stamps). No fix yet: fix type 0 and zeros."""
    fresh = fix is not None and 0.0 <= now_utc_s - fix.stamp_s <= config.max_fix_age_s
    if fix is None or not all(map(math.isfinite, (fix.lat_deg, fix.lon_deg, fix.alt_ellipsoid_m))):
        week, ms = gps_week_ms(now_utc_s)
        return dict(time_usec=int(max(now_utc_s, 0.0) * 1e6), gps_id=0, ignore_flags=0, time_week_ms=ms, time_week=week,
                    fix_type=FIX_NONE, lat=0, lon=0, alt=0.0, hdop=99.0, vdop=99.0, vn=0.0, ve=0.0, vd=0.0,
                    speed_accuracy=0.0, horiz_accuracy=0.0, vert_accuracy=0.0, satellites_visible=0, yaw=IGNORE_YAW)
    horiz_m = _sigma_max(fix.cov_enu_m2[:2, :2])
    vert_m = float(math.sqrt(max(float(fix.cov_enu_m2[2, 2]), 0.0)))
    speed_m = _sigma_max(fix.vel_cov_m2ps2)
    ref = config.dop_reference_sigma_m
    week, ms = gps_week_ms(fix.stamp_s)
    v = np.asarray(fix.vel_enu_mps, dtype=float)
    return dict(
        time_usec=int(fix.stamp_s * 1e6), gps_id=0, ignore_flags=0, time_week_ms=ms, time_week=week,
        fix_type=FIX_3D if (fix.tracking and fresh) else FIX_NONE,
        lat=int(round(fix.lat_deg * 1e7)), lon=int(round(fix.lon_deg * 1e7)),
        alt=float(fix.alt_ellipsoid_m - config.geoid_separation_m),
        hdop=float(np.clip(horiz_m / ref, 0.5, 99.0)), vdop=float(np.clip(vert_m / ref, 0.5, 99.0)),
        vn=float(v[1]), ve=float(v[0]), vd=float(-v[2]),  # ENU -> NED
        speed_accuracy=speed_m, horiz_accuracy=horiz_m, vert_accuracy=vert_m,
        satellites_visible=int(config.satellites_visible) if (fix.tracking and fresh) else 0, yaw=IGNORE_YAW)
