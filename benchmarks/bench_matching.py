"""Matching benchmark on real imagery: Turku satellite tiles, rendered nadir frames, precomputed features.

The PNG tiles (north-up, corners in map.csv) are placed on one ENU raster, SIFT features are computed
once per 50 m cell exactly as provisioning does (``corpus_build.detect_cell_features``), and ~100
perspective frames at ~120 m above ground (roll/pitch up to 14 deg, any heading, blur/JPEG/colour
changes) are matched against the features of a 300 m window around the truth. Prints the fix rate,
horizontal error, the NEES of the horizontal covariance and per-stage times; compare with
docs in /work/shared/notes/baselines.md (81 % with >= 25 inliers, 0.4 m principal-point RMS).
Run: ``.venv/bin/python benchmarks/bench_matching.py [--frames 100] [--tile-features 2000]``.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import cv2
import numpy as np

from gps_denied_nav.core.camera import (R_BODY_CAM_NADIR, CameraIntrinsics, ground_to_image_homography,
                                        intersect_ground, pixel_rays_world)
from gps_denied_nav.core.corpus_build import detect_cell_features
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.map_raster import MapRaster
from gps_denied_nav.core.matching import MatchingConfig, TileFeatures, match_frame
from gps_denied_nav.core.rotations import quat_from_euler, quat_to_rotmat, wrap_angle

MAP_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "turku_satellite" / "map"
GSD_M = 0.14  # close to the tiles' native ~0.136 m/px
CELL_M = 50.0  # provisioning's default stride_m = SIFT storage cell


def load_turku_raster(map_dir: Path = MAP_DIR) -> MapRaster:
    """Every PNG tile listed in map.csv, warped onto one north-up ENU raster around the area's centre."""
    rows = []
    with open(map_dir / "map.csv") as f:
        for rec in csv.reader(f, skipinitialspace=True):
            if rec and rec[0].endswith(".png") and (map_dir / rec[0]).exists():
                rows.append((rec[0], *map(float, rec[1:5])))
    lats = [v for r in rows for v in (r[1], r[3])]
    lons = [v for r in rows for v in (r[2], r[4])]
    frame = LocalTangentPlane(0.5 * (min(lats) + max(lats)), 0.5 * (min(lons) + max(lons)), 0.0)
    corners = frame.to_enu(np.array(lats), np.array(lons), 0.0)
    east_min = np.floor(corners[:, 0].min() / GSD_M) * GSD_M
    north_max = np.ceil(corners[:, 1].max() / GSD_M) * GSD_M
    width = int(np.ceil((corners[:, 0].max() - east_min) / GSD_M))
    height = int(np.ceil((north_max - corners[:, 1].min()) / GSD_M))
    raster = MapRaster(np.zeros((height, width, 3), np.uint8), np.zeros((height, width), bool), GSD_M,
                       float(east_min), float(north_max), frame, str(map_dir))
    for name, lat_tl, lon_tl, lat_br, lon_br in rows:
        tile = cv2.cvtColor(cv2.imread(str(map_dir / name)), cv2.COLOR_BGR2RGB)
        h, w = tile.shape[:2]
        # Output pixel -> tile pixel is affine to well under a pixel over 200 m: fit it on 3 points.
        out_px = np.array([[0.0, 0.0], [width - 1.0, 0.0], [0.0, height - 1.0]], np.float64)
        east, north = raster.pixel_to_enu(out_px[:, 0], out_px[:, 1])
        lat, lon, _ = frame.to_geodetic(np.column_stack([east, north, np.zeros(3)]))
        tile_px = np.column_stack([(lon - lon_tl) / (lon_br - lon_tl) * w - 0.5,
                                   (lat - lat_tl) / (lat_br - lat_tl) * h - 0.5])
        M = cv2.getAffineTransform(out_px.astype(np.float32), tile_px.astype(np.float32))
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        img = cv2.warpAffine(tile, M, (width, height), flags=flags)
        inside = cv2.warpAffine(np.full((h, w), 255, np.uint8), M, (width, height), flags=flags) == 255
        raster.image_rgb[inside] = img[inside]
        raster.valid[inside] = True
    return raster


