"""What makes the matcher cheaper without making it worse: one search over overlapping candidates, SIFT on a
downscaled frame, and the scale that brings a frame to the map's ground sampling."""
from __future__ import annotations

import numpy as np
import pytest

from gps_denied_nav.core.camera import R_BODY_CAM_NADIR
from gps_denied_nav.core.matching import MatchingConfig, detect_features, match_frame
from gps_denied_nav.core.rotations import wrap_angle
from test_matching import CAM, GSD_M, SIZE_PX, map_tile, random_pose, render, textured_ground


@pytest.fixture(scope="module")
def ground():
    return textured_ground(SIZE_PX, seed=1)  # test_matching's ground and tile


@pytest.fixture(scope="module")
def tile(ground):
    return map_tile(ground, GSD_M, "true", 6000)


def test_overlapping_candidates_are_matched_as_one_union(ground, tile):
    """Two candidates sharing features (overlapping windows) are searched as their union: the shared rows
    are matched in both (not killed by the ratio test against their own copy), each match names its set's row."""
    from gps_denied_nav.core.local_features import match_descriptor_sets, match_descriptors

    rng = np.random.default_rng(8)
    R_world_body, cam_pos, _ = random_pose(rng)
    kp, desc = detect_features(render(ground, GSD_M, R_world_body @ R_BODY_CAM_NADIR, cam_pos), 2000)
    n = len(tile.desc)
    west, east = tile.desc[: 2 * n // 3], tile.desc[n // 3:]  # a third of the features in both
    alone = {(int(i), int(j)) for i, j in match_descriptors(desc, tile.desc)}
    pairs_west, pairs_east = match_descriptor_sets(desc, [west, east])
    from_west = {(int(i), int(j)) for i, j in pairs_west}
    from_east = {(int(i), int(j) + n // 3) for i, j in pairs_east}
    shared = {(i, j) for i, j in from_west if j >= n // 3}
    assert len(shared) > 20 and shared <= from_east  # a shared row's match is in both sets
    union = from_west | from_east
    # The same matches as the one tile (up to FLANN's randomised trees, built over another row order)
    assert len(union & alone) >= 0.95 * max(len(union), len(alone))
    empty, rest = match_descriptor_sets(desc, [west[:0], east])  # an empty set matches nothing, breaks nothing
    assert len(empty) == 0 and len(rest) > 100


@pytest.mark.parametrize("query_scale", [1.0, 0.5])
def test_sift_on_a_downscaled_query_keeps_the_fix(ground, tile, query_scale):
    """Keypoints found on the half-size frame are put back in the frame's pixels: the pose stays right, its
    residuals grow (the covariance with them) and SIFT finds fewer, coarser keypoints."""
    rng = np.random.default_rng(3)
    R_world_body, cam_pos, yaw = random_pose(rng)
    view = render(ground, GSD_M, R_world_body @ R_BODY_CAM_NADIR, cam_pos)
    result = match_frame(view, CAM.K, [tile], MatchingConfig(query_scale=query_scale))
    assert result.accepted, result.reason
    err = result.cam_pos_enu_m - cam_pos
    assert np.linalg.norm(err[:2]) < 0.5 and abs(err[2]) < 1.0
    assert abs(np.degrees(wrap_angle(result.heading_rad - yaw))) < 0.5
    sigma_m = np.sqrt(np.trace(result.cov_pos_enu_m2[:2, :2]))
    assert np.linalg.norm(err[:2]) < 5.0 * sigma_m
    with pytest.raises(ValueError, match="query_scale"):
        MatchingConfig(query_scale=0.0)


def test_map_query_scale_brings_the_frame_to_the_maps_sampling_within_bounds():
    from gps_denied_nav.core.matching import map_query_scale

    fx_px = CAM.K[0, 0]  # 554 px: 0.217 m a pixel at 120 m
    assert map_query_scale(120.0, fx_px, 0.25, 10.0) == pytest.approx(120.0 / fx_px / 0.25)  # the demo: x0.87
    assert map_query_scale(120.0, fx_px, 0.1, 10.0) == 1.0  # a finer map: the frame is never enlarged
    assert map_query_scale(120.0, 4 * fx_px, 0.5, 10.0) == 0.25  # a wide frame over a coarse map: the floor
    for agl_m in (None, 3.0, float("nan")):  # no height, or one no fix could have: full size
        assert map_query_scale(agl_m, fx_px, 0.25, 10.0) == 1.0
