"""Monte Carlo over rendered flights: several seeds of the demo flight replayed through the whole graph.

Each seed flies a different survey (position, direction, IMU noise and bias draw, GNSS noise, photometric
changes) over the demo world, and the fused estimate's NEES is averaged over all scored samples: for an
honest covariance 2 for the horizontal position (2 DoF), 3 for the 3-D position, the velocity and the
attitude (from the odometry against /ground_truth/odom). Prints one row per seed and the totals.

    .venv/bin/python benchmarks/eval_replay_seeds.py [--seeds 8] [--duration-s 60] [--rate 1.0]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from gps_denied_nav.core.corpus_build import ProvisionConfig, provision
from gps_denied_nav.sim.world import SIMULATED_MAP_ERRORS
from gps_denied_nav.core.map_raster import load_geotiff
from gps_denied_nav.replay.inspect_bag import last_diagnostics
from gps_denied_nav.replay.session import replay
from gps_denied_nav.sim.clip import write_clip
from gps_denied_nav.sim.flight import FlightConfig, simulate_flight
from gps_denied_nav.sim.world import generate_world


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--imu-hz", type=float, default=FlightConfig.imu_rate_hz)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "gdn_seeds")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    world, corpus = args.out / "world.tif", args.out / "corpus"
    if not world.exists():
        generate_world(world, seed=0)
    if not (corpus / "manifest.json").exists():
        provision(world, corpus, ProvisionConfig(assume_sea_level=True, **SIMULATED_MAP_ERRORS))
    raster = load_geotiff(world)
    rows = []
    for seed in range(1, args.seeds + 1):
        clip = args.out / f"clip_{seed}.mcap"
        if clip.exists():
            shutil.rmtree(clip)
        write_clip(simulate_flight(raster, FlightConfig(seed=seed, duration_s=args.duration_s,
                                                        imu_rate_hz=args.imu_hz)), clip)
        r = replay(clip, corpus, args.out / f"replay_{seed}", rate=args.rate).to_json_dict()
        rows.append((seed, r["fix_rate"], r["rmse_m"], r["cep95_m"], r["nees_horizontal_mean"],
                     r["nees_within_95_frac"], r["scored_samples"], r["latency_ms_p50"], r["nees_position_3d_mean"],
                     r["nees_velocity_mean"], r["nees_attitude_mean"], r["state_scoring"]["samples"],
                     r["velocity_rmse_mps"], r["attitude_tilt_rmse_deg"], r["yaw_rmse_deg"]))
        print(f"seed {seed}: fix_rate {r['fix_rate']:.2f} rmse {r['rmse_m']:.3f} m cep95 {r['cep95_m']:.3f} m "
              f"NEES {r['nees_horizontal_mean']:.2f} in95 {r['nees_within_95_frac']:.2f} "
              f"latency p50 {r['latency_ms_p50']:.0f} ms; NEES 3-D position / velocity / attitude "
              f"{r['nees_position_3d_mean']:.2f} / {r['nees_velocity_mean']:.2f} / {r['nees_attitude_mean']:.2f}, "
              f"velocity RMSE {r['velocity_rmse_mps']:.3f} m/s, tilt {r['attitude_tilt_rmse_deg']:.2f} deg, "
              f"yaw {r['yaw_rmse_deg']:.2f} deg", flush=True)
        eskf = last_diagnostics(args.out / f"replay_{seed}" / "outputs.mcap").get("gps_denied_nav: eskf_node", ("", "", {}))[2]
        print("  eskf_node: " + ", ".join(f"{k} {eskf.get(k)}" for k in (
            "imu_received", "imu_gaps", "imu_samples_missing", "imu_max_gap_ms", "visual_fix_accepted",
            "visual_fix_rejected")), flush=True)
    a = np.array([row[1:] for row in rows], dtype=float)
    weights, state_weights = a[:, 5], a[:, 10]
    print(f"\n{len(rows)} rendered flights of {args.duration_s:.0f} s: fix_rate mean {a[:, 0].mean():.2f}, "
          f"rmse mean {a[:, 1].mean():.3f} m (max {a[:, 1].max():.3f}), "
          f"horizontal NEES sample-weighted mean {np.average(a[:, 3], weights=weights):.2f} (2 = honest), "
          f"within the 95 % ellipse {np.average(a[:, 4], weights=weights):.2f} (0.95 = honest); NEES 3-D position "
          f"{np.average(a[:, 7], weights=state_weights):.2f}, velocity {np.average(a[:, 8], weights=state_weights):.2f}, "
          f"attitude {np.average(a[:, 9], weights=state_weights):.2f} (3 = honest)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
