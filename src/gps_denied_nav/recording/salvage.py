"""Salvage of a recording split whose recorder was killed mid-write.

The recorder closes an MCAP chunk and flushes about once a second, so a SIGKILL leaves complete chunks followed by a
torn one, with no summary, no footer and no metadata.yaml. rosbags reads the footer first and refuses such a file, so
this module walks the records from the start itself, keeps everything before the first damaged record, and rewrites
that as a complete bag. The damaged original stays beside it as ``<split>.crashed``: nothing is ever deleted.
"""
from __future__ import annotations

import shutil
import struct
import tempfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.rosbag2.metadata import parse_qos
# rosbags' own chunk decompressors (zstd and lz4, from the packages rosbags depends on): one set of codecs.
from rosbags.rosbag2.storage_mcap import DECOMPRESSORS
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from gps_denied_nav.replay.bag_types import BAG_VERSION, typestore

MAGIC = b"\x89MCAP0\r\n"
CRASHED_SUFFIX = ".crashed"
OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK, OP_DATA_END = 0x02, 0x03, 0x04, 0x05, 0x06, 0x0F
_RECORD_NAMES = {0x01: "header", OP_FOOTER: "footer", OP_SCHEMA: "schema", OP_CHANNEL: "channel",
                 OP_MESSAGE: "message", OP_CHUNK: "chunk", 0x07: "message index", OP_DATA_END: "data end"}


class _Damaged(ValueError):
    """A record is incomplete or inconsistent: the usable data ends before it."""


@dataclass(frozen=True)
class SalvagedSchema:
    id: int
    name: str
    encoding: str
    data: str


@dataclass(frozen=True)
class SalvagedChannel:
    id: int
    schema_id: int
    topic: str
    msgtype: str  # the schema's name; '' when the channel has no schema
    encoding: str
    offered_qos_profiles: str  # YAML text from the channel metadata, '' when absent


@dataclass
class SalvageScan:
    path: Path
    schemas: dict[int, SalvagedSchema]
    channels: dict[int, SalvagedChannel]
    messages: list[tuple[int, int, bytes]]  # (channel id, log time ns, serialized data), in file order
    complete: bool  # the file ends in a valid footer
    bytes_read: int  # end of the last usable record
    bytes_total: int
    reason: str  # where and why the scan stopped
    compression: str = ""  # of the first chunk: the recovered bag is written the same way


@dataclass
class RecoveryResult:
    split_dir: Path
    recovered: bool  # False: the split was already a complete bag and was left untouched
    reason: str
    messages_per_topic: dict[str, int] = field(default_factory=dict)
    first_time_ns: int | None = None
    last_time_ns: int | None = None
    skipped: list[str] = field(default_factory=list)
    crashed_dir: Path | None = None  # where the damaged original was kept

    @property
    def message_count(self) -> int:
        return sum(self.messages_per_topic.values())


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    (size,) = struct.unpack_from("<I", buf, pos)
    end = pos + 4 + size
    if end > len(buf):
        raise _Damaged(f"a string overruns its record at byte {pos}")
    return buf[pos + 4:end].decode(), end


def _records(buf: bytes) -> list[tuple[int, bytes]]:
    """All (opcode, content) in buf, or _Damaged: a chunk is kept whole or not at all."""
    records, pos = [], 0
    while pos < len(buf):
        if pos + 9 > len(buf):
            raise _Damaged(f"a record header overruns the chunk at byte {pos}")
        op, size = struct.unpack_from("<BQ", buf, pos)
        if pos + 9 + size > len(buf):
            raise _Damaged(f"a {_RECORD_NAMES.get(op, 'record')} overruns the chunk at byte {pos}")
        records.append((op, buf[pos + 9:pos + 9 + size]))
        pos += 9 + size
    return records


def _chunk_content(content: bytes) -> tuple[bytes, str]:
    _start_ns, _end_ns, size, crc = struct.unpack_from("<QQQI", content, 0)
    compression, pos = _string(content, 28)
    (length,) = struct.unpack_from("<Q", content, pos)
    data = content[pos + 8:pos + 8 + length]
    if len(data) != length:
        raise _Damaged("its records overrun it")
    if compression not in DECOMPRESSORS:
        raise _Damaged(f"unsupported compression {compression!r}")
    try:
        raw = DECOMPRESSORS[compression](data, size)
    except Exception as err:  # zstd and lz4 raise their own error types on corrupt input
        raise _Damaged(f"{compression} decompression failed ({err})") from None
    if len(raw) != size:
        raise _Damaged(f"decompressed to {len(raw)} bytes, expected {size}")
    if crc and zlib.crc32(raw) != crc:
        raise _Damaged("CRC mismatch")
    return raw, compression


