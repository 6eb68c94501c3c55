"""Monte Carlo of the ESKF on rendered flights: every fix comes from the real matcher.

One world is provisioned once (the demo's procedural orthophoto, or with --world a GeoTIFF such as the
Turku mosaic of eval_replay_turku.py) and each run flies a different survey over it (sim.flight:
BMI088-class IMU at 200 Hz, BMP388-class baro, 2 Hz nadir frames with roll/pitch from the turns and
photometric changes). Each frame is matched as the matching node does it: SIFT against the provisioned
features within the retrieval radius of the position prior, homography + planar PnP, the tilt prior's
plausibility check, the reported covariance and heading variance. With --with-retrieval each frame is
also rectified, described (NetVLAD) and searched (FAISS, prior radius) first and only the top-3 tiles are
matched, as in the graph. The position and attitude priors are the truth perturbed by the filter's
typical errors (the graph takes them from the filter). Accepted fixes are fed to the filter 1 s after
exposure in the five scenarios of eskf_scenarios.py; the filter starts from the truth plus errors drawn
from its initial covariance. Fixes are cached per run in --cache: the first 50 runs take ~40 min on two
cores (matching 12000 frames), scoring them again ~12 min (rendering the flights for their IMU and truth).

    .venv/bin/python benchmarks/eval_eskf_rendered.py [--runs 50] [--duration-s 120] [--with-retrieval]
"""
from __future__ import annotations

import argparse
import sys
import time
import tempfile
from pathlib import Path

import numpy as np

import rendered_fixes
from eskf_scenarios import MODES, Fix, RunData, Scenario, Truth, draw_outlier, fly, verdict

from gps_denied_nav.core.baro import pressure_to_altitude_m
from gps_denied_nav.core.corpus import Corpus
from gps_denied_nav.core.corpus_build import ProvisionConfig, provision
from gps_denied_nav.sim.world import SIMULATED_MAP_ERRORS
from gps_denied_nav.core.descriptor import DescriptorExtractor
from gps_denied_nav.core.map_raster import load_geotiff
from gps_denied_nav.replay.session import print_progress
from gps_denied_nav.sim.flight import FlightConfig, FlightData, simulate_flight
from gps_denied_nav.sim.imu_model import eskf_process_noise
from gps_denied_nav.sim.world import generate_world

LATENCY_S = 1.0


