"""Fuzz benchmark: >= 10 000 bad, absurd and valid messages into the running graph, then a clean flight.

PASS: no node dies or leaves the active state; nothing is poisoned (the reference clip, played into the same
graph right after the fuzz, scores an RMSE within 2x and a fix rate within 0.1 of a clean run's); per node,
``dropped_*`` + the filter's ``*_invalid/_too_new/_too_old`` on /diagnostics + what full queues lost before it
>= the refusals expected (totals: a message may be refused for another reason first); peak memory within a
margin of the clean run's. The graph is hosted as ``gdn replay`` hosts it (private DDS domain, use_sim_time); our
node publishes fuzz_messages.py's plan over DDS, evenly paced (bursts stall reliable DDS); the clean segment plays
in lockstep like the clean run, so the two compare whatever the load. Minutes, outside ``make test``; writes
out/fuzz/fuzz_report.json, exits 1 on FAIL.

    .venv/bin/python benchmarks/fuzz_graph.py [--messages 12000] [--seed 1] [--rate 400] [--exclude KIND ...]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from rclpy.serialization import deserialize_message
from rosbags.highlevel import AnyReader

from fuzz_messages import INITIALISED, POSES_KNOWN, TOPIC_TYPES, ClipContext, FuzzPlan
from gps_denied_nav.core.corpus import Corpus
from gps_denied_nav.core.report import GeoTrack, score_replay
from gps_denied_nav.nodes import names
from gps_denied_nav.replay.bag_types import typestore
from gps_denied_nav.replay.graph import GraphHost, private_domain_id
from gps_denied_nav.replay.lockstep import FrameGate
from gps_denied_nav.replay.player import BagPlayer
from gps_denied_nav.replay.process_host import peak_rss_mb
from gps_denied_nav.replay.recorder import OutputRecorder
from gps_denied_nav.replay.session import DEFAULT_PARAMS, clip_inputs, print_progress, truth_states

BUILD = ("from pathlib import Path; from gps_denied_nav.replay import reference as r; o = Path('{out}'); "
         "w = r.small_world(o / 'world.tif'); r.small_corpus(w, o / 'corpus'); r.short_clip(w, o / 'clip.mcap')")
CLEAN = "from gps_denied_nav.replay.session import replay; replay('{clip}', '{corpus}', '{clean}')"


def inputs(out: Path, rebuild: bool) -> tuple[Path, Path, dict]:
    """replay.reference's corpus and clip in ``out`` and a clean replay's report, reused when present and
    loadable. Each is made in a process of its own, so that this one's peak memory is the fuzzed graph's."""
    corpus, clip, clean = out / "corpus", out / "clip.mcap", out / "clean"
    try:
        fresh = not rebuild and clip.exists() and bool(Corpus.load(corpus))
    except (OSError, ValueError) as exc:  # none yet, an older corpus format, a half-written one
        print(f"[fuzz] building the inputs in {out}: {exc}")
        fresh = False
    if not fresh:
        for path in (out / "world.tif", corpus, clip, clean):
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-c", BUILD.format(out=out)], check=True)
    if not (clean / "report.json").exists():  # exactly `gdn replay`
        subprocess.run([sys.executable, "-c", CLEAN.format(clip=clip, corpus=corpus, clean=clean)], check=True)
    return corpus, clip, json.loads((clean / "report.json").read_text())


def clip_context(clip: Path, corpus: Path) -> ClipContext:
    with AnyReader([clip], default_typestore=typestore()) as reader:  # the first camera_info and GNSS fix
        first = {c.topic: deserialize_message(next(reader.messages(connections=[c]))[2], TOPIC_TYPES[c.topic])
                 for c in reader.connections if c.topic in (names.CAMERA_INFO, names.GNSS_FIX)}
        start_s = reader.start_time * 1e-9
    gnss, c = first[names.GNSS_FIX], Corpus.load(corpus)
    return ClipContext(start_s, gnss.latitude, gnss.longitude, gnss.altitude, first[names.CAMERA_INFO],
                       c.model_id, c.descriptor_dim)


def _num(text: str) -> float:  # diagnostics values are strings; counters are integers
    return float(text) if text.lstrip("-").replace(".", "", 1).isdigit() else 0.0


def _refusal_key(key: str) -> bool:  # a node's drop counter, or one of the filter's own refusal counters
    return (key.startswith("dropped_") and not key.endswith("_rate_hz")) or key.endswith(
        ("_invalid", "_too_new", "_too_old", "imu_samples_dropped_by_filter"))


class Probe:
    """Our node: a publisher per fuzzed topic and each node's last /diagnostics. The filter's counters restart at
    0 with the filter and show the old values till it reports: totals are kept (banked at a restart or a drop)."""

    def __init__(self, node: Node):
        self.node, self._lock = node, threading.Lock()
        self.latest, self.heard = {}, {}  # each node's last values; when it reported (its executor still spins)
        self.banked, self.stale = defaultdict(float), set()
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)  # as map_origin's subscriber
        self.pubs = {t: node.create_publisher(m, t, latched if t == names.MAP_ORIGIN else QoSProfile(depth=200))
                     for t, m in TOPIC_TYPES.items()}
        node.create_subscription(DiagnosticArray, names.DIAGNOSTICS, self._on_diagnostics, QoSProfile(depth=100))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            node, values = status.name.split(": ")[-1], {kv.key: kv.value for kv in status.values}
            with self._lock:
                old = self.latest.get(node, {})
                restarted = _num(values.get("filter_restarts", "0")) > _num(old.get("filter_restarts", "0"))
                for key in (k for k in old if _refusal_key(k) and not k.startswith("dropped_")):
                    before, now, tag = _num(old[key]), _num(values.get(key, old[key])), (node, key)
                    if tag in self.stale and now != before:  # the new filter's own count from here on
                        self.stale.discard(tag)
                    elif tag not in self.stale and (restarted or now < before):
                        self.banked[tag] += before
                        if now == before:  # the old filter's value, still shown
                            self.stale.add(tag)
                self.latest[node], self.heard[node] = values, time.monotonic()

    def counted(self) -> dict[str, dict[str, int]]:
        """Per node: refusal reason -> count (``dropped_x`` as x; the filter's counters with their banked totals)."""
        with self._lock:
            return {node: {k.removeprefix("dropped_"): int(self.banked[(node, k)] + (
                0 if (node, k) in self.stale else _num(v))) for k, v in values.items() if _refusal_key(k)}
                for node, values in self.latest.items()}


def node_states(host: GraphHost, probe: Probe) -> tuple[dict, bool]:
    """Each node's lifecycle state (its state machine), whether its executor thread lives and it still reports."""
    alive = {t.name: t.is_alive() for t in host._threads}  # GraphHost names each executor thread after its node
    states = {name: {"state": node._state_machine.current_state[1], "executor_alive": alive[name],
                     "reported_s_ago": round(time.monotonic() - probe.heard.get(name, 0.0), 1)}
              for name, node in {n.get_name(): n for n in host.graph_nodes}.items()}
    return states, all(s["state"] == "active" and s["executor_alive"] and s["reported_s_ago"] < 3.0
                       for s in states.values())


def graph_state(host: GraphHost, plan: FuzzPlan, sent: int) -> dict:
    """The filter after ``sent`` messages (stamp against the fuzz's clock, error to the carrier) and the newest
    attitude each camera node keeps: it ignores older ones, so one ahead of the clip leaves it none for the clip."""
    eskf, clock_s = host.graph_nodes[0], plan.clip.start_s + sent * plan.slot_s
    out = {f"{n.get_name()}_newest_attitude_minus_fuzz_clock_s": round(n.poses._t[-1] - clock_s, 3)
           for n in host.graph_nodes if getattr(n, "poses", None) is not None and not n.poses.empty}
    f = eskf.filter
    if not f.initialized:
        return {"filter": "not initialised", **out}
    out.update(filter="lost" if f.needs_reinit else "tracking", state_problem=f.state_problem,
               filter_stamp_minus_fuzz_clock_s=round(f.stamp_s - clock_s, 3))
    if eskf.frame is not None and abs(f.stamp_s - clock_s) < 10.0:
        out["error_to_carrier_m"] = round(float(np.linalg.norm(
            eskf.frame.to_enu(*plan.carrier(f.stamp_s))[:2] - f.state.pos_enu_m[:2])), 2)
    return out


def fuzz(probe: Probe, plan: FuzzPlan, host: GraphHost, rate_hz: float) -> dict:
    """Send the plan paced at ``rate_hz``; the refusals expected per node and reason, conditions judged now."""
    nodes = {n.get_name(): n for n in host.graph_nodes}
    holds = {INITIALISED: lambda node: nodes[names.ESKF_NODE].filter.initialized,
             POSES_KNOWN: lambda node: not nodes[node].poses.empty}
    expected, topics, kinds, restarts = Counter(), Counter(), Counter(), Counter()
    start = schedule = time.monotonic()
    for i, planned in enumerate(plan, 1):
        delay = schedule + i / rate_hz - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -0.5:
            schedule -= delay  # fell behind (a loaded machine): resume the pace, never burst to catch up
        refusals = planned.refusals + [(n, r) for n, r, cond in planned.conditional if holds[cond](n)]
        probe.pubs[planned.topic].publish(planned.msg)
        topics[planned.topic] += 1
        kinds[planned.kind] += 1
        restarts.update([planned.restart] if planned.restart else [])
        expected.update(refusals)  # (node, reason) pairs
        if i % 1000 == 0 or i == plan.n:
            print(f"[fuzz] {i:6d}/{plan.n} sent, {time.monotonic() - start:5.1f} s, {graph_state(host, plan, i)}",
                  flush=True)
    return {"sent_per_topic": dict(topics), "sent_per_kind": dict(kinds), "expected_filter_restarts": dict(restarts),
            "expected": {n: {r: c for (node, r), c in expected.items() if node == n} for n in names.MANAGED_NODES}}


ARRIVALS = {  # (node, topic): the counters that add up to every message of the topic that reached the node
    (names.ESKF_NODE, names.IMU): ("imu_received", "dropped_imu_"),
    (names.ESKF_NODE, names.VISUAL_FIX): ("visual_fixes_received", "dropped_visual_fix_"),
    (names.INFERENCE_NODE, names.IMAGE): ("frames_received",), (names.RETRIEVAL_NODE, names.DESCRIPTOR):
    ("descriptors_received",), (names.MATCHING_NODE, names.CANDIDATES): ("candidates_received",)}


def lost_in_queues(latest: dict, sent: dict) -> dict[str, dict[str, int]]:
    """Per node and topic: sent minus arrived (a full KEEP_LAST queue drops the oldest unseen); a lower bound."""
    lost = defaultdict(dict)
    for (node, topic), keys in ARRIVALS.items():
        got = sum(_num(v) for k, v in latest.get(node, {}).items() if k.startswith(keys) and "rate_hz" not in k)
        lost[node][topic] = max(0, sent["sent_per_topic"].get(topic, 0) - int(got))
    return dict(lost)


def clean_segment(tool: Node, clip: Path, out_dir: Path) -> dict:
    """The clean clip through the fuzzed graph, lockstep and scored as session.replay does."""
    truth, frames, gnss_lost_s = clip_inputs(clip)
    bag = out_dir / "outputs.mcap"
    bag.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(bag) if bag.is_dir() else bag.unlink(missing_ok=True)
    recorder, gate = OutputRecorder(tool, bag), FrameGate(tool, 10.0)
    player = BagPlayer(tool, clip, 1.0, progress=lambda d, t: print_progress("clean s", d, t), gate=gate)
    wall0 = time.monotonic()
    player.play()
    player.hold_clock(3.0)
    recorder.close()
    s = recorder.series
    track = lambda t, lla, cov: GeoTrack.from_arrays(t, *np.array(lla).reshape(-1, 3).T,  # noqa: E731
                                                     cov=np.array(cov).reshape(-1, 2, 2))
    estimates, fixes = track(s.fix_t_s, s.fix_lat_lon_alt, s.fix_cov_en_m2), \
        track(s.visual_t_s, s.visual_lat_lon_alt, s.visual_cov_en_m2)
    report = score_replay(truth, estimates, fixes, frames, time.monotonic() - wall0, gnss_lost_s=gnss_lost_s,
                          truth_states=truth_states(clip, truth), estimate_states=s.odometry_states())
    return {**report.to_json_dict(), "lockstep": gate.summary()}


def refusal_table(expected: dict, counted: dict, lost: dict) -> tuple[dict, list[str]]:
    """Per node: expected, counted and lost totals, and each reason's (expected, counted)."""
    rows, lines = {}, [f"{'node':15s} {'expected':>8s} {'counted':>8s} {'lost':>5s}  reasons: expected/counted"]
    for node in names.MANAGED_NODES:
        exp, cnt = expected.get(node, {}), counted.get(node, {})
        reasons = {r: (exp.get(r, 0), cnt.get(r, 0)) for r in sorted({*exp, *cnt}) if exp.get(r) or cnt.get(r)}
        row = rows[node] = {"expected": sum(exp.values()), "counted": sum(cnt.values()),
                            "lost_in_queues": sum(lost.get(node, {}).values()), "reasons": reasons}
        lines.append(f"{node:15s} {row['expected']:8d} {row['counted']:8d} {row['lost_in_queues']:5d}  "
                     + ", ".join(f"{r} {e}/{c}" for r, (e, c) in reasons.items()))
    return rows, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=12000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=400.0, help="messages per second, evenly paced")
    parser.add_argument("--exclude", nargs="*", default=[], help="fuzz kinds (prefixes) to leave out, to diagnose")
    parser.add_argument("--rss-margin-mb", type=float, default=200.0, help="peak RSS allowed above the clean run's")
    parser.add_argument("--out", type=Path, default=Path("out/fuzz"))
    parser.add_argument("--rebuild", action="store_true", help="make the world, corpus, clip and clean run again")
    args = parser.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # as the tests: DDS stays on this machine
    future = round(5000 * args.messages / 12000)  # the 5000 visual fixes an hour ahead, in proportion
    corpus, clip, clean = inputs(args.out, args.rebuild)
    plan = FuzzPlan(clip_context(clip, corpus), args.seed, args.rate, args.messages, future, tuple(args.exclude))
    domain = private_domain_id()
    print(f"[fuzz] {args.messages} messages at {args.rate:.0f}/s, seed {args.seed}, DDS domain {domain}", flush=True)
    host = GraphHost(DEFAULT_PARAMS, {"corpus_dir": str(corpus), "use_sim_time": True}, domain_id=domain)
    probe, tool, rss = Probe(Node("fuzz_publisher")), Node("gdn_replay"), {}
    for node in (probe.node, tool):
        host.add_node(node)
    try:
        host.start()
        host.wait_until_active()
        rss["graph_active"] = peak_rss_mb(os.getpid())
        deadline = time.monotonic() + 20.0  # every fuzzed topic has a subscriber once DDS has matched them
        while time.monotonic() < deadline and not all(p.get_subscription_count() for p in probe.pubs.values()):
            time.sleep(0.1)
        sent = fuzz(probe, plan, host, args.rate)
        time.sleep(5.0)  # the queues drain and every node reports (1 Hz)
        counted, latest = probe.counted(), {n: dict(v) for n, v in probe.latest.items()}
        graph_after, (states_fuzz, ok_fuzz) = graph_state(host, plan, plan.n), node_states(host, probe)
        rss["after_fuzz"] = peak_rss_mb(os.getpid())
        for pub in probe.pubs.values():  # a latched fuzzed map_origin must not reach the clean segment's recorder
            probe.node.destroy_publisher(pub)
        after = clean_segment(tool, clip, args.out / "after_fuzz")
        (states_clean, ok_clean), rss["after_clean_segment"] = node_states(host, probe), peak_rss_mb(os.getpid())
    finally:
        host.close()
    lost = lost_in_queues(latest, sent)
    rows, lines = refusal_table(sent["expected"], counted, lost)
    clean_rss = rss["clean_run"] = clean["peak_rss_mb"].get("graph (one process)") or float("inf")
    clean_rmse, after_rmse = (float("nan") if v is None else v for v in (clean["rmse_m"], after["rmse_m"]))
    checks = {"nodes alive, active and reporting after the fuzz": ok_fuzz,
              "nodes alive, active and reporting after the clean segment": ok_clean,
              "refusals counted + lost in queues >= expected, per node":
                  all(r["counted"] + r["lost_in_queues"] >= r["expected"] for r in rows.values()),
              f"peak RSS <= clean run's + {args.rss_margin_mb:.0f} MB":
                  rss["after_clean_segment"] <= clean_rss + args.rss_margin_mb,
              "clean segment rmse_m <= 2x clean run's": after_rmse <= 2.0 * clean_rmse,
              "clean segment fix_rate >= clean run's - 0.1": after["fix_rate"] >= clean["fix_rate"] - 0.1}
    verdict = "PASS" if all(checks.values()) else "FAIL"
    print("\n".join(["", f"{'topic':36s} {'sent':>7s}", *(f"{t:36s} {n:7d}" for t, n in sorted(
        sent["sent_per_topic"].items())), "", *lines, f"lost in full queues before the node: {lost}",
        f"filter restarts in the fuzz: {latest.get(names.ESKF_NODE, {}).get('filter_restarts', '0')} counted, "
        f"{sent['expected_filter_restarts']} from the IMU stamps alone", f"graph after the fuzz: {graph_after}",
        f"node states after the fuzz: {states_fuzz}\nnode states after the clean segment: {states_clean}",
        f"peak RSS MB: {({k: round(v, 1) for k, v in rss.items()})}",
        f"clean run:      fix_rate {clean['fix_rate']:.3f}  rmse_m {clean_rmse:.3f}\nafter the fuzz: fix_rate "
        f"{after['fix_rate']:.3f}  rmse_m {after_rmse:.3f}  lockstep {after['lockstep']}",
        *(f"  {'ok  ' if ok else 'FAIL'} {name}" for name, ok in checks.items()), verdict]), flush=True)
    report = {"args": {k: str(v) for k, v in vars(args).items()}, **sent, "refusals": rows, "counted": counted,
              "lost_in_queues": lost, "graph_after_fuzz": graph_after, "states_after_fuzz": states_fuzz,
              "states_after_clean_segment": states_clean, "peak_rss_mb": rss, "after_fuzz": after, "checks": checks,
              "clean_run": {k: clean[k] for k in ("fix_rate", "rmse_m")}, "verdict": verdict}
    (args.out / "fuzz_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