def _apply(records: list[tuple[int, bytes]], scan: SalvageScan) -> None:
    for op, content in records:
        if op == OP_SCHEMA:
            (schema_id,) = struct.unpack_from("<H", content, 0)
            name, pos = _string(content, 2)
            encoding, pos = _string(content, pos)
            data, _ = _string(content, pos)
            if schema_id:  # id 0 is reserved for "no schema"
                scan.schemas[schema_id] = SalvagedSchema(schema_id, name, encoding, data)
        elif op == OP_CHANNEL:
            channel_id, schema_id = struct.unpack_from("<HH", content, 0)
            topic, pos = _string(content, 4)
            encoding, pos = _string(content, pos)
            (size,) = struct.unpack_from("<I", content, pos)
            metadata, pos, end = {}, pos + 4, pos + 4 + size
            while pos < end:
                key, pos = _string(content, pos)
                metadata[key], pos = _string(content, pos)
            schema = scan.schemas.get(schema_id)
            scan.channels[channel_id] = SalvagedChannel(channel_id, schema_id, topic, schema.name if schema else "",
                                                        encoding, metadata.get("offered_qos_profiles", ""))
        elif op == OP_MESSAGE:
            channel_id, _sequence, log_time_ns, _publish_time_ns = struct.unpack_from("<HIQQ", content, 0)
            scan.messages.append((channel_id, log_time_ns, content[22:]))


def _has_footer(path: Path, size: int) -> bool:
    if size < 2 * len(MAGIC) + 9 + 20:
        return False
    with path.open("rb") as f:
        f.seek(size - 37)
        tail = f.read(37)
    return tail[:9] == bytes([OP_FOOTER]) + (20).to_bytes(8, "little") and tail[-8:] == MAGIC


def scan_mcap(path: str | Path) -> SalvageScan:
    """Everything readable from the start of an MCAP file up to its first incomplete or damaged record."""
    path = Path(path)
    total = path.stat().st_size
    scan = SalvageScan(path, {}, {}, [], _has_footer(path, total), 0, total, "")
    with path.open("rb") as f:
        magic = f.read(len(MAGIC))
        if magic != MAGIC:
            if not MAGIC.startswith(magic):  # a prefix of the magic is a file cut short, not a foreign one
                raise ValueError(f"{path} is not an MCAP file: it starts with {magic!r}, not {MAGIC!r}")
            scan.bytes_read, scan.reason = len(magic), f"file ends inside the magic at byte {len(magic)}"
            return scan
        pos = len(MAGIC)
        while True:
            scan.bytes_read = pos
            head = f.read(9)
            if not head:
                scan.reason = f"file ends after a complete record at byte {pos}, without a footer"
                break
            if len(head) < 9:
                scan.reason = f"record cut inside its opcode and length at byte {pos} of {total}"
                break
            op, size = struct.unpack("<BQ", head)
            name = _RECORD_NAMES.get(op, f"record 0x{op:02x}")
            if op == 0:  # reserved opcode: typically the zero-filled tail a crash can leave
                scan.reason = f"invalid opcode 0x00 at byte {pos} of {total}"
                break
            if size > total - pos - 9:
                scan.reason = f"truncated {name} at byte {pos} of {total}"
                break
            if op in (OP_DATA_END, OP_FOOTER):
                scan.reason = f"{name} record at byte {pos}: the data section is complete"
                break
            content = f.read(size)
            try:
                if op == OP_CHUNK:
                    raw, compression = _chunk_content(content)
                    scan.compression = scan.compression or compression
                    staged = SalvageScan(path, dict(scan.schemas), dict(scan.channels), [], False, 0, 0, "")
                    _apply(_records(raw), staged)
                    scan.schemas, scan.channels = staged.schemas, staged.channels
                    scan.messages += staged.messages
                else:
                    _apply([(op, content)], scan)
            except (ValueError, struct.error) as err:  # ValueError covers _Damaged and bad UTF-8
                scan.reason = f"damaged {name} at byte {pos} of {total}: {err}"
                break
            pos += 9 + size
    return scan


def _definition(msgtype: str, schema: SalvagedSchema | None) -> tuple[str, str] | None:
    """(msgdef, rihs01) for msgtype, or None. The recorded schema text comes first: the messages were serialized
    against it, even if our interfaces have changed since; our typestore serves schemas that carry none."""
    if schema is not None and schema.encoding == "ros2msg" and schema.data:
        try:
            own = get_typestore(Stores.EMPTY)
            own.register(get_types_from_msg(schema.data, msgtype))
            return schema.data, own.hash_rihs01(msgtype)
        except Exception:  # rosbags' parser raises several error types on text it cannot use
            pass
    store = typestore()
    if msgtype in store.fielddefs:
        return store.generate_msgdef(msgtype, ros_version=2)[0], store.hash_rihs01(msgtype)
    return None


