"""Retrieval benchmark on real imagery: Turku tiles -> GeoTIFF -> corpus -> rendered, rectified queries.

The Turku satellite tiles are mosaicked into a GeoTIFF (``sim.import_tiles``) in a temporary directory and
provisioned exactly as ``gdn provision`` does (150 m tiles, 50 m stride, untrained-but-adapted NetVLAD).
Query frames are rendered with ``sim.render.render_frame`` (640x480, 60 deg HFOV, ~120 m above ground,
any heading, roll/pitch up to 14 deg, random photometric changes), rectified north-up with the true
attitude to a 105 m square, described and searched globally and with a 200 m prior around a noisy
position. A retrieved tile counts as correct when its centre is within 50 m of the query's ground centre
(the tiles then overlap by more than half) and, stricter, when it is the tile nearest to it.
Prints recall@1/5/10 and per-stage times; compare with /work/shared/notes/baselines.md (untrained NetVLAD
recall@1/5/10 ~ 0.52/0.87/0.94). Run: ``.venv/bin/python benchmarks/bench_retrieval.py [--queries 200]``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from gps_denied_nav.core.camera import R_BODY_CAM_NADIR, CameraIntrinsics
from gps_denied_nav.core.corpus import Corpus
from gps_denied_nav.core.corpus_build import ProvisionConfig, provision
from gps_denied_nav.core.descriptor import DescriptorExtractor
from gps_denied_nav.core.map_raster import load_geotiff
from gps_denied_nav.core.rectify import optical_axis_ground_offset, rectify_to_north_up
from gps_denied_nav.core.retrieval import search
from gps_denied_nav.core.rotations import quat_from_euler, quat_to_rotmat
from gps_denied_nav.sim.import_tiles import mosaic_tiles_to_geotiff
from gps_denied_nav.sim.render import Photometric, render_frame
from gps_denied_nav.sim.world import SIMULATED_MAP_ERRORS

TURKU_CSV = Path(__file__).resolve().parents[1] / "../shared/data/turku_satellite/map/map.csv"
QUERY_FOOTPRINT_M = 105.0  # rectified query side, as in baselines.md
CORRECT_RADIUS_M = 50.0  # tile centre within this of the query's ground centre = correct


def sample_queries(raster, camera, count, rng):
    """Random poses over valid map -> list of (frame, R_world_cam, altitude_agl_m, ground_centre_enu_m)."""
    queries = []
    while len(queries) < count:
        east = rng.uniform(raster.east_min_m + 60.0, raster.east_max_m - 60.0)
        north = rng.uniform(raster.north_min_m + 60.0, raster.north_max_m - 60.0)
        roll, pitch = np.radians(rng.uniform(-14.0, 14.0, 2))
        R_world_cam = quat_to_rotmat(quat_from_euler(roll, pitch, rng.uniform(-np.pi, np.pi))) @ R_BODY_CAM_NADIR
        altitude_m = rng.uniform(110.0, 130.0)
        centre = np.array([east, north]) + optical_axis_ground_offset(camera.K, R_world_cam, altitude_m)
        half = 0.5 * QUERY_FOOTPRINT_M
        if raster.crop_enu(centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half).valid.mean() < 0.9:
            continue  # a flight plan stays over mapped ground
        frame = render_frame(raster, camera.K, R_world_cam, np.array([east, north, altitude_m]), camera.width_px,
                             camera.height_px, photometric=Photometric.random(rng), rng=rng)
        queries.append((frame, R_world_cam, altitude_m, centre))
    return queries


def recalls(indices, tile_centres, truth_centres):
    """(within-radius recall@1/5/10, nearest-tile recall@1/5/10) for indices [Q x k]."""
    distance = np.linalg.norm(tile_centres[indices] - truth_centres[:, None], axis=2)
    nearest = np.argmin(np.linalg.norm(tile_centres[None] - truth_centres[:, None], axis=2), axis=1)
    within = [np.mean((distance[:, :k] <= CORRECT_RADIUS_M).any(axis=1)) for k in (1, 5, 10)]
    exact = [np.mean((indices[:, :k] == nearest[:, None]).any(axis=1)) for k in (1, 5, 10)]
    return within, exact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--prior-radius-m", type=float, default=200.0)
    parser.add_argument("--prior-sigma-m", type=float, default=50.0, help="error of the prior position")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    if not TURKU_CSV.exists():
        print(f"skipped: {TURKU_CSV.resolve()} is absent")
        return
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    stage_s, last = defaultdict(float), [time.perf_counter(), None]

    def progress(stage, done, total):
        now = time.perf_counter()
        stage_s[stage] += now - last[0]
        last[0] = now

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        geotiff = mosaic_tiles_to_geotiff(TURKU_CSV, Path(tmp) / "turku.tif")
        raster = load_geotiff(geotiff)
        t1 = time.perf_counter()
        print(f"map {raster.width_px}x{raster.height_px} px at {raster.gsd_m:.3f} m/px "
              f"({raster.width_m:.0f} x {raster.height_m:.0f} m, {raster.valid.mean():.0%} valid), "
              f"GeoTIFF + load {t1 - t0:.1f} s")
        last[0] = time.perf_counter()
        manifest = provision(raster, Path(tmp) / "corpus", ProvisionConfig(device="cpu", assume_sea_level=True,
                                                                                 **SIMULATED_MAP_ERRORS), progress)
        t_load = time.perf_counter()
        corpus = Corpus.load(Path(tmp) / "corpus")
        t_load = time.perf_counter() - t_load
        n = manifest.num_tiles
        print(f"corpus: {n} tiles, {manifest.num_features} SIFT keypoints, model {manifest.model_id}; provisioning "
              + ", ".join(f"{k} {v:.1f} s" for k, v in stage_s.items()))
        print(f"Corpus.load with checksum verification: {1e3 * t_load:.0f} ms")
        print(f"per tile: backbone+head {1e3 * stage_s['descriptors'] / n:.0f} ms, "
              f"SIFT {1e3 * stage_s['sift'] / n:.0f} ms (cells shared by up to 9 tiles)")

        camera = CameraIntrinsics.from_hfov(640, 480, 60.0)
        t2 = time.perf_counter()
        queries = sample_queries(raster, camera, args.queries, rng)
        t3 = time.perf_counter()
        runtime = DescriptorExtractor(corpus.load_model(), device="cpu", input_px=manifest.tile_px, batch_size=1)
        query_px = manifest.tile_px  # rectify straight to the network's input size: one resampling only
        times = defaultdict(list)
        descriptors, truth = [], []
        for frame, R_world_cam, altitude_m, centre in queries:
            ta = time.perf_counter()
            image, _, _ = rectify_to_north_up(frame, camera.K, R_world_cam, altitude_m,
                                              QUERY_FOOTPRINT_M / query_px, query_px)
            tb = time.perf_counter()
            descriptors.append(runtime.describe(image[None])[0])
            tc = time.perf_counter()
            times["rectify"].append(tb - ta)
            times["descriptor"].append(tc - tb)
            truth.append(centre)
        descriptors, truth = np.array(descriptors), np.array(truth)
        global_indices, prior_indices, modes = [], [], defaultdict(int)
        for descriptor, centre in zip(descriptors, truth):
            ta = time.perf_counter()
            result = search(corpus.index, descriptor, 10)
            tb = time.perf_counter()
            prior = centre + rng.normal(0.0, args.prior_sigma_m, 2)
            restricted = search(corpus.index, descriptor, 10, corpus.tile_centres_enu_m, prior, args.prior_radius_m)
            tc = time.perf_counter()
            for index in result.indices[:5]:
                corpus.tile_features(int(index))
            td = time.perf_counter()
            corpus.features_in_window(centre, 150.0)
            te = time.perf_counter()
            times["faiss global"].append(tb - ta)
            times["faiss prior"].append(tc - tb)
            times["tile features top-5"].append(td - tc)
            times["features 300 m window"].append(te - td)
            global_indices.append(result.indices)
            # Fewer than 10 tiles inside the radius: pad with the last one so recall@10 stays defined.
            prior_indices.append(np.pad(restricted.indices, (0, 10 - len(restricted.indices)), mode="edge"))
            modes[restricted.mode] += 1

    print(f"{len(queries)} queries rendered in {t3 - t2:.1f} s; query = {QUERY_FOOTPRINT_M:.0f} m north-up "
          f"at {QUERY_FOOTPRINT_M / query_px:.3f} m/px ({query_px} px)")
    for name, indices in (("global", global_indices), (f"prior {args.prior_radius_m:.0f} m", prior_indices)):
        within, exact = recalls(np.array(indices), corpus.tile_centres_enu_m, truth)
        print(f"recall@1/5/10 {name:>10}: within {CORRECT_RADIUS_M:.0f} m {within[0]:.2f}/{within[1]:.2f}/"
              f"{within[2]:.2f}, nearest tile {exact[0]:.2f}/{exact[1]:.2f}/{exact[2]:.2f}")
    print(f"prior modes: {dict(modes)} (prior error sigma {args.prior_sigma_m:.0f} m)")
    print("baseline (baselines.md, untrained NetVLAD): recall@1/5/10 ~ 0.52/0.87/0.94")
    print("per query ms (median / min; the minimum shows the cost without other jobs on the cores):")
    for name, values in times.items():
        print(f"  {name:>22}: {1e3 * np.median(values):8.3f} / {1e3 * np.min(values):8.3f}")


if __name__ == "__main__":
    main()
