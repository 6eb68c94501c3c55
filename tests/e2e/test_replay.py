"""End to end: a short flight clip replayed through the whole lifecycle graph, scored against truth.

Real everything: generated world -> provisioned corpus -> rendered clip bag -> lifecycle manager bringing
the four nodes up over their services -> bag played over DDS with /clock -> outputs recorded -> report.
The reference flight (replay.reference) runs in lockstep and must stay within the stated tolerances of
the figures recorded in docs/figures.json by benchmarks/reproduce_figures.py.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from rosbags.highlevel import AnyReader

from gps_denied_nav.core.stage_timing import STAGES
from gps_denied_nav.nodes import names
from gps_denied_nav.replay import reference
from gps_denied_nav.replay.bag_types import typestore

CLIP_DURATION_S = reference.CLIP_DURATION_S
FIGURES = Path(__file__).resolve().parents[2] / "docs" / "figures.json"


def test_replay_through_the_whole_graph(reference_replay):
    """The short reference flight in lockstep: the report contract, and no worse than the recorded figures."""
    out = reference_replay
    saved = report = json.loads((out / "report.json").read_text())
    for key in ("frames", "fixes_accepted", "fix_rate", "rmse_m", "cep50_m", "cep95_m", "visual_fix_rmse_m",
                "max_error_m", "latency_ms_p50", "latency_ms_p95", "wall_s"):
        assert key in saved
    assert report["frames"] == pytest.approx(CLIP_DURATION_S * 2, abs=2)
    recorded = json.loads(FIGURES.read_text())["runs"]["ci_short_lockstep"]
    problems = reference.within_tolerance(report, recorded)
    assert not problems, (problems, report)
    assert report["visual_fix_rmse_m"] <= 5.0, report
    # The world stands 35 m above the ellipsoid and the corpus knows it: no bias in the fixes' altitude
    # (a corpus that assumed 0 m put the whole height into every fix's altitude).
    assert report["vertical_rmse_m"] <= 3.0, report
    # Lockstep: every frame ended somewhere in the graph before the next one went out.
    assert saved["mode"] == "lockstep" and saved["lockstep"]["timeouts"] == 0, saved["lockstep"]
    assert saved["lockstep"]["frames_waited"] == report["frames"]
    timing = saved["timing"]
    assert sum(timing["frame_ends"].values()) == report["frames"], timing["frame_ends"]
    assert timing["frame_ends"].get("eskf: accepted", 0) >= report["fixes_accepted"] - 2, timing["frame_ends"]
    assert timing["stages"]["inference"]["steps_ms"]["forward"]["p50"] > 1.0
    assert all(timing["delivery_ms"][f"{a}->{b}"]["n"] > 0 for a, b in zip(STAGES[:-1], STAGES[1:]))
    assert saved["machine"]["cores"] >= 1 and saved["machine"]["cpu_model"]
    # The filter's odometry against /ground_truth/odom, in the filter's own map frame: the 3-D position
    # error must agree with the fix-based horizontal and vertical ones (same estimates, other path and frame).
    state = saved["state_scoring"]
    assert state["samples"] == pytest.approx(saved["scored_samples"], abs=5), state
    assert state["position_3d_rmse_m"] == pytest.approx(math.hypot(report["rmse_m"], report["vertical_rmse_m"]),
                                                        rel=0.2, abs=0.05), state
    assert saved["velocity_rmse_mps"] <= 1.0 and saved["attitude_tilt_rmse_deg"] <= 3.0, state
    assert saved["yaw_rmse_deg"] <= 5.0, state
    for key in ("nees_velocity_mean", "nees_attitude_mean", "nees_position_3d_mean"):
        assert saved[key] > 0.0, state
    assert (out / "trajectory.png").stat().st_size > 10_000
    assert (out / "error_over_time.png").stat().st_size > 10_000
    with AnyReader([out / "outputs.mcap"], default_typestore=typestore()) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts[names.ODOMETRY] > CLIP_DURATION_S * 20  # 50 Hz publishing, minus start-up
    assert counts[names.VISUAL_FIX] == report["fixes_accepted"]
    assert counts[names.DIAGNOSTICS] > 0
    assert counts[names.STAGE_TIMING] >= report["frames"] * 3  # inference, retrieval, matching at least


def test_cold_start_without_gnss_localises_from_a_global_search(small_world, small_corpus, tmp_path):
    """No GNSS at all: unrectified frames are retrieved globally, the first visual fix initialises the
    filter (position, heading), and tracking continues from there."""
    from gps_denied_nav.replay.inspect_bag import last_diagnostics
    from gps_denied_nav.replay.session import replay

    clip = reference.short_clip(small_world, tmp_path / "clip.mcap", seed=5, gnss_s=0.0)
    report = replay(clip, small_corpus, tmp_path / "replay", rate=1.0).to_json_dict()
    assert report["fix_rate"] >= 0.5, report
    assert report["rmse_m"] <= 10.0, report
    retrieval = last_diagnostics(tmp_path / "replay" / "outputs.mcap")["gps_denied_nav: retrieval_node"][2]
    assert int(retrieval.get("global_searches", 0)) >= 1  # the first frames, before any fix
    assert int(retrieval.get("prior_searches", 0)) >= 10  # then narrowed by the filter


def test_realtime_replay_with_a_process_per_node(small_world, small_corpus, tmp_path):
    """As deployed: every node in its own process (the node executables), the clip at its own pace."""
    from gps_denied_nav.replay.session import replay

    clip = reference.short_clip(small_world, tmp_path / "clip.mcap", seed=4, duration_s=25.0)
    report = replay(clip, small_corpus, tmp_path / "replay", mode="realtime", process_per_node=True).to_json_dict()
    assert report["mode"] == "realtime" and report["host"] == "process per node" and report["lockstep"] is None
    assert report["fix_rate"] >= 0.5 and report["rmse_m"] <= 2.0, report
    assert report["latency_samples"] == report["fixes_accepted"] > 0
    assert set(report["peak_rss_mb"]) == {*names.MANAGED_NODES, names.LIFECYCLE_MANAGER}
    assert all(mb and mb > 20.0 for mb in report["peak_rss_mb"].values()), report["peak_rss_mb"]
