"""Read back a recorded output bag: the last /diagnostics status of every node, for ``gdn diagnostics``."""
from __future__ import annotations

from pathlib import Path

from rosbags.highlevel import AnyReader

from gps_denied_nav.nodes import names
from gps_denied_nav.replay.bag_types import typestore

LEVELS = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}


def last_diagnostics(bag_path: str | Path) -> dict[str, tuple[str, str, dict[str, str]]]:
    """{status name: (level, message, {key: value})} from the newest DiagnosticArray of each node."""
    last = {}
    with AnyReader([Path(bag_path)], default_typestore=typestore()) as reader:
        conns = [c for c in reader.connections if c.topic == names.DIAGNOSTICS]
        for conn, _stamp, raw in reader.messages(connections=conns):
            for status in reader.deserialize(raw, conn.msgtype).status:
                last[status.name] = (LEVELS.get(int(status.level), str(status.level)), status.message,
                                     {kv.key: kv.value for kv in status.values})
    return last


def format_diagnostics(bag_path: str | Path, with_rates: bool = False) -> str:
    lines = []
    for name, (level, message, values) in sorted(last_diagnostics(bag_path).items()):
        lines.append(f"{name}: {level} {message}")
        lines += [f"    {k}: {v}" for k, v in values.items() if with_rates or not k.endswith("_rate_hz")]
    return "\n".join(lines)
