"""The whole graph in real time on this machine: 3 Hz camera frames, per descriptor backend.

A flight over the demo world (the demo's corpus, its 45 m ground) with frames at ``--camera-rate-hz`` (3 by
default, 1.5x the demo's) is replayed at the clip's own pace (``--mode realtime``), every node in a process
of its own as ``ros2 launch`` runs them, once per backend: torch (the default) and onnxruntime (the corpus
model exported with ``gdn export-onnx`` into a copy of the corpus). Reported per run: end-to-end latency
p50/p95 (exposure to fused fix), accepted fixes per second over the flight, the fix rate, frames skipped
busy per stage (a stage that cannot keep up sheds frames: its queue never grows, it skips), rmse. Figures
are this machine's (2 cores, noisy): rerun beside nothing else.

    .venv/bin/python benchmarks/eval_realtime.py [--work out/realtime] [--duration-s 60] [--backends torch onnxruntime]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Each change that brought the latency down, undone on its own (appended to the run's parameter overlay).
ABLATIONS = (
    ("waits for the attitude at the exposure (attitude_lag_s 0)", "    attitude_lag_s: 0.0\n"),
    ("SIFT on the full-size frame (query_scale 1)",
     "/**/matching_node:\n  ros__parameters:\n    query_scale: 1.0\n"),
)


def main() -> int:
    from gps_denied_nav.core.map_raster import load_geotiff
    from gps_denied_nav.core.onnx_export import export_corpus_onnx
    from gps_denied_nav.replay.demo import GROUND_ALT_M, prepare_demo
    from gps_denied_nav.replay.machine import machine_info
    from gps_denied_nav.replay.session import print_progress, replay
    from gps_denied_nav.sim.clip import write_clip
    from gps_denied_nav.sim.flight import FlightConfig, simulate_flight

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "realtime")
    parser.add_argument("--demo", type=Path, default=ROOT / "out" / "demo", help="the demo's world and corpus")
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--camera-rate-hz", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"], choices=["torch", "onnxruntime"])
    parser.add_argument("--one-process", action="store_true", help="host every node in one process instead")
    parser.add_argument("--ablate", action="store_true", help="also run the last backend with each latency change "
                        "undone (ABLATIONS): waiting for the filter's attitude, SIFT on the full-size frame")
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    world, _clip, corpus = prepare_demo(args.demo)
    clip = work / f"clip_{args.camera_rate_hz:g}hz_{args.duration_s:g}s_seed{args.seed}.mcap"
    if not clip.exists():
        flight = simulate_flight(load_geotiff(world), FlightConfig(seed=args.seed, duration_s=args.duration_s,
                                                                   camera_rate_hz=args.camera_rate_hz,
                                                                   ground_up_m=GROUND_ALT_M),
                                 progress=lambda d, t: print_progress("render frames", d, t))
        write_clip(flight, clip)
    onnx_corpus = work / "corpus_onnx"
    if "onnxruntime" in args.backends and not (onnx_corpus / "model.onnx").exists():
        shutil.rmtree(onnx_corpus, ignore_errors=True)
        shutil.copytree(corpus, onnx_corpus)
        export_corpus_onnx(onnx_corpus)
    runs = {}
    variants = [(b, b, "") for b in args.backends]
    if args.ablate:
        variants += [(f"{args.backends[-1]}, {label}", args.backends[-1], yaml) for label, yaml in ABLATIONS]
    for i, (label, backend, extra) in enumerate(variants):
        overlay = work / f"params_{i}.yaml"
        overlay.write_text(f"/**/inference_node:\n  ros__parameters:\n    backend: \"{backend}\"\n{extra}")
        t0 = time.monotonic()
        report = replay(clip, onnx_corpus if backend == "onnxruntime" else corpus, work / f"replay_{i}",
                        params_file=[ROOT / "params" / "gps_denied_nav.yaml", overlay], mode="realtime",
                        process_per_node=not args.one_process).to_json_dict()
        runs[label] = summary(report, args.duration_s, time.monotonic() - t0)
        print(f"{label}: {json.dumps(runs[label])}", flush=True)
    record = {"machine": machine_info(), "camera_rate_hz": args.camera_rate_hz, "duration_s": args.duration_s,
              "process_per_node": not args.one_process, "runs": runs}
    (work / "realtime.json").write_text(json.dumps(record, indent=1) + "\n")
    print(markdown(record))
    return 0


def summary(report: dict, duration_s: float, wall_s: float) -> dict:
    ends = (report.get("timing") or {}).get("frame_ends") or {}  # "stage: outcome" -> frames
    skipped = {name.split(":")[0]: n for name, n in ends.items() if name.endswith("skipped_busy")}
    return {"frames": report["frames"], "fixes_accepted": report["fixes_accepted"],
            "fixes_per_s": report["fixes_accepted"] / duration_s, "fix_rate": report["fix_rate"],
            "latency_ms_p50": report["latency_ms_p50"], "latency_ms_p95": report.get("latency_ms_p95"),
            "rmse_m": report["rmse_m"], "skipped_busy": skipped, "frame_ends": ends, "wall_s": wall_s}


def markdown(record: dict) -> str:
    m = record["machine"]
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {m['cpu_model']}, {m['cores']} cores "
             f"(`benchmarks/eval_realtime.py`): a {record['duration_s']:.0f} s flight over the demo world with "
             f"{record['camera_rate_hz']:g} Hz frames, replayed in real time, "
             + ("every node in a process of its own." if record["process_per_node"] else "one process."), "",
             "| run | latency p50 / p95 ms | accepted fixes/s | fix rate | rmse m | frames skipped busy |",
             "|---|---|---|---|---|---|"]
    for backend, r in record["runs"].items():
        skipped = ", ".join(f"{k} {v}" for k, v in r["skipped_busy"].items() if v) or "none"
        lines.append(f"| {backend} | {r['latency_ms_p50']:.0f} / {r['latency_ms_p95']:.0f} | {r['fixes_per_s']:.2f} | "
                     f"{r['fix_rate']:.2f} | {r['rmse_m']:.3f} | {skipped} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
