"""Standard-atmosphere pressure <-> altitude."""
import numpy as np
import pytest

from gps_denied_nav.core.baro import altitude_sigma_m, altitude_to_pressure_pa, pressure_to_altitude_m


def test_standard_atmosphere_reference_values():
    # ICAO standard atmosphere table values.
    assert altitude_to_pressure_pa(0.0) == pytest.approx(101325.0)
    assert altitude_to_pressure_pa(1000.0) == pytest.approx(89874.6, abs=1.0)
    assert altitude_to_pressure_pa(5000.0) == pytest.approx(54019.9, abs=5.0)
    assert pressure_to_altitude_m(84556.0) == pytest.approx(1500.0, abs=1.0)


def test_round_trip_and_reference_pressure():
    alt = np.linspace(-300.0, 10000.0, 50)
    np.testing.assert_allclose(pressure_to_altitude_m(altitude_to_pressure_pa(alt)), alt, atol=1e-6)
    # A higher sea-level pressure reads the same pressure as a higher altitude (~8.3 m/hPa).
    shift_m = pressure_to_altitude_m(100000.0, 101425.0) - pressure_to_altitude_m(100000.0)
    assert shift_m == pytest.approx(8.4, abs=0.3)


def test_altitude_sigma_matches_the_slope():
    p = 95000.0
    slope = (pressure_to_altitude_m(p - 0.5) - pressure_to_altitude_m(p + 0.5)) / 1.0
    assert altitude_sigma_m(p, 10.0) == pytest.approx(10.0 * slope, rel=1e-6)
    assert altitude_sigma_m(101325.0, 100.0) == pytest.approx(8.32, abs=0.02)
