"""Visual fix from SIFT matches: pose accuracy, honest covariance, tile choice and rejections.

Views are rendered from a procedural textured ground plane (and a real Turku tile when present) with
``ground_to_image_homography``, so every test knows the true camera pose.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gps_denied_nav.core.camera import R_BODY_CAM_NADIR, CameraIntrinsics, ground_to_image_homography
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.matching import (MatchingConfig, PosePrior, TileFeatures, check_plausibility,
                                          detect_features, match_frame)
from gps_denied_nav.core.pose_from_plane import solve_planar_pose
from gps_denied_nav.core.rotations import quat_from_euler, quat_to_rotmat, wrap_angle

CAM = CameraIntrinsics.from_hfov(640, 480, 60.0)
GSD_M = 0.25
SIZE_PX = 1400  # 350 m square: a 150 m high camera tilted 15 deg still sees mostly texture
TURKU_TILE = Path(__file__).resolve().parents[3] / "shared" / "data" / "turku_satellite" / "map" / "sat_map_00.png"


def textured_ground(size_px: int, seed: int) -> np.ndarray:
    """[size, size, 3] uint8: multi-scale noise plus random blobs, polygons and lines (SIFT-rich)."""
    rng = np.random.default_rng(seed)
    gray = np.zeros((size_px, size_px), np.float32)
    for cells, amplitude in [(8, 70.0), (40, 50.0), (size_px // 12, 40.0), (size_px // 4, 20.0)]:
        noise = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
        gray += amplitude * cv2.resize(noise, (size_px, size_px), interpolation=cv2.INTER_CUBIC)
    img = np.repeat((gray + 110.0)[:, :, None], 3, axis=2) * rng.uniform(0.8, 1.2, 3).astype(np.float32)
    for _ in range(size_px * size_px // 1500):
        x, y = (int(v) for v in rng.integers(0, size_px, 2))
        colour = rng.uniform(0, 255, 3).tolist()
        kind = rng.integers(0, 3)
        if kind == 0:
            cv2.circle(img, (x, y), int(rng.integers(3, 12)), colour, -1)
        elif kind == 1:
            cv2.fillPoly(img, [(np.array([x, y]) + rng.normal(0, 12, (4, 2))).astype(np.int32)], colour)
        else:
            dx, dy = (int(v) for v in rng.normal(0, 40, 2))
            cv2.line(img, (x, y), (x + dx, y + dy), colour, int(rng.integers(1, 4)))
    return np.clip(cv2.GaussianBlur(img, (0, 0), 1.0), 0, 255).astype(np.uint8)


def enu_from_raster(gsd_m: float, size_px: int) -> np.ndarray:
    """[3x3] raster pixel (col, row, 1) -> (east, north, 1) of a map centred on the ENU origin."""
    half = 0.5 * size_px * gsd_m
    return np.array([[gsd_m, 0.0, -half + 0.5 * gsd_m], [0.0, -gsd_m, half - 0.5 * gsd_m], [0.0, 0.0, 1.0]])


def map_tile(image: np.ndarray, gsd_m: float, tile_id, max_features: int) -> TileFeatures:
    kp_px, desc = detect_features(image, max_features)
    en = np.column_stack([kp_px, np.ones(len(kp_px))]) @ enu_from_raster(gsd_m, image.shape[0]).T
    return TileFeatures(tile_id, en[:, :2].astype(np.float32), desc, 0.5)


def render(image: np.ndarray, gsd_m: float, R_world_cam, cam_pos_enu_m, ground_up_m=0.0) -> np.ndarray:
    """Perspective view rendered at 2x and area-downsampled, so it is not aliased."""
    big = CAM.scaled(2.0)
    H = ground_to_image_homography(big.K, R_world_cam, cam_pos_enu_m, ground_up_m)
    view = cv2.warpPerspective(image, H @ enu_from_raster(gsd_m, image.shape[0]), (big.width_px, big.height_px))
    return cv2.resize(view, (CAM.width_px, CAM.height_px), interpolation=cv2.INTER_AREA)


def random_pose(rng, max_tilt_deg=15.0, ground_up_m=0.0):
    roll, pitch = np.radians(rng.uniform(-max_tilt_deg, max_tilt_deg, 2))
    yaw = rng.uniform(-np.pi, np.pi)
    R_world_body = quat_to_rotmat(quat_from_euler(roll, pitch, yaw))
    cam_pos = np.array([*rng.uniform(-20, 20, 2), ground_up_m + rng.uniform(100, 150)])
    return R_world_body, cam_pos, yaw


@pytest.fixture(scope="module")
def ground():
    return textured_ground(SIZE_PX, seed=1)


@pytest.fixture(scope="module")
def tile(ground):
    return map_tile(ground, GSD_M, "true", 6000)


@pytest.fixture(scope="module")
def other_ground():
    return textured_ground(700, seed=2)


def test_detect_features_contract_and_unbiased_keypoints(ground):
    image = ground[:600, :600]
    kp, desc = detect_features(image, 1500)
    assert kp.shape == (1500, 2) and kp.dtype == np.float32 and desc.shape == (1500, 128) and desc.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1.0, atol=1e-4)  # RootSIFT is unit-norm
    assert np.linalg.norm(detect_features(image, 50, root_sift=False)[1][0]) > 100  # raw SIFT is not
    mask = np.zeros(image.shape[:2], bool)
    mask[:, :300] = True
    assert np.all(detect_features(image, 500, mask=mask)[0][:, 0] < 300)
    # Keypoints of the mirrored image, mirrored back, must land where the originals are: OpenCV's
    # default upscaling would leave a 0.25 px bias (0.5 px between the two).
    kp_flip, _ = detect_features(np.ascontiguousarray(image[:, ::-1]), 1500)
    back = np.column_stack([image.shape[1] - 1 - kp_flip[:, 0], kp_flip[:, 1]])
    dist = np.linalg.norm(back[:, None] - kp[None], axis=2)
    near = dist.min(axis=1) < 1.0
    assert near.sum() > 500
    assert np.all(np.abs(np.mean(back[near] - kp[dist[near].argmin(axis=1)], axis=0)) < 0.05)
    assert detect_features(np.full((480, 640, 3), 128, np.uint8), 100)[0].shape == (0, 2)


def test_pose_recovered_on_synthetic_plane(ground, tile):
    rng = np.random.default_rng(3)
    ground_up_m = 12.5  # the plane is not at the ENU origin's height
    for _ in range(5):
        R_world_body, cam_pos, yaw = random_pose(rng, ground_up_m=ground_up_m)
        view = render(ground, GSD_M, R_world_body @ R_BODY_CAM_NADIR, cam_pos, ground_up_m)
        result = match_frame(view, CAM.K, [tile], ground_up_m=ground_up_m)
        assert result.accepted, result.reason
        err = result.cam_pos_enu_m - cam_pos
        assert np.linalg.norm(err[:2]) < 0.5 and abs(err[2]) < 1.0
        assert abs(np.degrees(wrap_angle(result.heading_rad - yaw))) < 0.5
        np.testing.assert_allclose(result.R_world_body, R_world_body, atol=0.01)
        assert result.inliers >= 100 and result.reprojection_rmse_px < 1.0
        assert result.cov_pos_enu_m2.shape == (3, 3) and np.all(np.linalg.eigvalsh(result.cov_pos_enu_m2) > 0)


def test_horizontal_covariance_is_honest_under_image_noise(ground, tile):
    """Mean NEES of the horizontal fix over noisy renders; 2 DoF, so 2 means honest, < 2 conservative."""
    rng = np.random.default_rng(7)
    nees, heading_nees = [], []
    for _ in range(20):
        R_world_body, cam_pos, yaw = random_pose(rng)
        view = render(ground, GSD_M, R_world_body @ R_BODY_CAM_NADIR, cam_pos).astype(np.float32)
        view = cv2.GaussianBlur(view, (0, 0), rng.uniform(0.3, 1.0)) + rng.normal(0, 6.0, view.shape)
        result = match_frame(np.clip(view, 0, 255).astype(np.uint8), CAM.K, [tile])
        assert result.accepted, result.reason
        err = result.cam_pos_enu_m[:2] - cam_pos[:2]
        nees.append(err @ np.linalg.solve(result.cov_pos_enu_m2[:2, :2], err))
        heading_nees.append(wrap_angle(result.heading_rad - yaw) ** 2 / result.heading_var_rad2)
    print(f"horizontal NEES mean {np.mean(nees):.2f} (2 DoF), heading NEES mean {np.mean(heading_nees):.2f} (1 DoF)")
    assert 0.3 < np.mean(nees) < 3.0
    assert np.percentile(nees, 90) < 13.8  # chi2(2) 99.9 %: no grossly overconfident fix
    assert 0.1 < np.mean(heading_nees) < 3.0


def test_planar_pose_covariance_matches_monte_carlo():
    """First-order covariance (inflation 1) against the spread of 300 noisy PnP solutions."""
    rng = np.random.default_rng(11)
    R_world_cam = quat_to_rotmat(quat_from_euler(0.15, -0.1, 2.0)) @ R_BODY_CAM_NADIR
    cam_pos = np.array([40.0, -25.0, 120.0])
    ground_en = rng.uniform(-60, 60, (60, 2)) + cam_pos[:2]
    H = ground_to_image_homography(CAM.K, R_world_cam, cam_pos)
    proj = np.column_stack([ground_en, np.ones(60)]) @ H.T
    pixels = proj[:, :2] / proj[:, 2:]
    sigma_px = 0.8
    positions, headings, predicted = [], [], None
    for _ in range(300):
        pose = solve_planar_pose(CAM.K, pixels + rng.normal(0, sigma_px, pixels.shape), ground_en,
                                 sigma_floor_px=0.0, covariance_inflation=1.0, R_body_cam=R_BODY_CAM_NADIR)
        positions.append(pose.cam_pos_enu_m)
        headings.append(pose.heading_rad)
        predicted = predicted or (pose.cov_pos_enu_m2, pose.heading_var_rad2, pose.sigma_px)
    sample_cov = np.cov(np.array(positions).T)
    cov_pos, heading_var, sigma_est = predicted
    assert sigma_est == pytest.approx(sigma_px, rel=0.25)
    assert np.trace(sample_cov[:2, :2]) / np.trace(cov_pos[:2, :2]) == pytest.approx(1.0, abs=0.35)
    assert sample_cov[2, 2] / cov_pos[2, 2] == pytest.approx(1.0, abs=0.35)
    assert np.var(np.unwrap(headings)) / heading_var == pytest.approx(1.0, abs=0.35)
    assert np.linalg.norm(np.mean(positions, axis=0) - cam_pos) < 3 * np.sqrt(np.trace(cov_pos) / 300) + 1e-3


def test_pose_on_sloped_terrain_uses_each_points_height():
    """A 4 % grade plus a hill under a 120 m high camera: solved with each point at its terrain height the
    pose is exact; solved on one level plane (what the matcher did before) it is metres off."""
    from gps_denied_nav.core.camera import project_points

    rng = np.random.default_rng(3)
    R_world_cam = quat_to_rotmat(quat_from_euler(0.08, -0.05, 0.7)) @ R_BODY_CAM_NADIR
    cam_pos = np.array([30.0, -20.0, 180.0])
    en = rng.uniform(-60, 60, (150, 2)) + cam_pos[:2]
    up = 60.0 + 0.04 * (0.5 * en[:, 0] + 0.87 * en[:, 1]) + 5.0 * np.exp(-np.sum((en - [50, 0]) ** 2, 1) / 900.0)
    pixels, _ = project_points(CAM.K, R_world_cam, cam_pos, np.column_stack([en, up]))
    pixels = pixels + rng.normal(0, 0.3, pixels.shape)
    pose = solve_planar_pose(CAM.K, pixels, en, up, sigma_floor_px=0.3, covariance_inflation=1.0)
    level = solve_planar_pose(CAM.K, pixels, en, float(up.mean()), sigma_floor_px=0.3, covariance_inflation=1.0)
    error_m = np.linalg.norm(pose.cam_pos_enu_m - cam_pos)
    assert error_m < 0.3 and pose.reprojection_rmse_px < 0.6
    assert (pose.cam_pos_enu_m - cam_pos) @ np.linalg.solve(pose.cov_pos_enu_m2, pose.cam_pos_enu_m - cam_pos) < 16.3
    assert np.linalg.norm(level.cam_pos_enu_m[:2] - cam_pos[:2]) > 2.0 and level.reprojection_rmse_px > 1.0


def test_right_tile_chosen_among_candidates(ground, tile, other_ground):
    rng = np.random.default_rng(5)
    R_world_body, cam_pos, _ = random_pose(rng)
    view = render(ground, GSD_M, R_world_body @ R_BODY_CAM_NADIR, cam_pos)
    decoys = [map_tile(other_ground, GSD_M, "decoy_a", 3000),
              map_tile(np.ascontiguousarray(other_ground[::-1]), GSD_M, "decoy_b", 3000)]
    result = match_frame(view, CAM.K, [decoys[0], tile, decoys[1]])
    assert result.accepted and result.tile_id == "true"
    counts = dict(result.tile_inliers)
    assert counts["true"] >= 100 and counts["decoy_a"] < 25 and counts["decoy_b"] < 25


def test_other_area_noise_and_uniform_frames_give_no_fix(tile, other_ground):
    rng = np.random.default_rng(9)
    R_world_body, cam_pos, _ = random_pose(rng)
    elsewhere = render(other_ground, GSD_M, R_world_body @ R_BODY_CAM_NADIR, cam_pos - [0, 0, 30])
    noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    for frame in (elsewhere, noise):
        result = match_frame(frame, CAM.K, [tile])
        assert not result.accepted and result.reason.startswith("too few inliers")
    uniform = match_frame(np.full((480, 640, 3), 90, np.uint8), CAM.K, [tile])
    assert not uniform.accepted and uniform.reason.startswith("too few query features")
    assert uniform.cam_pos_enu_m is None and np.isnan(uniform.heading_rad)


def test_implausible_poses_rejected(ground, tile):
    rng = np.random.default_rng(13)
    R_world_body = quat_to_rotmat(quat_from_euler(np.radians(14.0), np.radians(-8.0), 1.0))
    cam_pos = np.array([5.0, -3.0, 120.0])
    view = render(ground, GSD_M, R_world_body @ R_BODY_CAM_NADIR, cam_pos)
    assert match_frame(view, CAM.K, [tile]).accepted
    too_tilted = match_frame(view, CAM.K, [tile], MatchingConfig(max_tilt_deg=10.0))
    assert not too_tilted.accepted and too_tilted.reason.startswith("tilt too large")
    too_low = match_frame(view, CAM.K, [tile], MatchingConfig(min_altitude_agl_m=200.0))
    assert not too_low.accepted and too_low.reason.startswith("altitude out of range")
    level_prior = PosePrior(R_world_body=quat_to_rotmat(quat_from_euler(0.0, 0.0, rng.uniform(-3, 3))))
    disagrees = match_frame(view, CAM.K, [tile], prior=level_prior)
    assert not disagrees.accepted and disagrees.reason.startswith("tilt disagrees with prior")
    assert match_frame(view, CAM.K, [tile], prior=PosePrior(R_world_body, cam_up_m=125.0)).accepted
    # A mirrored (below-ground) PnP solution is rejected before its tilt or altitude is looked at.
    below = check_plausibility(np.array([0.0, 0.0, -40.0]), R_world_body, 0.0, MatchingConfig())
    assert below.startswith("camera below the ground")
    assert check_plausibility(cam_pos, R_world_body, 0.0, MatchingConfig()) is None


def test_clustered_inliers_rejected(ground, tile):
    R_world_cam = quat_to_rotmat(quat_from_euler(0.05, 0.02, -2.0)) @ R_BODY_CAM_NADIR
    view = render(ground, GSD_M, R_world_cam, np.array([-10.0, 8.0, 130.0]))
    view[:, 200:] = 90  # texture only in a strip on the left (~30 % of the image)
    view[:200, :200] = 90
    strip = match_frame(view, CAM.K, [tile], MatchingConfig(min_inlier_spread=0.4))
    assert not strip.accepted and strip.reason.startswith("inliers clustered")


def test_real_turku_tile_and_visual_fix():
    if not TURKU_TILE.exists():
        pytest.skip(f"real imagery absent: {TURKU_TILE}")
    tile_rgb = cv2.cvtColor(cv2.imread(str(TURKU_TILE)), cv2.COLOR_BGR2RGB)
    square = np.ascontiguousarray(tile_rgb[:1200, :1200])
    gsd_m = 0.136  # ~1469 px over ~199 m (map.csv corners)
    real = map_tile(square, gsd_m, "sat_map_00", 6000)
    R_world_body = quat_to_rotmat(quat_from_euler(np.radians(-6.0), np.radians(9.0), 2.4))
    cam_pos = np.array([-4.0, 6.0, 120.0])
    result = match_frame(render(square, gsd_m, R_world_body @ R_BODY_CAM_NADIR, cam_pos), CAM.K, [real])
    assert result.accepted, result.reason
    assert np.linalg.norm(result.cam_pos_enu_m[:2] - cam_pos[:2]) < 0.5
    frame = LocalTangentPlane(60.4032, 22.4622, 10.0)
    fix = result.to_visual_fix(12.5, frame, retrieval_score=0.7)
    np.testing.assert_allclose(frame.to_enu(fix.lat_deg, fix.lon_deg, fix.alt_m), result.cam_pos_enu_m, atol=1e-3)
    assert fix.tile_id == "sat_map_00" and fix.inliers == result.inliers and fix.cov_enu_m2.shape == (3, 3)


def test_lens_distortion_is_undone_on_keypoints(ground, tile):
    distortion = (-0.15, 0.03, 0.0, 0.0, 0.0)
    R_world_cam = quat_to_rotmat(quat_from_euler(-0.1, 0.12, 0.4)) @ R_BODY_CAM_NADIR
    cam_pos = np.array([8.0, 12.0, 125.0])
    pinhole = render(ground, GSD_M, R_world_cam, cam_pos)
    # Distorted pixel -> where the ideal pinhole image has it: undistort the pixel grid.
    cols, rows = np.meshgrid(np.arange(640, dtype=np.float32), np.arange(480, dtype=np.float32))
    grid = np.stack([cols, rows], axis=-1).reshape(-1, 1, 2)
    ideal = cv2.undistortPoints(grid, CAM.K, np.array(distortion), P=CAM.K).reshape(480, 640, 2)
    distorted = cv2.remap(pinhole, ideal[..., 0], ideal[..., 1], cv2.INTER_LINEAR)
    fixed = match_frame(distorted, CAM.K, [tile], distortion=distortion)
    assert fixed.accepted and np.linalg.norm(fixed.cam_pos_enu_m - cam_pos) < 0.5
    ignored = match_frame(distorted, CAM.K, [tile])
    assert not ignored.accepted or np.linalg.norm(ignored.cam_pos_enu_m - cam_pos) > 1.0

