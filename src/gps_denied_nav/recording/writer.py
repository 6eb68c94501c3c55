"""The flight data recorder's writer: raw CDR messages into rotating MCAP splits under a disk budget.

A recording is a session directory (``flight_YYYYmmdd_HHMMSS``, UTC) of splits, each a complete rosbag2 bag
of its own (``flight_..._0000/``: one ``.mcap`` and ``metadata.yaml``, version 8 for Humble's ``ros2 bag``),
closed when it reaches ``split_size_mb`` or ``split_duration_s``. A closed split is complete whatever happens
to the process later. The open one is written in chunks closed and flushed (and fsync-ed) every
``chunk_period_s``: a SIGKILL or a power cut loses at most the pending chunk, and ``gdn recording recover``
(recording/salvage.py) turns what the file holds into a bag.

Writing happens on a thread of its own behind a bounded queue, so a slow card never stalls the node's
callbacks: a full queue drops and counts. The recorder never takes the navigation down with it: a directory
it cannot write, a full disk or a write error pauses it with the reason in ``status()``, and it retries every
``retry_s``. Free space is checked every few seconds and the recorder pauses below ``min_free_disk_mb``
(before the disk fills for the rest of the system); the oldest closed splits of any recording under the root
are deleted to stay under ``disk_budget_mb`` (only directories named as this recorder names them).
"""
from __future__ import annotations

import os
import queue
import re
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rosbags.rosbag2 import StoragePlugin, Writer

from gps_denied_nav.replay.bag_types import BAG_VERSION, typestore

SPLIT_NAME = re.compile(r"^flight_\d{8}_\d{6}_\d{4}(\.crashed)?$")  # what the budget may delete, nothing else
DISK_CHECK_S = 2.0


@dataclass(frozen=True)
class RecordingConfig:
    split_size_mb: float = 512.0  # a split is closed (complete) at this size
    split_duration_s: float = 300.0  # ... or after this long
    disk_budget_mb: float = 8192.0  # all recordings under the output directory; the oldest closed splits go first
    min_free_disk_mb: float = 1024.0  # below this free space the recorder pauses rather than fill the disk
    chunk_period_s: float = 1.0  # chunks closed and flushed at least this often: what a crash may lose
    fsync: bool = True  # fsync each chunk: a power cut loses no more than a crash
    queue_messages: int = 5000  # messages waiting for the writer thread; beyond this they are dropped, counted
    retry_s: float = 5.0  # a paused recorder (no permission, disk full) tries again after this long

    def check(self) -> None:
        if not (self.split_size_mb > 0 and self.split_duration_s > 0 and self.chunk_period_s > 0 and self.retry_s > 0):
            raise ValueError("split_size_mb, split_duration_s, chunk_period_s and retry_s must be positive")
        if not self.disk_budget_mb >= 2 * self.split_size_mb:
            raise ValueError(f"disk_budget_mb ({self.disk_budget_mb:g}) must hold at least two splits of "
                             f"split_size_mb ({self.split_size_mb:g}): the open one and the last closed one")
        if self.min_free_disk_mb < 0 or self.queue_messages < 1:
            raise ValueError("min_free_disk_mb must be >= 0 and queue_messages >= 1")


def session_name(now_s: float | None = None) -> str:
    return "flight_" + datetime.fromtimestamp(time.time() if now_s is None else now_s, timezone.utc).strftime("%Y%m%d_%H%M%S")


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


