"""Barometric altitude from static pressure with the ICAO/ISA standard atmosphere (troposphere).

p = p0 (1 - L h / T0)^(g M / (R L)) with T0 = 288.15 K, L = 0.0065 K/m, g M / (R L) = 5.25588, valid
below 11 km. The filter does not need the altitude datum to be right: its baro offset state absorbs
the difference between this pressure altitude and the ENU up coordinate (origin altitude, weather,
sensor offset); what matters is the slope dh/dp, which the standard atmosphere gets to within about
1 % for the temperatures a small UAV flies in.
"""
from __future__ import annotations

import numpy as np

SEA_LEVEL_PRESSURE_PA = 101325.0
SEA_LEVEL_TEMPERATURE_K = 288.15
LAPSE_RATE_K_PER_M = 0.0065
_EXPONENT = 5.255877  # g0 M / (R* L) with g0 = 9.80665, M = 0.0289644 kg/mol, R* = 8.3144598 J/(mol K)


def pressure_to_altitude_m(pressure_pa, sea_level_pressure_pa: float = SEA_LEVEL_PRESSURE_PA):
    """Static pressure (Pa, scalar or array) -> pressure altitude (m) above the reference level."""
    ratio = np.asarray(pressure_pa, dtype=float) / sea_level_pressure_pa
    return SEA_LEVEL_TEMPERATURE_K / LAPSE_RATE_K_PER_M * (1.0 - ratio ** (1.0 / _EXPONENT))


def altitude_to_pressure_pa(altitude_m, sea_level_pressure_pa: float = SEA_LEVEL_PRESSURE_PA):
    """Pressure altitude (m, scalar or array) -> static pressure (Pa); inverse of pressure_to_altitude_m."""
    h = np.asarray(altitude_m, dtype=float)
    return sea_level_pressure_pa * (1.0 - LAPSE_RATE_K_PER_M * h / SEA_LEVEL_TEMPERATURE_K) ** _EXPONENT


def altitude_sigma_m(pressure_pa, pressure_sigma_pa: float,
                     sea_level_pressure_pa: float = SEA_LEVEL_PRESSURE_PA):
    """1σ altitude (m) of a reading with 1σ ``pressure_sigma_pa``: |dh/dp| σ_p (~8.3 m/hPa at sea level)."""
    p = np.asarray(pressure_pa, dtype=float)
    ratio = p / sea_level_pressure_pa
    dh_dp = SEA_LEVEL_TEMPERATURE_K / LAPSE_RATE_K_PER_M / _EXPONENT * ratio ** (1.0 / _EXPONENT) / p
    return dh_dp * pressure_sigma_pa
