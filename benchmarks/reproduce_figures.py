"""Regenerate the replay figures the README quotes, on this machine, with the machine and mode beside them.

One command, from a fresh clone after ``make demo`` set things up (it reuses out/demo, or makes it):

    .venv/bin/python benchmarks/reproduce_figures.py [--out out/figures] [--realtime-runs 3] [--only ci]

Runs, each through the whole lifecycle graph:
- ``ci_short_lockstep``: the short reference flight CI replays (replay.reference); tests/e2e compares CI's
  run against this row with the tolerances stated there;
- ``demo_lockstep`` and ``demo_lockstep_loaded`` (another process spinning on one core the whole time);
- ``demo_realtime_process_per_node`` and ``demo_realtime_one_process``: the median of N realtime runs;
- ``turku_lockstep``: a flight rendered over the real Turku imagery (skipped without ../shared/data);
- the standalone forward pass of the same model (batch 1, one thread), the reference for the in-graph ratio.
Writes ``docs/figures.json``, ``docs/FIGURES.md`` and ``docs/TIMING.md`` (the per-stage table of the first
one-process realtime run) and copies the last two into the README (``--out`` holds the replays). About 20 minutes on 2
cores with the defaults; ``--only ci`` takes one.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from readme_blocks import sync_readme

from gps_denied_nav.core.stage_timing import timing_table
from gps_denied_nav.replay import reference
from gps_denied_nav.replay.demo import prepare_demo
from gps_denied_nav.replay.machine import machine_info
from gps_denied_nav.replay.session import replay

ROOT = Path(__file__).resolve().parents[1]
TURKU = ROOT.parent / "shared" / "data" / "turku_satellite"
COLUMNS = ("fix_rate", "rmse_m", "cep95_m", "nees_position_3d_mean", "latency_ms_p50", "latency_ms_p95",
           "inference_forward_ms_p50", "forward_in_graph_over_alone", "matching_ms_p50", "eskf_node_rss_mb", "wall_s")


def row(report: dict) -> dict:
    stages = report["timing"]["stages"]
    rss = report["peak_rss_mb"]
    return {"fix_rate": report["fix_rate"], "rmse_m": report["rmse_m"], "cep95_m": report["cep95_m"],
            "nees_position_3d_mean": report["nees_position_3d_mean"], "latency_ms_p50": report["latency_ms_p50"],
            "latency_ms_p95": report["latency_ms_p95"],
            "inference_forward_ms_p50": stages["inference"]["steps_ms"].get("forward", {}).get("p50"),
            "matching_ms_p50": stages["matching"]["total_ms"]["p50"],
            "forward_in_graph_over_alone": None,
            "eskf_node_rss_mb": rss.get("eskf_node"), "wall_s": report["wall_s"], "mode": report["mode"],
            "host": report["host"], "lockstep_timeouts": (report["lockstep"] or {}).get("timeouts")}


def median_row(rows: list[dict]) -> dict:
    out = dict(rows[0])
    for key in COLUMNS:
        values = [r[key] for r in rows if r[key] is not None]
        out[key] = statistics.median(values) if values else None
    out["runs"] = len(rows)
    return out


def spinner() -> subprocess.Popen:
    """A process busy on the last core for as long as it lives (the loaded-machine condition)."""
    core = max(os.sched_getaffinity(0))
    return subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass"])


def standalone_forward_ms(corpus: Path, frames: int = 40) -> float:
    """p50 of the corpus model's forward pass on 320 px inputs, batch 1, one thread, outside the graph."""
    from gps_denied_nav.core.corpus import Corpus
    from gps_denied_nav.core.descriptor import DescriptorExtractor
    from gps_denied_nav.core.threads import ThreadBudget, apply_thread_budget

    apply_thread_budget(ThreadBudget(torch_intra_op=1, opencv=1, blas=1))
    c = Corpus.load(corpus)
    extractor = DescriptorExtractor(c.load_model(), device="cpu", input_px=c.tile_px)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(frames + 3):
        image = rng.integers(0, 255, (1, c.tile_px, c.tile_px, 3), dtype=np.uint8)
        t0 = time.perf_counter()
        extractor.describe(image)
        times.append(1e3 * (time.perf_counter() - t0))
    return float(np.median(times[3:]))


def turku_inputs(out: Path) -> tuple[Path, Path] | None:
    if not (TURKU / "map" / "map.csv").exists():
        return None
    from gps_denied_nav.core.corpus_build import ProvisionConfig, provision
    from gps_denied_nav.sim.world import SIMULATED_MAP_ERRORS
    from gps_denied_nav.core.map_raster import load_geotiff
    from gps_denied_nav.sim.clip import write_clip
    from gps_denied_nav.sim.flight import FlightConfig, simulate_flight
    from gps_denied_nav.sim.import_tiles import mosaic_tiles_to_geotiff

    out.mkdir(parents=True, exist_ok=True)
    clip, corpus = out / "clip.mcap", out / "corpus"
    if not (corpus / "manifest.json").exists() or not clip.exists():
        raster = load_geotiff(mosaic_tiles_to_geotiff(TURKU / "map" / "map.csv", out / "turku.tif"), gsd_m=0.25)
        provision(raster, corpus, ProvisionConfig(assume_sea_level=True, **SIMULATED_MAP_ERRORS))
        write_clip(simulate_flight(raster, FlightConfig(seed=1, duration_s=60.0)), clip)
    return clip, corpus


