"""Retrieval before and after `gdn train-vpr` on the real Turku imagery, on flights it never trained on.

The Turku satellite tiles are mosaicked into a GeoTIFF and provisioned (150 m tiles, 50 m stride); one copy of
the corpus keeps the untrained-but-adapted model, the other is trained with `gdn train-vpr` (render seed 0,
the "autumn" appearance family held out). Two flights are rendered over the same map with seeds the training
never saw: one at 105 m above ground in the held-out autumn appearance, one at 145 m as mapped. Both are
scored with `gdn eval-retrieval` against both corpora: recall@1/5/10/20, global and within a 200 m prior, beside
the random pick. Frames are rendered from the raster the corpus was cut from: an upper bound for real flights.
Writes docs/vpr.json and docs/VPR.md (the README's block). Re-runs reuse --work (corpora, views, training state).

    .venv/bin/python benchmarks/eval_vpr_turku.py [--work /tmp/gdn_vpr] [--views-per-tile 24] [--epochs 8]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time

import numpy as np
from pathlib import Path

from readme_blocks import sync_readme

from gps_denied_nav.core.corpus_build import ProvisionConfig, provision
from gps_denied_nav.core.map_raster import load_geotiff
from gps_denied_nav.core.vpr_corpus import TrainVprConfig, train_vpr
from gps_denied_nav.replay.eval_retrieval import evaluate_clip
from gps_denied_nav.replay.machine import machine_info
from gps_denied_nav.replay.session import print_progress
from gps_denied_nav.sim.clip import write_clip
from gps_denied_nav.sim.flight import FlightConfig, simulate_flight
from gps_denied_nav.sim.import_tiles import mosaic_tiles_to_geotiff
from gps_denied_nav.sim.world import SIMULATED_MAP_ERRORS

ROOT = Path(__file__).resolve().parents[1]
TURKU_CSV = ROOT.parent / "shared" / "data" / "turku_satellite" / "map" / "map.csv"
FLIGHTS = {"seed 101, 105 m, autumn (held out)": dict(seed=101, altitude_agl_m=105.0, appearance="autumn"),
           "seed 102, 145 m, as mapped": dict(seed=102, altitude_agl_m=145.0, appearance="as_mapped")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "gdn_vpr")
    parser.add_argument("--views-per-tile", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=TrainVprConfig.epochs)
    parser.add_argument("--colour-jitter", type=float, default=TrainVprConfig.colour_jitter)
    parser.add_argument("--negative-strides", type=float, default=TrainVprConfig.negative_strides)
    parser.add_argument("--camera-span", type=float, default=TrainVprConfig.camera_span_of_tile)
    parser.add_argument("--duration-s", type=float, default=180.0)
    parser.add_argument("--verify-top", type=int, default=20, help="score the matcher-verified global ranking too")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    if not TURKU_CSV.exists():
        print(f"skipped: the Turku tiles are not at {TURKU_CSV}")
        return 0
    t0, work = time.monotonic(), args.work
    work.mkdir(parents=True, exist_ok=True)
    tif = work / "turku.tif"
    if not tif.exists():
        mosaic_tiles_to_geotiff(TURKU_CSV, tif)
    untrained, trained = work / "corpus_untrained", work / "corpus_trained"
    if not (untrained / "manifest.json").exists():
        provision(tif, untrained, ProvisionConfig(device="cpu", assume_sea_level=True, **SIMULATED_MAP_ERRORS),
                  lambda s, d, t: print_progress(f"provision {s}", d, t))
    if not (trained / "train_vpr.json").exists():
        if not (trained / ".train_vpr").exists():  # a fresh copy, unless a run is to be resumed
            shutil.rmtree(trained, ignore_errors=True)
            shutil.copytree(untrained, trained)
        train_vpr(trained, TrainVprConfig(views_per_tile=args.views_per_tile, epochs=args.epochs,
                                          colour_jitter=args.colour_jitter,
                                          negative_strides=args.negative_strides,
                                          camera_span_of_tile=args.camera_span),
                  progress=print_progress)
    training = json.loads((trained / "train_vpr.json").read_text())
    raster = load_geotiff(tif)
    results = {}
    for name, flight in FLIGHTS.items():
        clip = work / f"clip_{flight['seed']}_{args.duration_s:g}s.mcap"
        if not clip.exists():
            data = simulate_flight(raster, FlightConfig(duration_s=args.duration_s, camera_rate_hz=2.0, **flight),
                                   progress=lambda d, t: print_progress(f"render {name}", d, t))
            write_clip(data, clip)
        results[name] = {which: evaluate_clip(clip, corpus, work / f"eval_{which}_{flight['seed']}",
                                              verify_top=args.verify_top)
                         for which, corpus in (("before", untrained), ("after", trained))}
    record = without_paths({"machine": machine_info(), "seconds": time.monotonic() - t0, "training": training,
                            "flights": {n: {w: {k: v for k, v in r.items() if k != "per_query"} for w, r in f.items()}
                                        for n, f in results.items()}})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vpr.json").write_text(json.dumps(record, indent=1) + "\n")
    table = markdown(record)
    (args.out / "VPR.md").write_text(table)
    if args.out == ROOT / "docs":
        sync_readme(("vpr",))
    print(table)
    return 0


def without_paths(record: dict) -> dict:
    """The record with file names for the work directory's paths: docs must not name this machine's folders."""
    record["training"]["ortho"] = Path(record["training"]["ortho"]).name
    for flight in record["flights"].values():
        for result in flight.values():
            result["clip"], result["corpus"] = Path(result["clip"]).name, Path(result["corpus"]).name
    return record


def whitening_note(w: dict | None) -> str:
    if not w:
        return "No PCA whitening asked for."
    if w.get("kept"):
        return (f"PCA to {w['dim']} dimensions with whitening power {w['power']} kept (the index stores "
                f"{w['dim']}-d vectors).")
    return f"PCA to {w['dim']} dimensions not kept: every whitening power lowered validation recall@1."


def markdown(record: dict) -> str:
    m, t = record["machine"], record["training"]
    s = t["seconds"]
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {m['cpu_model']}, {m['cores']} cores "
             f"(`benchmarks/eval_vpr_turku.py`): `gdn train-vpr` on {t['views']['train']} views "
             f"({t['config']['views_per_tile']} per tile, {t['config']['epochs']} epochs, appearance "
             f"'{t['config']['held_out_appearance']}' held out): {s['views_and_cache'] / 60:.0f} min to render and cache "
             f"views, {s['training'] / 60:.0f} min to train on the CPU"
             + (f" (this run resumed at epoch {t['resumed_from_epoch'] + 1}; the times are the resumed run's)"
                if t.get("resumed_from_epoch") else "") + ". Frames rendered from the corpus' own raster: upper bounds.",
             "",
             "| flight (held-out seed) | model | search | recall@1 | recall@5 | recall@10 | recall@20 |",
             "|---|---|---|---|---|---|---|"]
    for name, flight in record["flights"].items():
        first = next(iter(flight.values()))
        name = f"{name}: {first['queries'] - first['queries_without_a_tile']} of {first['queries']} frames over tiles"
        for which, r in flight.items():
            lines.append(f"| {name} | {which} | global | " + " | ".join(
                f"{r[f'recall@{k}']:.2f}" for k in (1, 5, 10, 20)) + " |")
            if "verified" in r:  # as the graph ranks them when lost: the matcher verifies the top N
                lines.append(f"| {name} | {which} | global, top {r['verified']['top']} verified | " + " | ".join(
                    f"{r['verified'][f'recall@{k}']:.2f}" for k in (1, 5, 10, 20)) + " |")
            p = r["prior_narrowed"]
            lines.append(f"| {name} | {which} | prior {r['prior']['radius_m']:.0f} m | " + " | ".join(
                f"{p[f'recall@{k}']:.2f}" for k in (1, 5, 10, 20)) + " |")
        r = next(iter(flight.values()))
        lines.append(f"| {name} | random pick | global | " + " | ".join(
            f"{r[f'random@{k}']:.2f}" for k in (1, 5, 10, 20)) + " |")
    verified = [r["verified"] for f in record["flights"].values() for r in f.values() if "verified" in r]
    if verified:
        lines += ["", f"\"Verified\": the top {verified[0]['top']} tiles matched against the frame as the camera took it "
                  "(SIFT, one search over their union, a homography each; `match_frame`, as matching_node does after a "
                  "global search) and re-ordered by inliers: "
                  f"{np.median([v['ms_p50'] for v in verified]):.0f} ms a frame (median), one core."]
    v = t["recall_after"]
    lines += ["", f"Validation views (seed never trained on): held-in families recall@1/5 "
              f"{t['recall_before']['held_in']['recall@1']:.2f}/{t['recall_before']['held_in']['recall@5']:.2f} "
              f"before, {v['held_in']['recall@1']:.2f}/{v['held_in']['recall@5']:.2f} after; held-out appearance "
              f"{t['recall_before']['held_out']['recall@1']:.2f}/{t['recall_before']['held_out']['recall@5']:.2f} before, "
              f"{v['held_out']['recall@1']:.2f}/{v['held_out']['recall@5']:.2f} after. " + whitening_note(t.get("whitening"))]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
