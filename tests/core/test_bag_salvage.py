"""Salvaging a recording split cut short by a SIGKILL: the messages of its complete chunks, nothing else.

A crash is simulated by truncating a bag's .mcap bytes and removing its metadata.yaml, the state the recorder leaves.
"""
from __future__ import annotations

import random
import struct
import zlib
from collections import Counter
from pathlib import Path

import pytest
import yaml
from rclpy.serialization import serialize_message
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from sensor_msgs.msg import Image, Imu

from gps_denied_nav.recording.salvage import recording_bags, recover_recording, recover_split, scan_mcap
from gps_denied_nav.replay.bag_types import BAG_VERSION, typestore
from gps_denied_nav_interfaces.msg import VisualFix

THING = "other_pkg/msg/Thing"  # a type our typestore does not know: only the bag's own schema describes it
THING_MSG = "float64 x\nstring label\n"
IMU_QOS = Qos(QosHistory.KEEP_LAST, 7, QosReliability.BEST_EFFORT, QosDurability.VOLATILE, QosTime(0, 0),
              QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)
T0_NS = 1_700_000_000_000_000_000


def write_bag(bag_dir: Path, *, images: int = 60, compress: bool = False) -> None:
    """IMU at 200 Hz, ~60 kB images at 10 Hz, visual fixes and an unknown type, > 1 MiB per 20 images."""
    rng = random.Random(bag_dir.name)
    thing_store = get_typestore(Stores.EMPTY)
    thing_store.register(get_types_from_msg(THING_MSG, THING))
    events = []
    for i in range(images * 20):
        imu = Imu()
        imu.header.frame_id, imu.linear_acceleration.z, imu.angular_velocity.x = "imu", 9.81 + i * 1e-3, i * 1e-4
        events.append((T0_NS + i * 5_000_000 + 1, "/imu", serialize_message(imu)))
    for i in range(images):
        image = Image()
        image.height, image.width, image.encoding, image.step = 200, 300, "mono8", 300
        image.data = rng.randbytes(60_000)  # incompressible, so zstd chunks stay as many as plain ones
        events.append((T0_NS + i * 100_000_000 + 2, "/camera/image", serialize_message(image)))
    for i in range(images // 2):
        fix = VisualFix()
        fix.latitude_deg, fix.tile_id, fix.inliers = 48.0 + i * 1e-5, f"tile_{i}", 40 + i
        events.append((T0_NS + i * 200_000_000 + 3, "/visual_fix", serialize_message(fix)))
    for i in range(images // 3):
        thing = thing_store.types[THING](x=float(i), label=f"thing {i}")
        events.append((T0_NS + i * 300_000_000 + 4, "/thing", bytes(thing_store.serialize_cdr(thing, THING))))
    writer = Writer(bag_dir, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
    if compress:
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    writer.open()
    store = typestore()
    connections = {
        "/imu": writer.add_connection("/imu", "sensor_msgs/msg/Imu", typestore=store, offered_qos_profiles=[IMU_QOS]),
        "/camera/image": writer.add_connection("/camera/image", "sensor_msgs/msg/Image", typestore=store),
        "/visual_fix": writer.add_connection("/visual_fix", "gps_denied_nav_interfaces/msg/VisualFix",
                                             typestore=store),
        "/thing": writer.add_connection("/thing", THING, msgdef=thing_store.generate_msgdef(THING, ros_version=2)[0],
                                        rihs01=thing_store.hash_rihs01(THING)),
    }
    for t_ns, topic, data in sorted(events):
        writer.write(connections[topic], t_ns, data)
    writer.close()


def read(bag: Path) -> list[tuple[str, int, bytes]]:
    with AnyReader([bag], default_typestore=typestore()) as reader:
        return [(c.topic, t_ns, bytes(raw)) for c, t_ns, raw in reader.messages()]


def chunks(mcap: bytes) -> list[tuple[int, int, int, int]]:
    """(start, end, end of its message indexes, message count) of each top-level chunk record."""
    found, pos = [], 8
    while True:
        op, size = struct.unpack_from("<BQ", mcap, pos)
        if op == 0x06:
            found.append([pos, pos + 9 + size, pos + 9 + size, 0])
        elif op == 0x07:  # message index: u16 channel, u32 byte length of 16-byte entries
            found[-1][2] = pos + 9 + size
            found[-1][3] += struct.unpack_from("<I", mcap, pos + 11)[0] // 16
        elif op == 0x0F:
            return [tuple(c) for c in found]
        pos += 9 + size


def crash(bag: Path, size: int, split: Path) -> Path:
    """split: a copy of bag as a killed recorder leaves it, its .mcap cut to size bytes and no metadata.yaml."""
    split.mkdir(parents=True)
    mcap = split / f"{split.name}.mcap"
    mcap.write_bytes((bag / f"{bag.name}.mcap").read_bytes()[:size])
    return mcap


def scanned(scan) -> list[tuple[str, int, bytes]]:
    return [(scan.channels[cid].topic, t_ns, data) for cid, t_ns, data in scan.messages]


@pytest.fixture(scope="module")
def intact(tmp_path_factory) -> tuple[Path, bytes, list[tuple[str, int, bytes]]]:
    bag = tmp_path_factory.mktemp("intact") / "flight_0000"
    write_bag(bag)
    return bag, (bag / "flight_0000.mcap").read_bytes(), read(bag)


def test_the_test_bag_has_several_chunks(intact):
    _, mcap, messages = intact
    assert len(chunks(mcap)) >= 4 and len(mcap) > 3 * 2**20 and len(messages) > 1000


@pytest.mark.parametrize("cut", ["mid_chunk", "chunk_record_end", "chunk_indexes_end", "first_chunk", "header",
                                 "magic"])
def test_scan_keeps_exactly_the_complete_chunks(intact, tmp_path, cut):
    bag, mcap, messages = intact
    table = chunks(mcap)
    size = {"mid_chunk": (table[2][0] + table[2][1]) // 2, "chunk_record_end": table[2][1],
            "chunk_indexes_end": table[2][2], "first_chunk": table[0][0] + 100, "header": 12, "magic": 5}[cut]
    kept = sum(count for _, end, _, count in table if end <= size)
    scan = scan_mcap(crash(bag, size, tmp_path / "flight_0000"))
    assert scanned(scan) == messages[:kept]
    assert not scan.complete and scan.bytes_total == size and scan.bytes_read <= size
    if cut == "mid_chunk":
        assert scan.reason == f"truncated chunk at byte {table[2][0]} of {size}"
        assert scan.bytes_read == table[2][0]


def test_scan_of_an_intact_file_reads_everything(intact):
    bag, _, messages = intact
    scan = scan_mcap(bag / "flight_0000.mcap")
    assert scan.complete and "data end" in scan.reason
    assert scanned(scan) == messages
    imu = next(c for c in scan.channels.values() if c.topic == "/imu")
    assert imu.msgtype == "sensor_msgs/msg/Imu" and imu.encoding == "cdr" and "depth: 7" in imu.offered_qos_profiles


def test_recover_split_rewrites_the_complete_chunks_as_a_bag(intact, tmp_path):
    bag, mcap, messages = intact
    table = chunks(mcap)
    size = table[3][0] + 5000
    kept = sum(count for _, end, _, count in table[:3])
    split = tmp_path / "flight" / "flight_0003"
    original = crash(bag, size, split).read_bytes()

    result = recover_split(split)

    assert result.recovered and result.reason.startswith("truncated chunk at byte")
    assert read(split) == messages[:kept]  # bit-identical, in order, unknown type included
    assert result.messages_per_topic == Counter(topic for topic, _, _ in messages[:kept])
    assert result.message_count == kept and result.skipped == []
    assert (result.first_time_ns, result.last_time_ns) == (messages[0][1], messages[kept - 1][1])
    assert result.crashed_dir == tmp_path / "flight" / "flight_0003.crashed"
    assert (result.crashed_dir / "flight_0003.mcap").read_bytes() == original
    assert sorted(p.name for p in split.parent.iterdir()) == ["flight_0003", "flight_0003.crashed"]
    metadata = yaml.safe_load((split / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["relative_file_paths"] == ["flight_0003.mcap"] and (split / "flight_0003.mcap").is_file()
    with AnyReader([split], default_typestore=typestore()) as reader:
        imu = next(c for c in reader.connections if c.topic == "/imu")
        assert imu.ext.offered_qos_profiles == [IMU_QOS]
        fix = next(c for c in reader.connections if c.topic == "/visual_fix")
        raw = next(raw for c, _, raw in reader.messages(connections=[fix]))
        assert reader.deserialize(raw, fix.msgtype).tile_id == "tile_0"


def test_recover_split_of_a_file_cut_in_its_header_gives_an_empty_bag(intact, tmp_path):
    bag, _, _ = intact
    split = tmp_path / "flight_0001"
    crash(bag, 12, split)
    result = recover_split(split)
    assert result.recovered and result.message_count == 0 and result.first_time_ns is None
    assert read(split) == []


def test_a_complete_split_is_left_untouched(intact):
    bag, mcap, _ = intact
    before = sorted((p.name, p.stat().st_mtime_ns) for p in bag.iterdir())
    result = recover_split(bag)
    assert not result.recovered and "untouched" in result.reason
    assert sorted((p.name, p.stat().st_mtime_ns) for p in bag.iterdir()) == before
    assert not bag.with_name(bag.name + ".crashed").exists() and (bag / "flight_0000.mcap").read_bytes() == mcap


def test_zstd_chunks_salvage(tmp_path):
    bag = tmp_path / "zstd" / "flight_0000"
    write_bag(bag, images=30, compress=True)
    mcap = (bag / "flight_0000.mcap").read_bytes()
    table = chunks(mcap)
    size = (table[1][0] + table[1][1]) // 2
    split = tmp_path / "crashed" / "flight_0000"
    crash(bag, size, split)
    scan = scan_mcap(split / "flight_0000.mcap")
    assert scan.compression == "zstd" and len(scan.messages) == table[0][3] > 0
    recover_split(split)
    assert read(split) == read(bag)[:table[0][3]]


def test_a_crc_mismatch_stops_the_scan_at_that_chunk(intact, tmp_path):
    _, mcap, messages = intact
    table = chunks(mcap)
    data = bytearray(mcap)
    for index, (start, end, _, _) in enumerate(table[:3]):
        # rosbags writes crc 0 (unchecked): give chunks 0 and 1 their true crc, chunk 2 a wrong one.
        compression_len = struct.unpack_from("<I", data, start + 9 + 28)[0]
        records_at = start + 9 + 32 + compression_len + 8
        crc = zlib.crc32(data[records_at:end])
        struct.pack_into("<I", data, start + 9 + 24, crc if index < 2 else crc ^ 0x5A5A)
    split = tmp_path / "flight_0000"
    split.mkdir()
    (split / "flight_0000.mcap").write_bytes(bytes(data))
    scan = scan_mcap(split / "flight_0000.mcap")
    assert scan.complete  # the footer is intact; the data before it is not
    assert scan.reason == f"damaged chunk at byte {table[2][0]} of {len(data)}: CRC mismatch"
    assert scanned(scan) == messages[:table[0][3] + table[1][3]]


def test_bad_magic_or_no_mcap_raises_naming_the_path(tmp_path):
    split = tmp_path / "flight_0000"
    split.mkdir()
    with pytest.raises(ValueError, match=r"flight_0000 holds 0 \.mcap files"):
        recover_split(split)
    (split / "flight_0000.mcap").write_bytes(b"SQLite format 3\x00" + bytes(100))
    with pytest.raises(ValueError, match=r"flight_0000\.mcap is not an MCAP file"):
        recover_split(split)
    assert [p.name for p in tmp_path.iterdir()] == ["flight_0000"]


def test_recording_bags_and_recover_recording_on_a_session(tmp_path):
    session = tmp_path / "flight"
    write_bag(session / "flight_0000", images=3)
    write_bag(session / "flight_0001", images=3)
    write_bag(tmp_path / "whole", images=30)
    crash(tmp_path / "whole", chunks((tmp_path / "whole" / "whole.mcap").read_bytes())[1][2],
          session / "flight_0002")
    (session / "notes").mkdir()  # not a split: ignored

    with pytest.raises(ValueError, match=r"split .*flight_0002 has no metadata.yaml.*run `gdn recording recover"):
        recording_bags(session)
    with pytest.raises(ValueError, match="flight_0002"):
        recording_bags(session / "flight_0002")

    results = recover_recording(session)

    assert [(r.split_dir.name, r.recovered) for r in results] == [
        ("flight_0000", False), ("flight_0001", False), ("flight_0002", True)]
    assert recording_bags(session) == [session / "flight_0000", session / "flight_0001", session / "flight_0002"]
    assert recording_bags(session / "flight_0001") == [session / "flight_0001"]
    mcap = session / "flight_0001" / "flight_0001.mcap"
    assert recording_bags(mcap) == [mcap]
    assert recover_recording(session)[2].recovered is False  # a second pass changes nothing
    with pytest.raises(FileNotFoundError):
        recording_bags(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="holds no bag"):
        recording_bags(session / "notes")


def test_records_outside_chunks_count_and_a_schemaless_channel_is_skipped(tmp_path):
    def record(op: int, content: bytes) -> bytes:
        return bytes([op]) + struct.pack("<Q", len(content)) + content

    def text(value: str) -> bytes:
        return struct.pack("<I", len(value.encode())) + value.encode()

    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg(THING_MSG, THING))
    things = [bytes(store.serialize_cdr(store.types[THING](x=i / 2, label=f"t{i}"), THING)) for i in range(5)]
    data = b"\x89MCAP0\r\n" + record(0x01, text("ros2") + text("another writer"))
    data += record(0x03, struct.pack("<H", 1) + text(THING) + text("ros2msg") + text(THING_MSG))
    data += record(0x04, struct.pack("<HH", 1, 1) + text("/thing") + text("cdr") + struct.pack("<I", 0))
    data += record(0x04, struct.pack("<HH", 2, 0) + text("/raw") + text("cdr") + struct.pack("<I", 0))
    for i, thing in enumerate(things):
        data += record(0x05, struct.pack("<HIQQ", 1, i, T0_NS + 2 * i, T0_NS + 2 * i) + thing)
        data += record(0x05, struct.pack("<HIQQ", 2, i, T0_NS + 2 * i + 1, T0_NS + 2 * i + 1) + b"\x00\x01\x00\x00")
    split = tmp_path / "flight_0000"
    split.mkdir()
    (split / "flight_0000.mcap").write_bytes(data[:-3])  # the last /raw message is cut

    scan = scan_mcap(split / "flight_0000.mcap")
    assert [(cid, t_ns) for cid, t_ns, _ in scan.messages] == [(i % 2 + 1, T0_NS + i) for i in range(9)]
    assert scan.channels[1].msgtype == THING and scan.channels[2].msgtype == ""

    result = recover_split(split)
    assert result.messages_per_topic == {"/thing": 5}
    assert result.skipped == ["/raw: 4 messages, type (no schema) has no usable definition"]
    assert read(split) == [("/thing", T0_NS + 2 * i, thing) for i, thing in enumerate(things)]