def _write_bag(scan: SalvageScan, bag_dir: Path, result: RecoveryResult) -> None:
    writer = Writer(bag_dir, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
    if scan.compression == "zstd":
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    writer.open()
    per_channel = Counter(channel_id for channel_id, _, _ in scan.messages)
    connections, by_key = {}, {}
    for channel in scan.channels.values():
        definition = _definition(channel.msgtype, scan.schemas.get(channel.schema_id))
        if definition is None:
            result.skipped.append(f"{channel.topic}: {per_channel[channel.id]} messages, type "
                                  f"{channel.msgtype or '(no schema)'} has no usable definition")
            continue
        try:
            qos = parse_qos(channel.offered_qos_profiles)
        except Exception:  # rosbags' ReaderError: the profiles are lost, the messages are not
            qos = []
            result.skipped.append(f"{channel.topic}: unreadable offered_qos_profiles, written without them")
        key = (channel.topic, channel.msgtype, channel.encoding, channel.offered_qos_profiles)
        if key not in by_key:  # rosbags refuses a second identical connection
            by_key[key] = writer.add_connection(channel.topic, channel.msgtype, msgdef=definition[0],
                                                rihs01=definition[1], serialization_format=channel.encoding,
                                                offered_qos_profiles=qos)
        connections[channel.id] = by_key[key]
    written = [(connections[cid], time_ns, data) for cid, time_ns, data in scan.messages if cid in connections]
    for connection, time_ns, data in written:
        writer.write(connection, time_ns, data)
    writer.close()
    result.messages_per_topic = dict(Counter(connection.topic for connection, _, _ in written))
    if written:
        result.first_time_ns, result.last_time_ns = min(t for _, t, _ in written), max(t for _, t, _ in written)
    if orphans := sum(n for cid, n in per_channel.items() if cid not in scan.channels):
        result.skipped.append(f"{orphans} messages on channels never defined")


def _split_mcap(split_dir: Path) -> Path:
    files = sorted(split_dir.glob("*.mcap")) if split_dir.is_dir() else []
    if len(files) != 1:
        raise ValueError(f"split {split_dir} holds {len(files)} .mcap files, expected exactly one")
    return files[0]


def recover_split(split_dir: str | Path) -> RecoveryResult:
    """Rewrite a split that has no metadata.yaml as a complete bag of its salvageable messages."""
    split_dir = Path(split_dir)
    if (split_dir / "metadata.yaml").is_file():
        return RecoveryResult(split_dir, False, "has metadata.yaml: a complete bag, left untouched")
    scan = scan_mcap(_split_mcap(split_dir))
    crashed = split_dir.with_name(split_dir.name + CRASHED_SUFFIX)
    if crashed.exists():
        raise FileExistsError(f"cannot keep the original of {split_dir}: {crashed} exists already")
    result = RecoveryResult(split_dir, True, scan.reason, crashed_dir=crashed)
    # Writer names the .mcap after its directory, so the bag is built under its final name in a hidden parent.
    temp_parent = Path(tempfile.mkdtemp(prefix=f".{split_dir.name}.salvage-", dir=split_dir.parent))
    try:
        _write_bag(scan, temp_parent / split_dir.name, result)
    except BaseException:
        shutil.rmtree(temp_parent)  # only our own partial output: the original has not been touched
        raise
    split_dir.rename(crashed)
    (temp_parent / split_dir.name).rename(split_dir)
    temp_parent.rmdir()
    return result


def _is_split(path: Path) -> bool:
    return path.is_dir() and ((path / "metadata.yaml").is_file() or any(path.glob("*.mcap")))


def _splits(path: Path) -> list[Path]:
    """path itself when it is a split, else its split subdirectories by name (not kept originals or temp dirs)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if not path.is_dir():
        raise ValueError(f"{path} is neither a bag directory nor an .mcap file")
    if _is_split(path):
        return [path]
    splits = sorted((d for d in path.iterdir() if not d.name.startswith(".")
                     and not d.name.endswith(CRASHED_SUFFIX) and _is_split(d)), key=lambda d: d.name)
    if not splits:
        raise FileNotFoundError(f"{path} holds no bag: no metadata.yaml or .mcap in it or its subdirectories")
    return splits


def recover_recording(path: str | Path) -> list[RecoveryResult]:
    """Recover every split of a recording session (or the one split path is) that needs it."""
    return [recover_split(split) for split in _splits(Path(path))]


def recording_bags(path: str | Path) -> list[Path]:
    """The bags to read, in order, for a bag, an .mcap file or a recording session directory."""
    path = Path(path)
    if path.is_file() and path.suffix == ".mcap":
        return [path]
    bags = _splits(path)
    for bag in bags:
        if not (bag / "metadata.yaml").is_file():
            raise ValueError(f"split {bag} has no metadata.yaml (its recorder was cut short): "
                             f"run `gdn recording recover {path}` first")
    return bags
