"""The flight data recorder as deployed: recorder_node in a process of its own beside the graph's, SIGKILLed
mid-flight. The graph navigates on; ``gdn recording recover`` turns the split left open into a bag missing at
most the last few seconds; ``gdn replay`` replays the recording (decimated JPEG frames) through the graph."""
from __future__ import annotations

import json
import os
import signal
import threading
import time

from rclpy.node import Node
from rclpy.qos import QoSProfile
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import NavSatFix

from gps_denied_nav.cli import main as gdn
from gps_denied_nav.nodes import names
from gps_denied_nav.recording.salvage import recording_bags
from gps_denied_nav.replay.bag_types import typestore
from gps_denied_nav.replay.graph import private_domain_id, with_optional
from gps_denied_nav.replay.player import BagPlayer
from gps_denied_nav.replay.process_host import ProcessGraphHost
from gps_denied_nav.replay.session import DEFAULT_PARAMS

KILL_AFTER_S = 22.0  # clip seconds played before the SIGKILL (GNSS ends at 10 s: the filter is on its own)
MAX_LOSS_S = 3.0  # "at most the last few seconds"


def test_sigkill_leaves_a_recording_that_recovers_and_replays(short_clip, small_corpus, tmp_path, capsys):
    record_dir = tmp_path / "recordings"
    overrides = with_optional({"corpus_dir": str(small_corpus), "use_sim_time": True, "output_dir": str(record_dir),
                               "image_rate_hz": 100.0, "chunk_period_s": 1.0}, (names.RECORDER_NODE,))
    host = ProcessGraphHost(DEFAULT_PARAMS, overrides, domain_id=private_domain_id(),
                            optional_nodes=(names.RECORDER_NODE,))
    tool = Node("recorder_test")
    fixes_after_kill = []
    killed = threading.Event()
    tool.create_subscription(NavSatFix, names.relative(names.FIX),
                             lambda m: fixes_after_kill.append(m) if killed.is_set() else None, QoSProfile(depth=100))
    player = BagPlayer(tool, short_clip, rate=1.0)
    host.add_node(tool)
    try:
        host.start()
        host.wait_until_active()
        play = threading.Thread(target=player.play, daemon=True)
        play.start()
        deadline = time.monotonic() + 120.0
        while not (player.now_s - player.start_s >= KILL_AFTER_S) and time.monotonic() < deadline:
            time.sleep(0.05)
        killed_at_s = player.now_s
        os.kill(host.processes[names.RECORDER_NODE].pid, signal.SIGKILL)
        killed.set()
        play.join(timeout=120.0)
    finally:
        host.close()
    assert len(fixes_after_kill) > 50  # the graph navigated on without its recorder

    session = next(record_dir.iterdir())
    assert gdn(["recording", "recover", str(session)]) == 0
    assert "recovered" in capsys.readouterr().out
    bags = recording_bags(session)
    with AnyReader(bags, default_typestore=typestore()) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        imu_last_s = max(t for c, t, _ in reader.messages([c for c in reader.connections if c.topic == names.IMU]))
        imu_last_s *= 1e-9
    print(f"[recorder] SIGKILL at clip time {killed_at_s - player.start_s:.2f} s; the recovered recording ends "
          f"{killed_at_s - imu_last_s:.2f} s before it")
    assert killed_at_s - MAX_LOSS_S <= imu_last_s <= killed_at_s + 0.5, (imu_last_s, killed_at_s)
    assert counts[names.COMPRESSED_IMAGE] > 30 and counts[names.FIX] > 100 and counts[names.CAMERA_INFO] > 30

    out = tmp_path / "replay"
    assert gdn(["replay", str(session), "--corpus", str(small_corpus), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == counts[names.COMPRESSED_IMAGE]
    assert report["fix_rate"] > 0.5, report["fix_rate"]  # the recording's JPEG frames still match the map
