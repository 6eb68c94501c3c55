"""Each gate of a visual fix against its prior fails with its own reason, and only when it should."""
import math

import numpy as np

from gps_denied_nav.core.fix_gates import PosePrior, check_plausibility
from gps_denied_nav.core.matching import MatchingConfig
from gps_denied_nav.core.rotations import quat_from_euler, quat_to_rotmat

CONFIG = MatchingConfig()
LEVEL = quat_to_rotmat(quat_from_euler(0.0, 0.0, 0.3))
CAM = np.array([10.0, 20.0, 140.0])  # 40 m above ground at 100 m


def gate(prior: PosePrior, heading_rad: float = 0.3, cov=np.diag([1.0, 1.0, 1.0])) -> str | None:
    return check_plausibility(CAM, LEVEL, 100.0, CONFIG, prior, heading_rad, cov)


def test_height_above_ground_is_the_scale_gate():
    assert gate(PosePrior(agl_m=42.0)) is None
    assert gate(PosePrior(agl_m=30.0)).startswith("height above ground disagrees with prior: 40.0 m solved")
    assert gate(PosePrior(agl_m=60.0)) is not None  # a homography 1.5x off in scale


def test_heading_is_gated_only_when_the_prior_trusts_it():
    flipped = 0.3 + math.pi
    assert gate(PosePrior(heading_rad=flipped)) is None  # photo metadata: no sigma, can be 180 deg off
    assert gate(PosePrior(heading_rad=flipped, heading_sigma_rad=0.05)).startswith("heading disagrees with prior: 180")
    assert gate(PosePrior(heading_rad=0.3 + math.radians(10.0), heading_sigma_rad=0.05)) is None  # 15 deg floor


def test_position_gate_uses_both_covariances():
    near = PosePrior(pos_en_m=np.array([13.0, 20.0]), pos_cov_m2=np.eye(2) * 4.0)  # 3 m off, sigma sqrt(5)
    assert gate(near) is None
    far = PosePrior(pos_en_m=np.array([58.0, 20.0]), pos_cov_m2=np.eye(2) * 4.0)  # the 48 m-off fix of the issue
    assert gate(far).startswith("position disagrees with prior: 48.0 m off")
    assert gate(far, cov=np.diag([600.0, 600.0, 1.0])) is None  # an honest 25 m sigma would have admitted it


def test_no_prior_checks_only_plausibility():
    assert gate(None) is None
    assert check_plausibility(np.array([0.0, 0.0, 90.0]), LEVEL, 100.0, CONFIG).startswith("camera below the ground")
