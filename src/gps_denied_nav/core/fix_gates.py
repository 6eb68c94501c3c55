"""Gates of a visual fix: is the solved pose plausible, and does it agree with what is already known?

A homography on a wrong tile can be as self-consistent as a right one: on real photos one accepted fix was
48 m off with a claimed 1-sigma of 0.36 m, because only the tilt was compared with the prior. So every part
of the pose that a prior knows is checked, each failure with its own named reason (the text before the
colon is what the nodes count): the height above the ground (where a wrong scale shows: the height *is*
the homography's scale for a nadir camera), the tilt, the heading when the prior's heading is trusted
(``heading_sigma_rad``; photo metadata can be 180 deg off and is not), and the position, by a chi-square
gate on the combined covariance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import chi2

from gps_denied_nav.core.pose_from_plane import tilt_of

if TYPE_CHECKING:
    from gps_denied_nav.core.matching import MatchingConfig


@dataclass(frozen=True)
class PosePrior:
    """What is known before the frame is matched (from the filter, or a photo's metadata); all optional."""

    R_world_body: np.ndarray | None = None  # [3x3] attitude; its tilt is compared (its heading only below)
    cam_up_m: float | None = None  # camera height in the corpus ENU frame, m
    agl_m: float | None = None  # camera height above the ground under it, m
    heading_rad: float | None = None  # base_link yaw, ENU (0 = east, counter-clockwise)
    heading_sigma_rad: float | None = None  # 1-sigma of heading_rad; None: the heading is not gated
    pos_en_m: np.ndarray | None = None  # [2] camera east/north in the corpus frame, m
    pos_cov_m2: np.ndarray | None = None  # [2x2] its covariance


def check_plausibility(cam_pos_enu_m: np.ndarray, R_world_body: np.ndarray, ground_up_m: float,
                       config: MatchingConfig, prior: PosePrior | None = None, heading_rad: float | None = None,
                       cov_pos_enu_m2: np.ndarray | None = None) -> str | None:
    """Reason a pose is implausible or disagrees with the prior, or None. cam_pos_enu_m [3] m; R_world_body
    [3x3]; ground_up_m: the ground's height under the camera (m, ENU up); heading_rad and cov_pos_enu_m2 [3x3]
    (the fix's own) for the heading and position gates."""
    agl_m = float(cam_pos_enu_m[2]) - ground_up_m
    if agl_m <= 0.0:
        return f"camera below the ground: {agl_m:.1f} m"
    if not config.min_altitude_agl_m <= agl_m <= config.max_altitude_agl_m:
        return f"altitude out of range: {agl_m:.0f} m above ground"
    tilt_deg = np.degrees(tilt_of(R_world_body))
    if tilt_deg > config.max_tilt_deg:
        return f"tilt too large: {tilt_deg:.0f} deg"
    if prior is None:
        return None
    if prior.R_world_body is not None:
        # Relative tilt: gravity makes the prior's roll/pitch trustworthy, its heading may have drifted.
        up_est, up_prior = R_world_body[:, 2], np.asarray(prior.R_world_body)[:, 2]
        diff_deg = np.degrees(np.arccos(np.clip(up_est @ up_prior, -1.0, 1.0)))
        if diff_deg > config.prior_tilt_tolerance_deg:
            return f"tilt disagrees with prior: {diff_deg:.0f} deg apart"
    if prior.cam_up_m is not None and abs(float(cam_pos_enu_m[2]) - prior.cam_up_m) > config.prior_altitude_tolerance_m:
        return f"altitude disagrees with prior: {float(cam_pos_enu_m[2]) - prior.cam_up_m:+.0f} m"
    if prior.agl_m is not None:
        allowed_m = max(config.prior_agl_tolerance_m, config.prior_agl_tolerance_frac * prior.agl_m)
        if abs(agl_m - prior.agl_m) > allowed_m:
            return f"height above ground disagrees with prior: {agl_m:.1f} m solved, {prior.agl_m:.1f} m expected"
    if prior.heading_rad is not None and prior.heading_sigma_rad is not None and heading_rad is not None:
        off_deg = abs(math.degrees(math.remainder(heading_rad - prior.heading_rad, 2.0 * math.pi)))
        if off_deg > max(config.prior_heading_min_tolerance_deg, 3.0 * math.degrees(prior.heading_sigma_rad)):
            return f"heading disagrees with prior: {off_deg:.0f} deg apart"
    if prior.pos_en_m is not None and prior.pos_cov_m2 is not None:
        d = np.asarray(cam_pos_enu_m[:2], float) - np.asarray(prior.pos_en_m, float)
        cov = np.asarray(prior.pos_cov_m2, float) + (np.zeros((2, 2)) if cov_pos_enu_m2 is None
                                                     else np.asarray(cov_pos_enu_m2)[:2, :2])
        nis = float(d @ np.linalg.solve(cov, d))
        if nis > chi2.ppf(config.prior_position_gate_probability, 2):
            return f"position disagrees with prior: {np.hypot(*d):.1f} m off, chi-square {nis:.1f}"
    return None