def frame_fixes(flight: FlightData, corpus: Corpus, extractor: DescriptorExtractor | None,
                rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """rendered_fixes.frame_fixes as rows [stamp, east, north, cov_ee, cov_en, cov_nn, yaw, yaw_var]: this
    evaluation fuses the horizontal fix (the terrain one, eval_terrain.py, the 3-D one)."""
    fixes, frames = rendered_fixes.frame_fixes(flight, corpus, extractor, rng)
    return fixes[:, [0, 1, 2, 4, 5, 8, 13, 14]], frames


def make_run(flight: FlightData, fixes: np.ndarray, rng: np.random.Generator, sc: Scenario) -> RunData:
    imu_truth = flight.truth_imu
    truth = Truth(imu_truth.t_s, imu_truth.pos_enu_m, imu_truth.vel_enu_mps, imu_truth.q_world_body)
    out = []
    for stamp, east, north, cee, cen, cnn, yaw, yaw_var in fixes:
        true_en = truth.pos_enu_m[truth.index(stamp), :2]
        outlier, bad = draw_outlier(rng, true_en)
        out.append(Fix(stamp, np.array([east, north]), np.array([[cee, cen], [cen, cnn]]), yaw, yaw_var, outlier, bad))
    s0 = sc.sigma0
    x0_error = rng.normal(size=9) * np.concatenate([s0["pos_sigma_m"], np.full(3, s0["vel_sigma_mps"]),
                                                     s0["att_sigma_rad"]])
    baro = flight.baro
    baro_alt = pressure_to_altitude_m(baro.pressure_pa, flight.baro_reference_pa)
    return RunData(flight.imu, baro.t_s, baro_alt, flight.config.baro_noise.noise_sigma_m, out, truth, x0_error,
                   -flight.config.ground_up_m)


def prepare_world(args) -> tuple[Path, Path]:
    args.cache.mkdir(parents=True, exist_ok=True)
    world = args.world or args.cache / "world.tif"
    if args.world is None and not world.exists():
        print("generating the demo world")
        generate_world(world, seed=0)
    corpus = args.corpus or args.cache / f"corpus_{world.stem}"
    if not (corpus / "manifest.json").exists():
        provision(load_geotiff(world, gsd_m=args.map_gsd_m), corpus, ProvisionConfig(assume_sea_level=True, **SIMULATED_MAP_ERRORS),
                  progress=lambda s, d, t: print_progress(f"provision: {s}", d, t))
    return world, corpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--duration-s", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0, help="first flight seed; run r flies seed + r")
    parser.add_argument("--world", type=Path, default=None, help="GeoTIFF (default: the demo world)")
    parser.add_argument("--map-gsd-m", type=float, default=None, help="resample the GeoTIFF (default: native)")
    parser.add_argument("--corpus", type=Path, default=None, help="corpus of that GeoTIFF at that GSD "
                        "(default: provisioned into --cache)")
    parser.add_argument("--with-retrieval", action="store_true",
                        help="describe and search every frame (3x slower) instead of matching the prior's window")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "gdn_eskf_rendered")
    parser.add_argument("--fix-cov-scale", type=float, default=1.0,
                        help="scale the matcher's covariances (0.5 undoes its default covariance_inflation 2)")
    args = parser.parse_args()
    start = time.perf_counter()
    world, corpus_dir = prepare_world(args)
    raster, corpus = load_geotiff(world, gsd_m=args.map_gsd_m), Corpus.load(corpus_dir)
    extractor = (DescriptorExtractor(corpus.load_model(), device="cpu", input_px=corpus.tile_px)
                 if args.with_retrieval else None)
    config = FlightConfig(duration_s=args.duration_s)
    noise = config.imu_noise
    outage = (min(40.0, 0.3 * args.duration_s), min(100.0, 0.3 * args.duration_s + 60.0))
    sc = Scenario(latency_s=LATENCY_S, outage_s=outage, epochs_s=np.arange(5.0, args.duration_s - 1.0, 0.5),
                  rmse_from_s=10.0, process_noise=eskf_process_noise(noise, config.baro_noise),
                  sigma0=dict(pos_sigma_m=np.array([3.0, 3.0, 2.0]), vel_sigma_mps=0.3,
                              att_sigma_rad=np.radians([1.0, 1.0, 3.0]), baro_offset_sigma_m=30.0),
                  accel_bias_sigma_mps2=noise.accel_bias_init_sigma_mps2,
                  gyro_bias_sigma_radps=noise.gyro_bias_init_sigma_radps)
    traces = {mode: [] for mode in MODES}
    frames_total, fixes_total, fix_err = 0, 0, []
    for run in range(args.runs):
        seed = args.seed + run
        flight = simulate_flight(raster, FlightConfig(seed=seed, duration_s=args.duration_s))
        pipeline = "retrieval" if args.with_retrieval else "window"
        cached = args.cache / f"fixes_{world.stem}_{pipeline}_{args.duration_s:g}s_seed{seed}.npz"
        if cached.exists():
            with np.load(cached) as z:
                fixes, frames = z["fixes"], int(z["frames"])
        else:
            fixes, frames = frame_fixes(flight, corpus, extractor, np.random.default_rng([seed, 1]))
            np.savez(cached, fixes=fixes, frames=frames)
        frames_total, fixes_total = frames_total + frames, fixes_total + len(fixes)
        scaled = fixes.copy()
        scaled[:, [3, 4, 5, 7]] *= args.fix_cov_scale
        data = make_run(flight, scaled, np.random.default_rng([seed, 2]), sc)
        fix_err += [np.linalg.norm(f.pos_en_m - data.truth.pos_enu_m[data.truth.index(f.stamp_s), :2])
                    for f in data.fixes]
        for mode in MODES:
            traces[mode].append(fly(data, sc, mode))
        print(f"run {run + 1}/{args.runs}: {len(fixes)}/{frames} frames fixed, {time.perf_counter() - start:.0f} s",
              flush=True)
    fix_err = np.array(fix_err)
    print(f"{args.runs} rendered flights x {len(MODES)} scenarios over {world.name} ({raster.width_m:.0f} x "
          f"{raster.height_m:.0f} m), {args.duration_s:.0f} s each; fixes {fixes_total}/{frames_total} frames "
          f"({100 * fixes_total / frames_total:.0f} %), horizontal fix error RMS {np.sqrt(np.mean(fix_err**2)):.3f} m, "
          f"p95 {np.percentile(fix_err, 95):.3f} m; covariance scale {args.fix_cov_scale}; latency {LATENCY_S} s; "
          f"wall {time.perf_counter() - start:.0f} s")
    return verdict(traces, sc)


if __name__ == "__main__":
    sys.exit(main())