def cell_features(raster: MapRaster, per_cell: int) -> tuple[np.ndarray, np.ndarray]:
    """Provisioning's SIFT: per 50 m cell with a context margin -> (kp_enu_m [M,2], desc [M,128])."""
    cell_px = int(round(CELL_M / raster.gsd_m))
    kps, descs = [], []
    for r0 in range(0, raster.height_px, cell_px):
        for c0 in range(0, raster.width_px, cell_px):
            pixels = (r0, min(r0 + cell_px, raster.height_px), c0, min(c0 + cell_px, raster.width_px))
            if raster.valid[pixels[0]:pixels[1], pixels[2]:pixels[3]].mean() < 0.05:
                continue
            kp, desc = detect_cell_features(raster, pixels, per_cell, 32, True)
            kps.append(kp)
            descs.append(desc)
    return np.concatenate(kps), np.concatenate(descs)


def render_frame(raster: MapRaster, cam: CameraIntrinsics, R_world_cam, cam_pos, rng) -> np.ndarray:
    """Perspective view at 2x, area-downsampled (anti-aliasing), then colour, blur, noise and JPEG."""
    big = cam.scaled(2.0)
    H = ground_to_image_homography(big.K, R_world_cam, cam_pos) @ raster.enu_from_pixel_affine()
    img = cv2.warpPerspective(raster.image_rgb, H, (big.width_px, big.height_px), flags=cv2.INTER_LINEAR)
    img = cv2.resize(img, (cam.width_px, cam.height_px), interpolation=cv2.INTER_AREA).astype(np.float32)
    img = 255.0 * (img / 255.0) ** rng.uniform(0.8, 1.25) * rng.uniform(0.85, 1.15, 3) + rng.uniform(-15, 15)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.3))
    img = np.clip(img + rng.normal(0.0, 2.0, img.shape), 0, 255).astype(np.uint8)
    ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 90))])
    return cv2.imdecode(jpg, cv2.IMREAD_UNCHANGED)


