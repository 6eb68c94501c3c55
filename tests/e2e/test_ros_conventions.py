"""The graph as it meets a real drone stack: in a namespace, fed by drivers that publish best effort.

Camera drivers and MAVROS publish with the sensor-data QoS profile (best effort); a RELIABLE subscription
does not match them and nothing arrives, silently. Here the reference flight's sensors go out best effort,
the whole graph and the player run in the namespace /uav1, and the figures must still be those recorded for
the reference flight. Bags written here must be rosbag2 version 8, which Humble's ``ros2 bag`` opens.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml
from rosbags.highlevel import AnyReader

from gps_denied_nav.nodes import names
from gps_denied_nav.replay import reference
from gps_denied_nav.replay.bag_types import typestore

FIGURES = Path(__file__).resolve().parents[2] / "docs" / "figures.json"


def _bag_version(bag: Path) -> int:
    return yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["version"]


def test_namespaced_graph_fed_best_effort_meets_the_reference_figures(short_clip, small_corpus, tmp_path):
    from gps_denied_nav.replay.session import replay

    out = tmp_path / "replay"
    report = replay(short_clip, small_corpus, out, namespace="uav1", sensor_qos=True).to_json_dict()
    assert report["namespace"] == "/uav1" and report["sensor_qos"] == "best_effort"
    recorded = json.loads(FIGURES.read_text())["runs"]["ci_short_lockstep"]
    problems = reference.within_tolerance(report, recorded)
    assert not problems, (problems, report)
    assert report["lockstep"]["frames_waited"] == report["frames"], report["lockstep"]
    # Humble's rosbag2 reads metadata up to version 8: the simulator's clip and the replay's outputs.
    assert _bag_version(short_clip) == 8 and _bag_version(out / "outputs.mcap") == 8
    with AnyReader([out / "outputs.mcap"], default_typestore=typestore()) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts[names.VISUAL_FIX] == report["fixes_accepted"] > 0


def test_names_are_relative_except_the_ros_wide_topics():
    assert names.relative(names.IMU) == "imu/data"
    assert names.relative(names.ODOMETRY) == "gps_denied_nav/odometry"
    for topic in (names.CLOCK, names.DIAGNOSTICS, names.TF, names.TF_STATIC):
        assert names.relative(topic) == topic
