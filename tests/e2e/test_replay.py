"""End to end: a short flight clip replayed through the whole lifecycle graph in-process, scored against truth.

Real everything: generated world -> provisioned corpus -> rendered clip bag -> lifecycle manager bringing
the four nodes up over their services -> bag played over DDS with /clock -> outputs recorded -> report.
"""
from __future__ import annotations

import json
import math

import pytest
from rosbags.highlevel import AnyReader

from gps_denied_nav.nodes import names
from gps_denied_nav.replay.bag_types import typestore

CLIP_DURATION_S = 40.0
GNSS_S = 10.0


def _clip(world, out_dir, seed: int, gnss_s: float):
    from gps_denied_nav.core.map_raster import load_geotiff
    from gps_denied_nav.sim.clip import write_clip
    from gps_denied_nav.sim.flight import FlightConfig, simulate_flight

    flight = simulate_flight(load_geotiff(world), FlightConfig(seed=seed, duration_s=CLIP_DURATION_S, gnss_s=gnss_s))
    return write_clip(flight, out_dir / "clip.mcap")


@pytest.fixture(scope="module")
def short_clip(small_world, tmp_path_factory):
    return _clip(small_world, tmp_path_factory.mktemp("clip"), seed=3, gnss_s=GNSS_S)


def test_replay_through_the_whole_graph(short_clip, small_corpus, tmp_path):
    from gps_denied_nav.replay.session import replay

    out = tmp_path / "replay"
    report = replay(short_clip, small_corpus, out, rate=1.0).to_json_dict()
    saved = json.loads((out / "report.json").read_text())
    for key in ("frames", "fixes_accepted", "fix_rate", "rmse_m", "cep50_m", "cep95_m", "visual_fix_rmse_m",
                "max_error_m", "latency_ms_p50", "latency_ms_p95", "wall_s"):
        assert key in saved
    assert report["frames"] == pytest.approx(CLIP_DURATION_S * 2, abs=2)
    assert report["fix_rate"] >= 0.5, report
    assert report["rmse_m"] <= 10.0, report
    assert report["visual_fix_rmse_m"] <= 5.0, report
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


def test_cold_start_without_gnss_localises_from_a_global_search(small_world, small_corpus, tmp_path):
    """No GNSS at all: unrectified frames are retrieved globally, the first visual fix initialises the
    filter (position, heading), and tracking continues from there."""
    from gps_denied_nav.replay.inspect_bag import last_diagnostics
    from gps_denied_nav.replay.session import replay

    clip = _clip(small_world, tmp_path, seed=5, gnss_s=0.0)
    report = replay(clip, small_corpus, tmp_path / "replay", rate=1.0).to_json_dict()
    assert report["fix_rate"] >= 0.5, report
    assert report["rmse_m"] <= 10.0, report
    retrieval = last_diagnostics(tmp_path / "replay" / "outputs.mcap")["gps_denied_nav: retrieval_node"][2]
    assert int(retrieval.get("global_searches", 0)) >= 1  # the first frames, before any fix
    assert int(retrieval.get("prior_searches", 0)) >= 10  # then narrowed by the filter