def markdown(figures: dict) -> str:
    m = figures["machine"]
    lines = [f"Measured {figures['measured']} on {m['cpu_model']}, {m['cores']} cores, load before "
             f"{m['load_avg_1_5_15']}, Python {m['python']} (`benchmarks/reproduce_figures.py`, "
             f"{figures['run_s'] / 60:.0f} min). Standalone forward pass (batch 1, one thread): "
             f"{figures['standalone_forward_ms_p50']:.0f} ms at the start; `forward_in_graph_over_alone` divides "
             "the in-graph p50 by the same pass alone, measured right after the realtime runs.", "",
             "| run | mode, host | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    fmt = lambda v: "-" if v is None else (f"{v:.3f}" if abs(v) < 10 else f"{v:.0f}")  # noqa: E731
    for name, r in figures["runs"].items():
        runs = f", median of {r['runs']}" if "runs" in r else ""
        lines.append(f"| {name} | {r['mode']}, {r['host']}{runs} | " + " | ".join(fmt(r[k]) for k in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "figures")
    parser.add_argument("--realtime-runs", type=int, default=3)
    parser.add_argument("--only", choices=("ci",), help="only the CI reference flight")
    args = parser.parse_args()
    t0, machine = time.monotonic(), machine_info()
    runs: dict[str, dict] = {}
    short = args.out / "short"
    short.mkdir(parents=True, exist_ok=True)
    world, corpus, clip = short / "world.tif", short / "corpus", short / "clip.mcap"
    if not (corpus / "manifest.json").exists() or not clip.exists():  # deterministic from seeds: made once
        shutil.rmtree(short)
        short.mkdir(parents=True)
        reference.small_world(world)
        reference.small_corpus(world, corpus)
        reference.short_clip(world, clip)
    runs["ci_short_lockstep"] = row(replay(clip, corpus, short / "replay").to_json_dict())
    forward_ms = None
    if args.only is None:
        _world, clip, corpus = prepare_demo(ROOT / "out" / "demo")
        forward_ms = standalone_forward_ms(corpus)
        runs["demo_lockstep"] = row(replay(clip, corpus, args.out / "demo_lockstep").to_json_dict())
        spin = spinner()
        try:
            runs["demo_lockstep_loaded"] = row(replay(clip, corpus, args.out / "demo_loaded").to_json_dict())
        finally:
            spin.kill()
        for name, per_node in (("demo_realtime_process_per_node", True), ("demo_realtime_one_process", False)):
            rows = [row(replay(clip, corpus, args.out / f"{name}_{k}", mode="realtime",
                               process_per_node=per_node).to_json_dict()) for k in range(args.realtime_runs)]
            runs[name] = median_row(rows)
            # the machine's speed drifts (up to ~3x here within an hour): the forward pass alone, just after
            alone_ms = standalone_forward_ms(corpus)
            runs[name].update(standalone_forward_ms_p50=alone_ms,
                              forward_in_graph_over_alone=runs[name]["inference_forward_ms_p50"] / alone_ms)
        turku = turku_inputs(args.out / "turku")
        if turku is not None:
            runs["turku_lockstep"] = row(replay(*turku, args.out / "turku" / "replay").to_json_dict())
    figures_path = ROOT / "docs" / "figures.json"
    figures = json.loads(figures_path.read_text()) if figures_path.exists() and args.only else {"runs": {}}
    measured_on = f"{time.strftime('%Y-%m-%d')}, {machine['cpu_model']}, {machine['cores']} cores"
    figures["runs"].update({name: {**r, "measured_on": measured_on} for name, r in runs.items()})
    if forward_ms is not None:  # a full run: the page's header describes it
        figures.update({"machine": machine, "measured": time.strftime("%Y-%m-%d"), "run_s": time.monotonic() - t0,
                        "standalone_forward_ms_p50": forward_ms})
    figures_path.write_text(json.dumps(figures, indent=2) + "\n")
    if "standalone_forward_ms_p50" in figures:
        (ROOT / "docs" / "FIGURES.md").write_text(markdown(figures))
        print(markdown(figures))
    if args.only is None:
        timing = json.loads((args.out / "demo_realtime_one_process_0" / "report.json").read_text())["timing"]
        (ROOT / "docs" / "TIMING.md").write_text(f"```\n{timing_table(timing)}\n```\n")
    sync_readme(("figures", "timing"))
    print(f"wrote {figures_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
