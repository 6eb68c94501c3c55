"""Provisioning throughput: tiles/s of the one-process path and of Ray with 1 and 2 descriptor actors on the
same map, with the time of each stage, and the per-tile costs `benchmarks/sizing.py` scales up.

The map is the real Turku imagery (``shared/data/turku_satellite/map``, mosaicked with
`sim.import_tiles.mosaic_tiles_to_geotiff`) when it is there, else the generated demo world. The config is
the default one (150 m tiles every 50 m, 320 px, EfficientNet-Lite0 NetVLAD 4096-d, 2000 SIFT per tile).
Ray runs on a local instance with as many CPUs as actors, one torch thread per actor; the one-process
path runs with torch's default threads and with one, for the like-for-like ratio. Wall times on a shared
machine are noisy: the ratios printed are one run's, not a law. Writes ``--json`` (default
docs/provision_bench.json) with the measured seconds per tile of each stage.
Run: ``nice -n 10 .venv/bin/python benchmarks/bench_provision_ray.py [--map MAP.tif] [--work DIR]``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tempfile
from pathlib import Path

import numpy as np
import torch

from gps_denied_nav.core.corpus import Corpus
from gps_denied_nav.core.corpus_build import ProvisionConfig, provision

ROOT = Path(__file__).resolve().parents[1]
TURKU_CSV = ROOT.parent / "shared" / "data" / "turku_satellite" / "map" / "map.csv"


def bench_map(work: Path) -> Path:
    """The Turku mosaic, else the demo world (both GeoTIFFs, written once into ``work``)."""
    if TURKU_CSV.exists():
        from gps_denied_nav.sim.import_tiles import mosaic_tiles_to_geotiff

        path = work / "turku.tif"
        return path if path.exists() else mosaic_tiles_to_geotiff(TURKU_CSV, path)
    from gps_denied_nav.sim.world import generate_world

    path = work / "world.tif"
    return path if path.exists() else generate_world(path)


def stage_clock():
    """A progress callback, and -> {stage: seconds} once the run is over (its wall time given).

    A stage's time is its rate between its first and last report times its count, so work done between
    reports (the PCA and k-means after the last "init" report, tracing) is not billed to the next stage;
    "init" is what is left of the wall time: the sample's features, PCA, k-means, checkpoint.
    """
    first, last = {}, {}

    def progress(stage, done, total):
        now = time.perf_counter()
        first.setdefault(stage, (now, done))
        last[stage] = (now, done, total)

    def stages(wall_s: float, end: float) -> dict:
        out = {}
        for stage in ("tiles", "descriptors", "sift"):
            (t0, done0), (t1, done1, total) = first[stage], last[stage]
            out[stage] = (t1 - t0) / max(done1 - done0, 1) * total
        out["write"] = end - last["sift"][0]
        out["init"] = wall_s - sum(out.values())
        return out
    return progress, stages


def run_single(map_path: Path, out: Path, config: ProvisionConfig, threads: int) -> dict:
    torch.set_num_threads(threads)
    progress, stages = stage_clock()
    t0 = time.perf_counter()
    manifest = provision(map_path, out, config, progress)
    end = time.perf_counter()
    return {"name": f"one process, {threads} torch thread{'s' * (threads > 1)}", "wall_s": end - t0,
            "num_tiles": manifest.num_tiles, "stage_s": stages(end - t0, end),
            "cells": len(Corpus.load(out).cell_offsets) - 1}


def run_ray(map_path: Path, out: Path, config: ProvisionConfig, workers: int) -> dict:
    import ray

    from gps_denied_nav.core.provision_ray import RayConfig, provision_ray

    torch.set_num_threads(1)  # the driver's head adaptation, as in the one-thread one-process run
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        t0 = time.perf_counter()
        result = provision_ray(map_path, out, config, RayConfig(num_workers=workers))
        wall = time.perf_counter() - t0
    finally:
        ray.shutdown()
    return {"name": f"Ray, {workers} actor{'s' * (workers > 1)}", "wall_s": wall, "num_tiles": result.manifest.num_tiles,
            "stage_s": result.stage_s, "workers_used": len(set(result.describe_pids)),
            "cells": len(Corpus.load(out).cell_offsets) - 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--map", type=Path, help="GeoTIFF to provision (default: Turku, else the demo world)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_provision_ray")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "provision_bench.json")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    map_path = args.map or bench_map(args.work)
    config = ProvisionConfig(assume_sea_level=True, device="cpu")
    default_threads = torch.get_num_threads()
    runs = [run_single(map_path, args.work / "single", config, default_threads),
            run_single(map_path, args.work / "single_1t", config, 1),
            run_ray(map_path, args.work / "ray1", config, 1),
            run_ray(map_path, args.work / "ray2", config, 2)]
    reference = np.load(args.work / "single_1t" / "descriptors.npy")
    for name in ("ray1", "ray2"):  # the Ray corpora must be the same corpus
        assert np.abs(np.load(args.work / name / "descriptors.npy") - reference).max() <= 1e-5

    base = runs[0]["num_tiles"] / runs[0]["wall_s"]
    print(f"map {map_path.name}: {runs[0]['num_tiles']} tiles, {runs[0]['cells']} SIFT cells; "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), shared: noisy")
    stages = ("tiles", "init", "descriptors", "sift", "write")
    print(f"{'run':30s} {'tiles/s':>8s} {'x first':>8s}  " + " ".join(f"{s + ' s':>14s}" for s in stages))
    for run in runs:
        rate = run["num_tiles"] / run["wall_s"]
        print(f"{run['name']:30s} {rate:8.2f} {rate / base:8.2f}  "
              + " ".join(f"{run['stage_s'].get(s, 0.0):14.1f}" for s in stages))
    one = runs[1]
    per_tile = {"descriptor_s_per_tile_1thread": one["stage_s"]["descriptors"] / one["num_tiles"],
                "sift_s_per_cell_1thread": one["stage_s"]["sift"] / one["cells"],
                "init_s": one["stage_s"]["init"], "tiles": one["num_tiles"], "cells": one["cells"],
                "tile_px": config.tile_px, "map": map_path.name, "cpu": platform.processor() or platform.machine(),
                "runs": runs}
    args.json.write_text(json.dumps(per_tile, indent=1) + "\n")
    print(f"per tile (1 thread): descriptor {per_tile['descriptor_s_per_tile_1thread'] * 1e3:.0f} ms, SIFT "
          f"{per_tile['sift_s_per_cell_1thread'] * 1e3:.0f} ms per cell -> {args.json}")


if __name__ == "__main__":
    main()
