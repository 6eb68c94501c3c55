"""Property tests of the filter node's message readers: whatever a message holds, a reader either returns
plausible values or refuses it with a reason (never another exception, never an absurd value through)."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import FluidPressure, Imu, NavSatFix

from gps_denied_nav.core.eskf_config import EskfConfig
from gps_denied_nav.core.input_checks import geodetic_problem
from gps_denied_nav.nodes.eskf_inputs import (MAX_PRESSURE_PA, MIN_PRESSURE_PA, Refused, read_baro, read_gnss,
                                              read_imu, read_visual_fix)
from gps_denied_nav_interfaces.msg import VisualFix

FLOAT = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-200.0, 200.0),
                  st.sampled_from([1e12, -1e12, 1e-300, 0.0, 90.0, 180.0, 200.0]))
LIMITS = (EskfConfig().max_accel_mps2, EskfConfig().max_gyro_radps)


@settings(max_examples=300, deadline=None)
@given(st.lists(FLOAT, min_size=6, max_size=6))
def test_imu_reader(values):
    msg = Imu()
    a, w = msg.linear_acceleration, msg.angular_velocity
    a.x, a.y, a.z, w.x, w.y, w.z = values
    try:
        _, accel, gyro = read_imu(msg, *LIMITS)
    except Refused as exc:
        assert exc.reason.startswith("imu_")
        return
    assert np.all(np.abs(accel) <= LIMITS[0]) and np.all(np.abs(gyro) <= LIMITS[1])


@settings(max_examples=300, deadline=None)
@given(FLOAT, FLOAT, FLOAT, st.lists(FLOAT, min_size=9, max_size=9), st.sampled_from([0, 1, 2, 3]))
def test_gnss_reader(lat, lon, alt, cov, cov_type):
    msg = NavSatFix(latitude=lat, longitude=lon, altitude=alt, position_covariance=cov,
                    position_covariance_type=cov_type)
    try:
        fix = read_gnss(msg, 3.0)
    except Refused as exc:
        assert exc.reason.startswith("gnss_")
        return
    assert geodetic_problem(fix.lat_deg, fix.lon_deg, fix.alt_m) is None
    assert np.all(np.linalg.eigvalsh(fix.cov_enu_m2) > 0.0)


@settings(max_examples=300, deadline=None)
@given(FLOAT, FLOAT, FLOAT, FLOAT, FLOAT, st.lists(FLOAT, min_size=9, max_size=9))
def test_visual_fix_reader(lat, lon, alt, heading, heading_var, cov):
    msg = VisualFix(latitude_deg=lat, longitude_deg=lon, altitude_m=alt, heading_rad=heading,
                    heading_variance_rad2=heading_var)
    msg.position_covariance_enu_m2 = cov
    try:
        fix, h, h_var = read_visual_fix(msg)
    except Refused as exc:
        assert exc.reason.startswith("visual_fix_")
        return
    assert geodetic_problem(fix.lat_deg, fix.lon_deg, fix.alt_m) is None
    assert math.isfinite(h) and 0.0 < h_var <= math.pi**2 and np.all(np.linalg.eigvalsh(fix.cov_enu_m2) > 0.0)


@settings(max_examples=200, deadline=None)
@given(st.one_of(FLOAT, st.floats(0.0, 2e5)))
def test_baro_reader(pressure):
    try:
        _, pa = read_baro(FluidPressure(fluid_pressure=pressure))
    except Refused as exc:
        assert exc.reason == "baro_out_of_range"
        return
    assert MIN_PRESSURE_PA <= pa <= MAX_PRESSURE_PA
