"""Whole-graph replay over real satellite imagery (Turku, ../shared/data/turku_satellite).

Builds a GeoTIFF from the real tiles, provisions a corpus, renders a flight clip over it (perspective
frames with roll/pitch, exposure/blur/JPEG changes, MEMS IMU, baro, GNSS for the first seconds), replays
it through the lifecycle graph and prints report.json. The map has gaps (three tiles are missing) and
forest, the terrain where visual fixes are scarce. Prints figures; asserts nothing about speed.

    .venv/bin/python benchmarks/eval_replay_turku.py [--duration-s 60] [--seed 1] [--out /tmp/gdn_turku]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import tempfile
from pathlib import Path

from gps_denied_nav.core.corpus_build import ProvisionConfig, provision
from gps_denied_nav.sim.world import SIMULATED_MAP_ERRORS
from gps_denied_nav.core.map_raster import load_geotiff
from gps_denied_nav.replay.session import print_progress, replay
from gps_denied_nav.sim.clip import write_clip
from gps_denied_nav.sim.flight import FlightConfig, simulate_flight
from gps_denied_nav.sim.import_tiles import mosaic_tiles_to_geotiff

TURKU = Path(__file__).resolve().parents[2] / "shared" / "data" / "turku_satellite"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--map-gsd-m", type=float, default=0.25, help="resample the 0.14 m/px imagery")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "gdn_turku")
    args = parser.parse_args()
    if not (TURKU / "map" / "map.csv").exists():
        print(f"skipped: real imagery not found at {TURKU}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    tif = mosaic_tiles_to_geotiff(TURKU / "map" / "map.csv", args.out / "turku.tif")
    raster = load_geotiff(tif, gsd_m=args.map_gsd_m)
    corpus = args.out / "corpus"
    provision(raster, corpus, ProvisionConfig(assume_sea_level=True, **SIMULATED_MAP_ERRORS), progress=lambda s, d, t: print_progress(f"provision: {s}", d, t))
    t_provision = time.monotonic() - t0
    flight = simulate_flight(raster, FlightConfig(seed=args.seed, duration_s=args.duration_s),
                             progress=lambda d, t: print_progress("render", d, t))
    clip = args.out / "clip.mcap"
    if clip.exists():
        import shutil
        shutil.rmtree(clip)
    write_clip(flight, clip)
    report = replay(clip, corpus, args.out / "replay").to_json_dict()
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, dict)}, indent=2))
    print(f"map {raster.width_m:.0f} x {raster.height_m:.0f} m at {raster.gsd_m} m/px; provisioning {t_provision:.0f} s; "
          f"plots in {args.out / 'replay'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
