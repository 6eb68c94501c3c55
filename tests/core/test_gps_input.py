"""GPS_INPUT fields from the fused fix: units, frames, accuracies, fix type, GPS time."""
from __future__ import annotations

import numpy as np
import pytest

from gps_denied_nav.core.gps_input import FIX_3D, FIX_NONE, FusedFix, GpsInputConfig, gps_input_fields, gps_week_ms


def _fix(tracking=True, stamp_s=1_700_000_000.0) -> FusedFix:
    return FusedFix(stamp_s, 60.4512345, 22.2712345, 158.0, np.diag([4.0, 1.0, 9.0]),
                    np.array([3.0, 4.0, -1.0]), np.diag([0.04, 0.01, 0.09]), tracking)


def test_gps_week_of_a_known_instant():
    # 2023-11-14T22:13:20Z = GPS week 2288, 252818 s into it (with 18 leap seconds)
    assert gps_week_ms(1_700_000_000.0) == (2288, 252_818_000)
    assert gps_week_ms(0.0) == (0, 0)  # a sim clock before its first /clock


def test_fields_carry_the_fix_in_mavlink_units_and_frames():
    f = gps_input_fields(_fix(), 1_700_000_000.2, GpsInputConfig(geoid_separation_m=18.0))
    assert (f["lat"], f["lon"]) == (604512345, 222712345)
    assert f["alt"] == pytest.approx(140.0)  # ellipsoidal 158 m - geoid 18 m = MSL
    assert (f["vn"], f["ve"], f["vd"]) == pytest.approx((4.0, 3.0, 1.0))  # ENU -> NED
    assert f["horiz_accuracy"] == pytest.approx(2.0) and f["vert_accuracy"] == pytest.approx(3.0)
    assert f["speed_accuracy"] == pytest.approx(0.3)
    assert f["hdop"] == pytest.approx(1.0) and f["vdop"] == pytest.approx(1.5)
    assert f["fix_type"] == FIX_3D and f["satellites_visible"] == 10


def test_no_fix_when_lost_stale_or_absent():
    config = GpsInputConfig()
    assert gps_input_fields(_fix(tracking=False), 1_700_000_000.1, config)["fix_type"] == FIX_NONE
    stale = gps_input_fields(_fix(), 1_700_000_000.0 + 2.0, config)
    assert stale["fix_type"] == FIX_NONE and stale["satellites_visible"] == 0
    assert gps_input_fields(None, 1_700_000_000.0, config)["fix_type"] == FIX_NONE
    assert gps_input_fields(_fix(), 1_699_999_999.0, config)["fix_type"] == FIX_NONE  # from the future: not fresh
