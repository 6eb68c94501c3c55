"""Profile a realtime replay with py-spy: where each thread of the one-process graph spends its time.

Starts ``gdn replay --mode realtime`` (one process: every node on an executor thread, plus the two workers),
samples it with py-spy twice (all samples, then only samples holding the GIL) and prints, per thread, the
share of wall time it was busy, the share it held the GIL, and its top frames; ``--svg`` also writes a
flame graph. This is how the README's profile finding was made.

    .venv/bin/python benchmarks/profile_replay.py --clip out/demo/clip.mcap --corpus out/demo/corpus \
        [--seconds 20] [--svg out/profile.svg]
"""
from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY_SPY = str(Path(sys.executable).with_name("py-spy")) if Path(sys.executable).with_name("py-spy").exists() \
    else (shutil.which("py-spy") or "py-spy")  # pinned in requirements.txt, installed beside this interpreter


def record(pid: int, seconds: float, out: Path, gil: bool, rate_hz: int = 100) -> dict[str, collections.Counter]:
    """py-spy raw samples of ``pid`` -> {thread name: Counter(top 3 frames -> samples)}."""
    cmd = [PY_SPY, "record", "--pid", str(pid), "-d", str(int(seconds)), "-r",
           str(rate_hz), "-f", "raw", "-o", str(out), "--threads", "--nonblocking"] + (["--gil"] if gil else [])
    subprocess.run(cmd, check=True, capture_output=True)
    threads: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in out.read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        frames = stack.split(";")
        name = frames[0].split(":")[-1].strip() if ":" in frames[0] else frames[0]
        top = " < ".join(f.split(" (")[0] for f in frames[-1:-4:-1])
        threads[name][top] += int(count)
    return threads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each sampling window")
    parser.add_argument("--svg", type=Path, help="also write a flame graph of the busy samples here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gdn_profile_"))
    gdn = Path(sys.executable).with_name("gdn")
    replay = subprocess.Popen([str(gdn), "replay", args.clip, "--corpus", args.corpus, "--out", str(work / "replay"),
                               "--mode", "realtime"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(25.0)  # start-up and the filter's initialisation: profile the steady state
        samples = args.seconds * 100
        busy = record(replay.pid, args.seconds, work / "busy.txt", gil=False)
        holding = record(replay.pid, args.seconds, work / "gil.txt", gil=True)
        if args.svg:
            subprocess.run([PY_SPY, "record", "--pid", str(replay.pid), "-d", "10",
                            "-o", str(args.svg), "--threads", "--nonblocking"], check=True, capture_output=True)
    finally:
        replay.kill()
        replay.wait()
    gil_total = sum(sum(c.values()) for c in holding.values())
    print(f"GIL held {100 * gil_total / samples:.0f} % of the time (py-spy --gil samples / wall samples)")
    print(f"{'thread':18s} {'busy %':>7s} {'GIL %':>6s}  top frames (busy)")
    for name in sorted(busy, key=lambda n: -sum(busy[n].values())):
        b, g = sum(busy[name].values()), sum(holding.get(name, {}).values())
        top = "; ".join(f"{frame} ({n})" for frame, n in busy[name].most_common(2))
        print(f"{name:18s} {100 * b / samples:7.0f} {100 * g / samples:6.0f}  {top}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