class RecordingWriter:
    """``put(topic, t_ns, raw)`` from any thread; ``topics`` maps every topic to its message type."""

    def __init__(self, root: str | Path, topics: dict[str, str], config: RecordingConfig = RecordingConfig(),
                 session: str | None = None):
        config.check()
        self.root = Path(root).expanduser()
        self.topics = dict(topics)
        self.config = config
        self.session = session or session_name()
        self._queue: queue.Queue = queue.Queue(maxsize=config.queue_messages)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flight_recorder", daemon=True)
        self._writer: Writer | None = None
        self._conns: dict = {}
        self._split_index = 0
        self._split_opened_s = 0.0
        self._last_chunk_s = 0.0
        self._retry_at_s = 0.0
        self._next_disk_check_s = 0.0
        self.state = "starting"
        self.counts = {"messages_written": 0, "splits_closed": 0, "splits_deleted_for_budget": 0}
        self.dropped: dict[str, int] = {}
        self.split_path: Path | None = None
        self.last_error = ""

    # --- the caller's side ----------------------------------------------------------------------
    def start(self) -> RecordingWriter:
        self._thread.start()
        return self

    def put(self, topic: str, t_ns: int, raw: bytes) -> bool:
        """Queue one message; False (counted) when the writer is behind or paused."""
        if self.state.startswith("paused"):
            self._drop("paused")
            return False
        try:
            self._queue.put_nowait((topic, int(t_ns), bytes(raw)))
            return True
        except queue.Full:
            self._drop("queue_full")
            return False

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, close the open split (complete), stop the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)

    def status(self) -> dict:
        with self._lock:
            return {"state": self.state, "session": str(self.root / self.session),
                    "split": self.split_path.name if self.split_path else "", **self.counts,
                    **{f"dropped_{k}": v for k, v in self.dropped.items()}, "last_error": self.last_error}

    # --- the writer thread ----------------------------------------------------------------------
    def _drop(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def _set_state(self, state: str, error: str = "") -> None:
        with self._lock:
            self.state = state
            if error:
                self.last_error = error

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            if now >= self._next_disk_check_s:
                self._next_disk_check_s = now + DISK_CHECK_S
                self._check_disk()
            timeout = max(0.0, self._last_chunk_s + self.config.chunk_period_s - now) if self._writer else 0.2
            try:
                item = self._queue.get(timeout=min(timeout, 0.2))
            except queue.Empty:
                item = None
            if item is not None:
                self._write(*item)
            elif self._stop.is_set():
                break
            if self._writer is not None and time.monotonic() - self._last_chunk_s >= self.config.chunk_period_s:
                self._flush_chunk()
        self._close_split()
        self._set_state("closed")

    def _write(self, topic: str, t_ns: int, raw: bytes) -> None:
        if self._writer is None and not self._open_split():
            self._drop("not_writing")
            return
        try:
            if topic not in self._conns:
                self._conns[topic] = self._writer.add_connection(topic, self.topics[topic], typestore=typestore())
            self._writer.write(self._conns[topic], t_ns, raw)
        except OSError as exc:
            self._fail(f"writing {self.split_path}: {exc}")
            self._drop("write_error")
            return
        with self._lock:
            self.counts["messages_written"] += 1
        storage = self._writer.storage
        size_mb = (storage.bio.tell() + storage.chunk.bio.tell()) / 1e6
        if size_mb >= self.config.split_size_mb or time.monotonic() - self._split_opened_s >= self.config.split_duration_s:
            self._close_split()

    def _open_split(self) -> bool:
        now = time.monotonic()
        if now < self._retry_at_s or self.state.startswith("paused"):
            return False
        path = self.root / self.session / f"{self.session}_{self._split_index:04d}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = Writer(path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
            writer.open()
        except OSError as exc:  # no permission, read-only or full file system
            self._retry_at_s = now + self.config.retry_s
            self._set_state("error: cannot write", f"{path}: {type(exc).__name__}: {exc}")
            return False
        self._writer, self._conns, self.split_path = writer, {}, path
        self._split_index += 1
        self._split_opened_s = self._last_chunk_s = now
        self._set_state("recording")
        return True

    def _flush_chunk(self) -> None:
        """Close the pending chunk (when it holds messages) and push it to the disk."""
        self._last_chunk_s = time.monotonic()
        storage = self._writer.storage
        try:
            if storage.chunk.msgs:
                storage.close_chunk()
            storage.bio.flush()
            if self.config.fsync:
                os.fsync(storage.bio.fileno())
        except OSError as exc:
            self._fail(f"flushing {self.split_path}: {exc}")

    def _close_split(self) -> None:
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        try:
            writer.close()
        except OSError as exc:  # the data written so far stays salvageable
            self._fail(f"closing {self.split_path}: {exc}", writer)
            return
        with self._lock:
            self.counts["splits_closed"] += 1
        self._enforce_budget()

    def _fail(self, error: str, writer: Writer | None = None) -> None:
        """A write error (disk full, card gone): abandon the split as it is (salvageable), pause, retry later."""
        writer = writer or self._writer
        self._writer = None
        if writer is not None and writer.storage is not None:
            try:
                writer.storage.bio.close()
            except OSError:
                pass
        self._retry_at_s = time.monotonic() + self.config.retry_s
        self._set_state("error: write failed", error)

    def _check_disk(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            free_mb = shutil.disk_usage(self.root).free / 1e6
        except OSError as exc:
            self._set_state("error: cannot write", f"{self.root}: {type(exc).__name__}: {exc}")
            return
        if free_mb < self.config.min_free_disk_mb:
            if not self.state.startswith("paused"):
                self._close_split()
                self._set_state(f"paused: free disk {free_mb:.0f} MB < min_free_disk_mb "
                                f"{self.config.min_free_disk_mb:g}", f"paused at {free_mb:.0f} MB free")
        elif self.state.startswith("paused"):
            self._set_state("resuming")
        self._enforce_budget()

    def _enforce_budget(self) -> None:
        """Delete the oldest closed splits of any recording under root while the total exceeds the budget."""
        try:
            splits = sorted((p for session in self.root.iterdir() if session.is_dir()
                             for p in session.iterdir() if p.is_dir() and SPLIT_NAME.match(p.name)),
                            key=lambda p: p.stat().st_mtime)
            sizes = {p: _dir_bytes(p) for p in splits}
        except OSError:
            return
        total_mb = sum(sizes.values()) / 1e6
        for path in splits:
            if total_mb <= self.config.disk_budget_mb:
                break
            if path == self.split_path and self._writer is not None:
                continue
            shutil.rmtree(path, ignore_errors=True)
            total_mb -= sizes[path] / 1e6
            with self._lock:
                self.counts["splits_deleted_for_budget"] += 1