def principal_point_ground(cam: CameraIntrinsics, R_world_cam, cam_pos) -> np.ndarray:
    ray = pixel_rays_world(cam.K, R_world_cam, np.array([[cam.cx_px, cam.cy_px]]))
    return intersect_ground(np.asarray(cam_pos, float), ray)[0, :2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--tile-features", type=int, default=2000, help="SIFT per 150 m tile area")
    parser.add_argument("--window-m", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (MAP_DIR / "map.csv").exists():
        print(f"skipped: {MAP_DIR} is absent")
        return
    t0 = time.perf_counter()
    raster = load_turku_raster()
    t1 = time.perf_counter()
    per_cell = int(round(args.tile_features * (CELL_M / 150.0) ** 2))
    kp_enu, desc = cell_features(raster, per_cell)
    t2 = time.perf_counter()
    print(f"map {raster.width_px}x{raster.height_px} px at {GSD_M} m ({t1 - t0:.1f} s); {len(kp_enu)} "
          f"features, {per_cell}/cell of {CELL_M:.0f} m ({t2 - t1:.1f} s)")

    cam = CameraIntrinsics.from_hfov(640, 480, 60.0)
    config = MatchingConfig()
    rng = np.random.default_rng(args.seed)
    rows = []
    while len(rows) < args.frames:
        east, north = rng.uniform([raster.east_min_m + 60, raster.north_min_m + 60],
                                  [raster.east_max_m - 60, raster.north_max_m - 60])
        c, r = raster.enu_to_pixel(east, north)
        if not raster.valid[int(r), int(c)]:
            continue  # the flight plan stays over the map; gaps in the footprint are still possible
        roll, pitch = np.radians(rng.uniform(-14, 14, 2))
        yaw = rng.uniform(-np.pi, np.pi)
        R_world_body = quat_to_rotmat(quat_from_euler(roll, pitch, yaw))
        R_world_cam = R_world_body @ R_BODY_CAM_NADIR
        cam_pos = np.array([east, north, rng.uniform(110.0, 130.0)])
        img = render_frame(raster, cam, R_world_cam, cam_pos, rng)
        half = 0.5 * args.window_m
        near = np.all(np.abs(kp_enu - cam_pos[:2].astype(np.float32)) <= half, axis=1)
        window = TileFeatures("window", kp_enu[near], desc[near], 1.0)
        res = match_frame(img, cam.K, [window], config)
        rows.append((res, cam_pos, R_world_cam, yaw, int(near.sum())))

    n = len(rows)
    accepted = [r for r in rows if r[0].accepted]
    enough = sum(max((c for _, c in r[0].tile_inliers), default=0) >= 25 for r in rows)
    print(f"\n{n} frames, window {args.window_m:.0f} m with {np.mean([r[4] for r in rows]):.0f} features on average")
    print(f">= 25 homography inliers: {enough / n:.0%}; accepted: {len(accepted) / n:.0%} (baseline 81 %)")
    reasons = {}
    for r in rows:
        category = r[0].reason.split(":")[0]
        reasons[category] = reasons.get(category, 0) + 1
    print("outcomes:", ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])))
    if accepted:
        err = np.array([r[0].cam_pos_enu_m - r[1] for r in accepted])
        horiz = np.linalg.norm(err[:, :2], axis=1)
        pp_err = np.array([np.linalg.norm(principal_point_ground(cam, r[0].R_world_cam, r[0].cam_pos_enu_m)
                                          - principal_point_ground(cam, r[2], r[1])) for r in accepted])
        nees = np.array([e[:2] @ np.linalg.solve(r[0].cov_pos_enu_m2[:2, :2], e[:2]) for e, r in zip(err, accepted)])
        head = np.degrees([wrap_angle(r[0].heading_rad - r[3]) for r in accepted])
        head_nees = np.array([np.radians(h) ** 2 / r[0].heading_var_rad2 for h, r in zip(head, accepted)])
        sigma_h = np.sqrt([np.trace(r[0].cov_pos_enu_m2[:2, :2]) for r in accepted])
        print(f"camera horizontal error (accepted): RMS {np.sqrt(np.mean(horiz**2)):.3f} m, median "
              f"{np.median(horiz):.3f} m, p95 {np.percentile(horiz, 95):.3f} m, max {horiz.max():.3f} m")
        print(f"vertical error RMS {np.sqrt(np.mean(err[:, 2] ** 2)):.3f} m; heading error RMS "
              f"{np.sqrt(np.mean(head**2)):.3f} deg")
        print(f"principal point on the ground: RMS {np.sqrt(np.mean(pp_err**2)):.3f} m (baseline 0.4 m)")
        print(f"horizontal NEES mean {nees.mean():.2f} (2 DoF: 2 if honest), median {np.median(nees):.2f}, "
              f"share > 13.8 (chi2 99.9 %) {np.mean(nees > 13.8):.0%}; inflation {config.covariance_inflation}"
              f" -> uninflated mean {nees.mean() * config.covariance_inflation:.2f}")
        print(f"heading NEES mean {head_nees.mean():.2f} (1 DoF); reported horizontal sigma median "
              f"{np.median(sigma_h):.3f} m; inliers median {np.median([r[0].inliers for r in accepted]):.0f}")
    ms = {k: np.mean([getattr(r[0], k) for r in rows]) for k in ("detect_ms", "match_ms", "homography_ms", "pose_ms")}
    print("per frame ms: " + ", ".join(f"{k[:-3]} {v:.1f}" for k, v in ms.items()) + f", total {sum(ms.values()):.1f}"
          " (baseline ~370 ms with on-the-fly window features)")


if __name__ == "__main__":
    main()
