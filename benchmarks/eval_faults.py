"""Issue 8's fault table through the whole graph: each single fault of replay.faults injected into a
rendered flight clip and replayed in lockstep over DDS (all four nodes, the lifecycle manager, /clock).

A run passes when every fused fix it claims from 15 s after the fault is within 50 m of the truth, it
ends within 5 m, and it claims at least half as many fixes after the fault as the clean run; after the
2 s IMU gap the velocity and attitude NEES must be back inside the 95 % bound 2 s after the gap. With
``--realtime-rates`` the clean clip is also replayed in realtime faster than the machine can keep up with,
which loses IMU samples: the filter's diagnostics must then say so (not "OK").
Default clip: the short reference flight (replay.reference, built into --out when absent).

    .venv/bin/python benchmarks/eval_faults.py [--clip C --corpus D] [--at-s 14] [--realtime-rates 2 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from rosbags.highlevel import AnyReader

from gps_denied_nav.core.corpus import Corpus, CorpusError
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.report import GeoTrack
from gps_denied_nav.core.report_state import state_error_series
from gps_denied_nav.nodes import names
from gps_denied_nav.replay import faults, reference
from gps_denied_nav.replay.bag_types import typestore
from gps_denied_nav.replay.session import replay, truth_states
from gps_denied_nav.sim.clip import read_ground_truth

LEVELS = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}


def eskf_levels(outputs: Path) -> dict[str, int]:
    """How often the filter node's /diagnostics said OK, WARN, ERROR during the run."""
    seen = {name: 0 for name in LEVELS.values()}
    with AnyReader([outputs], default_typestore=typestore()) as reader:
        conns = [c for c in reader.connections if c.topic == names.DIAGNOSTICS]
        for conn, _t, raw in reader.messages(connections=conns):
            for status in reader.deserialize(raw, conn.msgtype).status:
                if status.name.endswith(names.ESKF_NODE):
                    seen[LEVELS[int(status.level)]] += 1
    return seen


def run(clip: Path, corpus: Path, out: Path, label: str, fault_s: float, truth: GeoTrack, **replay_args) -> dict:
    t0 = time.monotonic()
    report = replay(clip, corpus, out, **replay_args).to_json_dict()
    outputs = out / "outputs.mcap"
    fixes = [m.msg for m in faults.read_messages(outputs, {names.FIX})]
    score = faults.score_fault(label, fault_s, fixes, truth)
    origin = [m.msg for m in faults.read_messages(outputs, {names.MAP_ORIGIN})]
    row = {**dataclasses.asdict(score), "fix_rate": report["fix_rate"], "rmse_m": report["rmse_m"],
           "eskf_diagnostics": eskf_levels(outputs), "wall_s": round(time.monotonic() - t0, 1)}
    if label == "imu_gap_2s" and origin:
        odoms = [m.msg for m in faults.read_messages(outputs, {names.ODOMETRY})]
        frame = LocalTangentPlane(origin[-1].latitude, origin[-1].longitude, origin[-1].altitude)
        series = state_error_series(truth_states(clip, truth), faults.odometry_track(frame, odoms))
        row["nees_inside_95_after_gap"] = faults.nees_after_gap(series, fault_s)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path)
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("--out", type=Path, default=Path("out/faults"))
    parser.add_argument("--at-s", type=float, default=14.0, help="fault time after the clip's start")
    parser.add_argument("--faults", nargs="*", default=list(faults.FAULTS), choices=faults.FAULTS)
    parser.add_argument("--realtime-rates", nargs="*", type=float, default=[2.0, 3.0])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.clip is None:
        world = args.out / "world.tif"
        if not world.exists():
            reference.small_world(world)
        args.corpus = args.out / "corpus"
        try:
            Corpus.load(args.corpus)
        except CorpusError as exc:  # absent, or made by an older version: build it again
            print(f"[faults] building the corpus ({exc.reason})", flush=True)
            reference.small_corpus(world, args.corpus)
        args.clip = args.out / "clip.mcap"
        if not args.clip.exists():
            reference.short_clip(world, args.clip)
    truth = GeoTrack.from_arrays(*read_ground_truth(args.clip))
    messages = faults.read_messages(args.clip, {names.IMU, names.GNSS_FIX})
    rows = {"clean": run(args.clip, args.corpus, args.out / "clean", "clean",
                         faults.fault_time_s(messages, "imu_accel_1e12", args.at_s), truth)}
    for fault in args.faults:
        faulted = faults.write_faulted_clip(args.clip, args.out / f"{fault}.mcap", fault, args.at_s) \
            if not (args.out / f"{fault}.mcap").exists() else args.out / f"{fault}.mcap"
        rows[fault] = run(faulted, args.corpus, args.out / fault, fault,
                          faults.fault_time_s(messages, fault, args.at_s), truth)
        rows[fault]["problems"] = faults.FaultScore(*(rows[fault][k] for k in (
            "fault", "fault_s", "claimed_after", "max_claimed_error_m", "end_error_m"))).problems(
            rows["clean"]["claimed_after"])
        gap = rows[fault].get("nees_inside_95_after_gap")
        if gap and min(gap.values()) < 0.95:
            rows[fault]["problems"].append(f"NEES after the gap: {gap}")
        print(f"[faults] {fault}: {rows[fault]}", flush=True)
    for rate in args.realtime_rates:
        label = f"realtime_rate_{rate:g}"
        rows[label] = run(args.clip, args.corpus, args.out / label, label, rows["clean"]["fault_s"], truth,
                          mode="realtime", rate=rate)
        honest = rows[label]["eskf_diagnostics"]["WARN"] + rows[label]["eskf_diagnostics"]["ERROR"] > 0
        rows[label]["problems"] = [] if honest else ["samples lost but the filter's diagnostics stayed OK"]
    print(f"\n{'run':32s} {'claimed':>8s} {'worst late m':>12s} {'end m':>7s} {'fix_rate':>8s} {'rmse m':>7s}"
          "  eskf diagnostics (OK/WARN/ERROR)  verdict")
    for label, r in rows.items():
        d = r["eskf_diagnostics"]
        verdict = "PASS" if not r.get("problems") else "FAIL: " + "; ".join(r["problems"])
        print(f"{label:32s} {r['claimed_after']:8d} {r['max_claimed_error_m']:12.2f} {r['end_error_m']:7.2f} "
              f"{r['fix_rate']:8.3f} {r['rmse_m'] or float('nan'):7.3f}  {d['OK']:4d}/{d['WARN']:4d}/{d['ERROR']:4d}"
              f"{'':18s} {verdict}")
    (args.out / "faults_report.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(not r.get("problems") for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
