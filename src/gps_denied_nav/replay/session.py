"""One replay: host the graph, play a flight clip into it, record the outputs, score them, plot them.

This is what ``gdn replay`` and ``gdn demo`` run. Everything is real: the lifecycle manager brings the
nodes up over their change_state services, the clip goes over DDS with /clock, and the nodes run with
``use_sim_time``. Two modes: ``lockstep`` (the default for scoring) holds each frame until the graph is
done with the previous one, so accuracy does not depend on the machine's speed or load; ``realtime``
plays at the clip's pace and measures what the machine keeps up with. Latency is wall time from the
player publishing an image to the recorder receiving its fix; per-stage timing comes from the stages'
StageTiming records. The report says which mode and which machine.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from rclpy.node import Node
from rosbags.highlevel import AnyReader

from gps_denied_nav.core.corpus import Corpus
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.plots import plot_error_over_time, plot_trajectory
from gps_denied_nav.core.report import ErrorSeries, GeoTrack, ReplayReport, error_series, score_replay
from gps_denied_nav.core.report_html import write_replay_html
from gps_denied_nav.core.report_state import StateTrack, truth_odometry_frame
from gps_denied_nav.core.stage_timing import summarize_timing, timing_table
from gps_denied_nav.nodes import names
from gps_denied_nav.recording.salvage import recording_bags
from gps_denied_nav.replay.bag_types import typestore
from gps_denied_nav.replay.frame_log import frame_log
from gps_denied_nav.replay.graph import GraphHost, private_domain_id, with_optional
from gps_denied_nav.replay.lockstep import FrameGate
from gps_denied_nav.replay.machine import machine_info
from gps_denied_nav.replay.player import BagPlayer
from gps_denied_nav.replay.process_host import ProcessGraphHost, peak_rss_mb
from gps_denied_nav.replay.recorder import OutputRecorder
from gps_denied_nav.sim.clip import read_ground_truth, read_ground_truth_odom

DEFAULT_PARAMS = Path(__file__).resolve().parents[3] / "params" / "gps_denied_nav.yaml"
MODES = ("lockstep", "realtime")


def clip_inputs(clip_path: Path) -> tuple[GeoTrack, int, float | None]:
    """Ground truth track, number of camera frames and the last GNSS stamp (when GNSS was lost).

    Frames are counted from the bag's index, not read: the images are most of a clip's bytes."""
    bags = recording_bags(clip_path)  # a clip, or a recording's splits
    truth = GeoTrack.from_arrays(*read_ground_truth(bags))
    gnss_last = None
    with AnyReader(bags, default_typestore=typestore()) as reader:
        frames = sum(c.msgcount for c in reader.connections if c.topic in (names.IMAGE, names.COMPRESSED_IMAGE))
        gnss = [c for c in reader.connections if c.topic == names.GNSS_FIX]
        for conn, _stamp_ns, raw in reader.messages(connections=gnss):
            stamp = reader.deserialize(raw, conn.msgtype).header.stamp
            gnss_last = max(gnss_last or -math.inf, stamp.sec + 1e-9 * stamp.nanosec)
    return truth, frames, gnss_last


def truth_states(clip_path: Path, truth: GeoTrack) -> StateTrack | None:
    """Ground-truth odometry in its own ENU frame (pinned by ``truth``, the fixes at the same stamps), or None
    when the clip has none."""
    t_s, pos_enu_m, q_world_body, vel_world_mps = read_ground_truth_odom(recording_bags(clip_path))
    frame = truth_odometry_frame(truth.t_s, truth.lat_deg, truth.lon_deg, truth.alt_m, t_s, pos_enu_m)
    return None if frame is None else StateTrack.from_arrays(frame, t_s, pos_enu_m, q_world_body, vel_world_mps)


_last_progress: dict[str, float] = {}


def print_progress(stage: str, done: float, total: float) -> None:
    """One self-overwriting progress line per stage on stderr, at most 4 updates a second."""
    now = time.monotonic()
    if done < total and now - _last_progress.get(stage, 0.0) < 0.25:
        return
    _last_progress[stage] = now
    pct = 100.0 * done / total if total else 100.0
    sys.stderr.write(f"\r[{stage}] {done:7.1f} / {total:.1f} ({pct:5.1f} %)")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def replay(clip: str | Path, corpus_dir: str | Path, out_dir: str | Path, rate: float = 1.0,
           params_file: str | Path | None = None, record_debug_images: bool = False,
           drain_s: float = 3.0, domain_id: int | None = None, mode: str = "lockstep",
           lockstep_timeout_s: float = 10.0, process_per_node: bool = False, namespace: str = "",
           sensor_qos: bool = False, mavlink: str = "", record: str | Path = "") -> ReplayReport:
    """Replay ``clip`` through the graph and score it. ``domain_id``: the DDS domain to run on; None picks a
    private one (``graph.private_domain_id``) so that a replay never mixes with a live graph or another
    replay; give one to watch the replay from rviz or ``ros2 topic`` (with that ROS_DOMAIN_ID). ``mode``:
    lockstep or realtime (module docstring); ``lockstep_timeout_s`` releases a frame no stage reported.
    ``process_per_node``: each node in a process of its own, as ``ros2 launch`` runs them (else one process).
    ``namespace``: the graph and the player in it (topics relative); ``sensor_qos``: the player publishes the
    sensor topics best effort (sensor-data QoS), as drivers do. outputs.mcap keeps the root-namespace names.
    ``mavlink``: a pymavlink connection string (udpout:HOST:PORT): fc_bridge_node sends GPS_INPUT there.
    ``record``: a directory: recorder_node records the flight there as it would on the aircraft. ``clip`` may be
    such a recording (a session directory of splits: ``recording.salvage.recording_bags``)."""
    if mode not in MODES:
        raise ValueError(f"replay mode must be one of {MODES}, got {mode!r}")
    clip, corpus_dir, out_dir = Path(clip), Path(corpus_dir), Path(out_dir)
    if not clip.exists():
        raise FileNotFoundError(f"flight clip not found: {clip}")
    Corpus.load(corpus_dir)  # fail here, naming the bad file, rather than as a failed start-up of the graph
    out_dir.mkdir(parents=True, exist_ok=True)
    out_bag = out_dir / "outputs.mcap"
    if out_bag.is_dir():
        shutil.rmtree(out_bag)
    elif out_bag.exists():
        out_bag.unlink()
    truth, frames, gnss_lost_s = clip_inputs(clip)
    wall0 = time.monotonic()
    domain_id = private_domain_id() if domain_id is None else int(domain_id)
    print(f"[replay] {mode} mode, DDS domain {domain_id} (ROS_DOMAIN_ID={domain_id} to watch it)", flush=True)
    machine = machine_info()
    overrides: dict[str, object] = {"corpus_dir": str(corpus_dir), "use_sim_time": True}
    optional: tuple[str, ...] = ()
    if mavlink:
        optional, overrides["mavlink_url"] = (*optional, names.FC_BRIDGE_NODE), mavlink
    if record:
        optional, overrides["output_dir"] = (*optional, names.RECORDER_NODE), str(Path(record).resolve())
    host_cls = ProcessGraphHost if process_per_node else GraphHost
    host = host_cls(params_file or DEFAULT_PARAMS, with_optional(overrides, optional), domain_id=domain_id,
                    namespace=namespace, optional_nodes=optional)
    try:
        tool = Node("gdn_replay")
        recorder = OutputRecorder(tool, out_bag, record_debug_images)
        gate = FrameGate(tool, lockstep_timeout_s) if mode == "lockstep" else None
        player = BagPlayer(tool, clip, rate, progress=lambda d, t: print_progress("replay s", d, t), gate=gate,
                           sensor_qos=sensor_qos)
        host.add_node(tool)
        host.start()
        host.wait_until_active()
        player.play()
        print_progress("replay s", player.end_s - player.start_s, player.end_s - player.start_s)
        player.hold_clock(drain_s)
        recorder.close()
    finally:
        host.close()
    rss = host.peak_rss_mb if process_per_node else {"graph (one process)": peak_rss_mb(os.getpid())}
    wall_s = time.monotonic() - wall0
    s = recorder.series
    estimates = GeoTrack.from_arrays(s.fix_t_s, *np.array(s.fix_lat_lon_alt).reshape(-1, 3).T,
                                     cov=np.array(s.fix_cov_en_m2).reshape(-1, 2, 2))
    fixes = GeoTrack.from_arrays(s.visual_t_s, *np.array(s.visual_lat_lon_alt).reshape(-1, 3).T,
                                 cov=np.array(s.visual_cov_en_m2).reshape(-1, 2, 2))
    sent = {round(t, 6): wall for t, wall in player.image_published_wall_s.items()}
    latency = [(sent[round(t, 6)], r) for t, r in zip(s.visual_t_s, s.visual_received_wall_s) if round(t, 6) in sent]
    report = score_replay(truth, estimates, fixes, frames, wall_s, [a for a, _ in latency], [b for _, b in latency],
                          gnss_lost_s=gnss_lost_s, truth_states=truth_states(clip, truth),
                          estimate_states=s.odometry_states())
    timing = summarize_timing(s.timing, sent)
    report = dataclasses.replace(report, extras={
        "mode": mode, "rate": rate, "namespace": "/" + namespace.strip("/"),
        "sensor_qos": "best_effort" if sensor_qos else "reliable", "mavlink": mavlink or None, "record": str(record) if record else None,
        "latency_clock": "wall: image published -> fix received",
        "host": "process per node" if process_per_node else "one process", "peak_rss_mb": rss,
        "lockstep": gate.summary() if gate is not None else None, "timing": timing,
        "machine": {**machine, "load_avg_after": machine_info()["load_avg_1_5_15"]}})
    print(f"[replay] per-stage timing ({mode}):\n{timing_table(timing)}", flush=True)
    (out_dir / "report.json").write_text(json.dumps(report.to_json_dict(), indent=2) + "\n")
    write_plots(out_dir, corpus_dir, truth, estimates, fixes, report, f"{mode} replay")
    fix_errors = ErrorSeries.empty() if report.enu_origin is None else error_series(truth, fixes, report.enu_origin)
    write_replay_html(out_dir, report.to_json_dict(), frame_log(s.timing, fix_errors.t_s, fix_errors.horizontal_m),
                      subject=f"{clip.name} over the corpus {corpus_dir.name}")
    return report


def write_plots(out_dir: Path, corpus_dir: Path, truth: GeoTrack, estimates: GeoTrack, fixes: GeoTrack,
                report: ReplayReport, mode: str) -> None:
    corpus = Corpus.load(corpus_dir)
    frame: LocalTangentPlane = corpus.frame
    preview, _valid, g = corpus.map_preview()
    extent = (g.east_min_m, g.east_min_m + g.width_px * g.gsd_m, g.north_max_m - g.height_px * g.gsd_m, g.north_max_m)
    plot_trajectory(out_dir / "trajectory.png", preview, extent, truth.enu_m(frame), estimates.enu_m(frame),
                    fixes.enu_m(frame), title=f"Trajectory: ground truth, fused estimate, visual fixes ({mode})")
    if report.enu_origin is not None and len(estimates):
        series = error_series(truth, estimates, report.enu_origin, 10.0)
        sigma3 = 3.0 * series.sigma_major_m
        plot_error_over_time(out_dir / "error_over_time.png", series.t_s, series.horizontal_m, sigma3,
                             fixes.t_s, report.gnss_lost_s,
                             title=f"Horizontal error of the fused estimate ({mode}, fix rate {report.fix_rate:.2f})")

