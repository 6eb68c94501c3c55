"""The flight recorder's writer on its own: splits by size and time, every closed split a complete bag,
chunks on the disk within a chunk period, the disk budget, and a directory it cannot write."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from rclpy.serialization import serialize_message
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import Imu

from gps_denied_nav.recording.writer import RecordingConfig, RecordingWriter
from gps_denied_nav.replay.bag_types import typestore

TOPICS = {"/imu/data": "sensor_msgs/msg/Imu"}


def imu_raw(i: int) -> bytes:
    msg = Imu()
    msg.header.stamp.sec, msg.header.frame_id = i, "imu_link"
    msg.linear_acceleration.z = float(i)
    return serialize_message(msg)


def read_all(bags: list[Path]) -> list[tuple[int, bytes]]:
    with AnyReader(bags, default_typestore=typestore()) as reader:
        return [(t, bytes(raw)) for _c, t, raw in reader.messages()]


def wait_for(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def splits(writer: RecordingWriter) -> list[Path]:
    return sorted(p for p in (writer.root / writer.session).iterdir() if p.is_dir())


def test_splits_by_size_are_complete_bags_holding_every_message(tmp_path):
    config = RecordingConfig(split_size_mb=0.02, disk_budget_mb=100.0, min_free_disk_mb=0.0, fsync=False)
    writer = RecordingWriter(tmp_path, TOPICS, config, session="flight_20261206_093000").start()
    sent = [(1_000_000_000 + i * 5_000_000, imu_raw(i)) for i in range(400)]
    for t_ns, raw in sent:
        assert writer.put("/imu/data", t_ns, raw)
    writer.close()
    parts = splits(writer)
    assert len(parts) >= 3 and all((p / "metadata.yaml").exists() for p in parts)
    assert [p.name for p in parts] == [f"flight_20261206_093000_{i:04d}" for i in range(len(parts))]
    assert read_all(parts) == sent
    assert writer.status()["state"] == "closed" and writer.status()["messages_written"] == 400


def test_splits_by_time(tmp_path):
    config = RecordingConfig(split_duration_s=0.3, min_free_disk_mb=0.0, fsync=False)
    writer = RecordingWriter(tmp_path, TOPICS, config).start()
    for i in range(8):
        writer.put("/imu/data", i, imu_raw(i))
        time.sleep(0.1)
    writer.close()
    assert len(splits(writer)) >= 2


def test_open_split_reaches_the_disk_within_a_chunk_period(tmp_path):
    """What a SIGKILL leaves: the open split's file holds every message older than a chunk period."""
    from gps_denied_nav.recording.salvage import scan_mcap

    writer = RecordingWriter(tmp_path, TOPICS, RecordingConfig(chunk_period_s=0.2, min_free_disk_mb=0.0)).start()
    for i in range(50):
        writer.put("/imu/data", i, imu_raw(i))
    wait_for(lambda: writer.status()["messages_written"] == 50)
    time.sleep(0.5)
    mcap = next(splits(writer)[0].glob("*.mcap"))
    scan = scan_mcap(mcap)  # read while the writer still holds the file open: no footer, no metadata.yaml
    assert not scan.complete and [bytes(m[2]) for m in scan.messages] == [imu_raw(i) for i in range(50)]
    writer.close()


def test_disk_budget_deletes_the_oldest_closed_splits_only(tmp_path):
    keep = tmp_path / "flight_20200101_000000" / "notes"  # not named as a split: never deleted
    keep.mkdir(parents=True)
    (keep / "a.txt").write_text("mine")
    config = RecordingConfig(split_size_mb=0.02, disk_budget_mb=0.06, min_free_disk_mb=0.0, fsync=False)
    writer = RecordingWriter(tmp_path, TOPICS, config).start()
    for i in range(1500):
        writer.put("/imu/data", i, imu_raw(i))
        if i % 100 == 0:
            time.sleep(0.05)
    writer.close()
    parts = splits(writer)
    total_mb = sum(f.stat().st_size for p in parts for f in p.iterdir()) / 1e6
    assert writer.status()["splits_deleted_for_budget"] >= 1 and total_mb <= 0.06 + 0.03
    assert parts[-1].name.endswith(f"_{writer.status()['splits_closed'] - 1:04d}")  # the newest survive
    assert (keep / "a.txt").read_text() == "mine"


def test_a_directory_it_cannot_write_is_reported_not_raised(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    writer = RecordingWriter(blocker / "recordings", TOPICS, RecordingConfig(retry_s=0.1)).start()
    for i in range(5):
        writer.put("/imu/data", i, imu_raw(i))
    wait_for(lambda: writer.status()["state"].startswith("error"))
    status = writer.status()
    assert "recordings" in status["last_error"] and status["messages_written"] == 0
    writer.close()


def test_low_free_space_pauses_the_recorder(tmp_path):
    writer = RecordingWriter(tmp_path, TOPICS, RecordingConfig(min_free_disk_mb=1e12)).start()
    wait_for(lambda: writer.status()["state"].startswith("paused"))
    assert not writer.put("/imu/data", 0, imu_raw(0))
    assert writer.status()["dropped_paused"] == 1
    writer.close()


class FullDisk:
    """The file system's answer once the disk is full; everything else as the real file."""

    def __init__(self, bio):
        self._bio = bio

    def write(self, _data):
        raise OSError(28, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._bio, name)


def test_a_write_error_pauses_and_keeps_what_was_written(tmp_path, monkeypatch):
    """ENOSPC in the middle of a split: the writer abandons it as it is (salvageable) and retries later."""
    writer = RecordingWriter(tmp_path, TOPICS, RecordingConfig(chunk_period_s=0.1, retry_s=60.0, min_free_disk_mb=0.0))
    writer.start()
    writer.put("/imu/data", 0, imu_raw(0))
    wait_for(lambda: writer.status()["messages_written"] == 1)
    time.sleep(0.3)
    monkeypatch.setattr(writer._writer.storage, "bio", FullDisk(writer._writer.storage.bio))
    for i in range(1, 2000):
        writer.put("/imu/data", i, imu_raw(i))
    wait_for(lambda: writer.status()["state"] == "error: write failed")
    assert "No space left" in writer.status()["last_error"]
    writer.close()


def test_config_refuses_a_budget_smaller_than_two_splits():
    with pytest.raises(ValueError, match="disk_budget_mb"):
        RecordingConfig(split_size_mb=100.0, disk_budget_mb=150.0).check()
