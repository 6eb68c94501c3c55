"""Per-frame stage timing: the steps one stage spends on one camera frame, and what they add up to.

Each stage node times its work on a frame with a ``FrameTimer`` (queue wait, attitude wait, rectification,
forward pass, search, matching, fusion...) and publishes one record per frame. A replay joins the records
of one frame by its exposure stamp: per stage and step the p50/p95, the delivery delay between stages
(the next stage's receive time minus the previous one's done time: DDS, executor and GIL), and how each
frame ended. Records carry wall-clock times (``time.time()``) so that stages in different processes of
one machine compare; step durations come from ``perf_counter`` differences.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

import numpy as np

STAGES = ("inference", "retrieval", "matching", "eskf")  # the order a frame flows through


class FrameTimer:
    """Steps of one stage's work on one frame. Create it when the frame's input arrives; ``mark(step)``
    closes a step (the time since the previous mark, or since arrival for the first)."""

    def __init__(self) -> None:
        self.received_wall_s = time.time()
        self._perf0 = self._last = time.perf_counter()
        self.steps: dict[str, float] = {}  # step -> ms, in the order they happened
        self._done: float | None = None

    def mark(self, step: str) -> float:
        now = time.perf_counter()
        ms = 1e3 * (now - self._last)
        self.steps[step] = self.steps.get(step, 0.0) + ms
        self._last = now
        return ms

    def mark_parts(self, parts: dict[str, float], rest: str) -> float:
        """Close a step that a callee timed in parts (ms by name); what the parts leave out goes under
        ``rest``. Returns the whole step's ms."""
        total = self.mark(rest)
        self.steps[rest] -= sum(parts.values())
        for step, ms in parts.items():
            self.steps[step] = self.steps.get(step, 0.0) + ms
        return total

    def done(self) -> None:
        """The frame has left this stage (its output is published); later marks are side work (views)."""
        self._done = self._last

    @property
    def done_wall_s(self) -> float:
        """Wall time of ``done()``, or of the last mark without one."""
        return self.received_wall_s + ((self._last if self._done is None else self._done) - self._perf0)


class RollingTimings:
    """p50/p95 of each step over a node's last ``window`` frames, for /diagnostics."""

    def __init__(self, window: int = 50) -> None:
        self._values: dict[str, deque] = defaultdict(lambda: deque(maxlen=window))
        # A node's worker adds while its diagnostics timer summarises: a step seen for the first time changed
        # the dict under the iteration ("dictionary changed size"), and the exception stopped the executor.
        self._lock = threading.Lock()

    def add(self, steps: dict[str, float]) -> None:
        with self._lock:
            for step, ms in steps.items():
                self._values[step].append(ms)

    def summary(self) -> dict[str, float]:
        with self._lock:
            snapshot = [(step, np.asarray(values)) for step, values in self._values.items()]
        out = {}
        for step, values in snapshot:
            p50, p95 = np.percentile(values, [50, 95])
            out[f"{step}_ms_p50"], out[f"{step}_ms_p95"] = float(p50), float(p95)
        return out


@dataclass(frozen=True)
class TimingRecord:
    """One stage's record of one frame (the StageTiming message, as plain values)."""

    stamp_s: float  # exposure stamp of the frame, on the clip's clock
    stage: str
    outcome: str
    forwarded: bool
    received_wall_s: float
    done_wall_s: float
    steps_ms: dict = field(default_factory=dict)


def _stats(values) -> dict:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if v.size == 0:
        return {"n": 0, "p50": None, "p95": None, "mean": None}
    p50, p95 = np.percentile(v, [50, 95])
    return {"n": int(v.size), "p50": float(p50), "p95": float(p95), "mean": float(v.mean())}


def summarize_timing(records: list[TimingRecord], image_published_wall_s: dict[float, float] | None = None) -> dict:
    """Per-stage step statistics, delivery delays between consecutive stages and frame outcomes.

    image_published_wall_s: exposure stamp -> wall time the player published the image; it gives the
    delivery into the first stage. Returns a JSON-ready dict (ms; None where nothing was measured).
    """
    by_frame: dict[float, dict[str, TimingRecord]] = defaultdict(dict)
    for r in records:
        by_frame[round(r.stamp_s, 6)][r.stage] = r
    stages = {}
    for stage in STAGES:
        mine = [r for r in records if r.stage == stage]
        # in the order of the record with the most steps (an early-ended frame lacks the later ones)
        step_names = list(dict.fromkeys(k for r in sorted(mine, key=lambda r: -len(r.steps_ms)) for k in r.steps_ms))
        stages[stage] = {
            "frames": len(mine),
            "outcomes": dict(Counter(r.outcome for r in mine)),
            "steps_ms": {s: _stats(r.steps_ms[s] for r in mine if s in r.steps_ms) for s in step_names},
            "total_ms": _stats(1e3 * (r.done_wall_s - r.received_wall_s) for r in mine),
        }
    delivery = {}
    published = {round(k, 6): v for k, v in (image_published_wall_s or {}).items()}
    pairs = [("image", STAGES[0])] + list(zip(STAGES[:-1], STAGES[1:]))
    for src, dst in pairs:
        delays = []
        for stamp, frame in by_frame.items():
            if dst not in frame:
                continue
            sent = published.get(stamp) if src == "image" else (frame[src].done_wall_s if src in frame else None)
            if sent is not None:
                delays.append(1e3 * (frame[dst].received_wall_s - sent))
        delivery[f"{src}->{dst}"] = _stats(delays)
    ends = Counter()
    for frame in by_frame.values():
        last = next((frame[s] for s in reversed(STAGES) if s in frame), None)
        ends[f"{last.stage}: {last.outcome}"] += 1
    return {"stages": stages, "delivery_ms": delivery, "frame_ends": dict(ends.most_common())}


def timing_table(summary: dict) -> str:
    """The summary as an aligned text table (one row per stage step, then deliveries), for logs and docs."""
    rows = [("stage", "step", "p50 ms", "p95 ms", "n")]
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    for stage, s in summary["stages"].items():
        for step, st in s["steps_ms"].items():
            rows.append((stage, step, fmt(st["p50"]), fmt(st["p95"]), str(st["n"])))
        st = s["total_ms"]
        rows.append((stage, "(total)", fmt(st["p50"]), fmt(st["p95"]), str(st["n"])))
    for pair, st in summary["delivery_ms"].items():
        rows.append(("delivery", pair, fmt(st["p50"]), fmt(st["p95"]), str(st["n"])))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)
