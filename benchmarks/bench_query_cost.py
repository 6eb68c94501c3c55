"""Per-frame matching cost against accuracy: SIFT on a downscaled query, one search over the candidates' union.

Frames of ``make demo``'s world (640x480, 60 deg, 120 m above ground, any heading, tilt up to 5 deg) are matched
against the three tiles nearest to the truth, as matching_node does with its ``candidates_to_match``, for each
``query_scale`` (SIFT on the frame resized by it; 0.87 is the demo map's 0.25 m over the frames' 0.217 m, the
node's ``query_scale: 0``). Per scale: SIFT ms, the descriptor search ms both ways -- each candidate on its own
(the matcher before) and their union once (``match_descriptor_sets``, the matcher now) -- fix rate and the
camera's position error. Frames are rendered from the corpus' own map: the errors are upper bounds on accuracy.
One OpenCV thread; rerun beside nothing else.

    .venv/bin/python benchmarks/bench_query_cost.py [--frames 40] [--scales 1 0.87 0.75 0.5]
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from bench_stages import DEMO, frames

from gps_denied_nav.core.corpus import Corpus
from gps_denied_nav.core.local_features import match_descriptor_sets, match_descriptors
from gps_denied_nav.core.map_raster import load_geotiff
from gps_denied_nav.core.matching import MatchingConfig, TileFeatures, describe_query, match_frame
from gps_denied_nav.core.threads import ThreadBudget, apply_thread_budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ortho", default=str(DEMO / "world.tif"))
    parser.add_argument("--corpus", default=str(DEMO / "corpus"))
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.87, 0.75, 0.5])
    args = parser.parse_args()
    apply_thread_budget(ThreadBudget(torch_intra_op=1, opencv=1, faiss=1, blas=1))
    corpus = Corpus.load(args.corpus)
    shots = frames(corpus, load_geotiff(args.ortho, frame=corpus.frame), args.frames, np.random.default_rng(0))
    print(f"{len(shots)} frames 640x480 at 120 m over the demo corpus (map {corpus.manifest.map_geometry.gsd_m} m); "
          "3 nearest tiles each; one OpenCV thread")
    print("| query_scale | keypoints | SIFT ms | search ms, each tile | search ms, union | fixes | error rms m | p95 m |")
    print("|---|---|---|---|---|---|---|---|")
    for scale in args.scales:
        config = MatchingConfig(query_scale=scale)
        rows = {k: [] for k in ("kp", "sift", "each", "union")}
        errors, fixes = [], 0
        for rgb, _R, cam, K in shots:
            cv2.setRNGSeed(0)
            nearest = np.argsort(np.linalg.norm(corpus.tile_centres_enu_m[:, :2] - cam[:2], axis=1))[:3]
            tiles = [TileFeatures(int(i), *corpus.tile_features(int(i))) for i in nearest]
            features = describe_query(rgb, K, config)
            t0 = time.perf_counter()
            for tile in tiles:
                match_descriptors(features.desc, tile.desc)
            t1 = time.perf_counter()
            match_descriptor_sets(features.desc, [tile.desc for tile in tiles])
            t2 = time.perf_counter()
            result = match_frame(features, K, tiles, config, terrain_up_m=corpus.terrain_up_m)
            for key, value in (("kp", len(features.kp_px)), ("sift", features.detect_ms), ("each", 1e3 * (t1 - t0)),
                               ("union", 1e3 * (t2 - t1))):
                rows[key].append(value)
            if result.accepted:
                fixes += 1
                errors.append(float(np.linalg.norm(result.cam_pos_enu_m - cam)))
        e = np.array(errors) if errors else np.array([np.nan])
        print(f"| {scale:g} | {np.median(rows['kp']):.0f} | {np.median(rows['sift']):.1f} | "
              f"{np.median(rows['each']):.1f} | {np.median(rows['union']):.1f} | {fixes}/{len(shots)} | "
              f"{np.sqrt(np.mean(e ** 2)):.3f} | {np.percentile(e, 95):.3f} |")


if __name__ == "__main__":
    main()
