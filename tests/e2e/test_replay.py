"""End to end: a short flight clip replayed through the whole lifecycle graph in-process, scored against truth.

Real everything: generated world -> provisioned corpus -> rendered clip bag -> lifecycle manager bringing
the four nodes up over their services -> bag played over DDS with /clock -> outputs recorded -> report.
"""
from __future__ import annotations

import json

import pytest
from rosbags.highlevel import AnyReader

from gps_denied_nav.nodes import names
from gps_denied_nav.replay.bag_types import typestore

CLIP_DURATION_S = 40.0
GNSS_S = 10.0


@pytest.fixture(scope="module")
def short_clip(small_world, tmp_path_factory):
    from gps_denied_nav.core.map_raster import load_geotiff
    from gps_denied_nav.sim.clip import write_clip
    from gps_denied_nav.sim.flight import FlightConfig, simulate_flight

    flight = simulate_flight(load_geotiff(small_world), FlightConfig(seed=3, duration_s=CLIP_DURATION_S, gnss_s=GNSS_S))
    path = tmp_path_factory.mktemp("clip") / "clip.mcap"
    write_clip(flight, path)
    return path


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
    assert (out / "trajectory.png").stat().st_size > 10_000
    assert (out / "error_over_time.png").stat().st_size > 10_000
    with AnyReader([out / "outputs.mcap"], default_typestore=typestore()) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts[names.ODOMETRY] > CLIP_DURATION_S * 20  # 50 Hz publishing, minus start-up
    assert counts[names.VISUAL_FIX] == report["fixes_accepted"]
    assert counts[names.DIAGNOSTICS] > 0
