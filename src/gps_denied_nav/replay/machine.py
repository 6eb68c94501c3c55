"""What a figure was measured on: CPU model, cores, load, Python and library threads, for every report."""
from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    """CPU model, logical cores visible to this process, 1/5/15-minute load averages, OS and Python."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cpu_model": cpu_model(), "cores": cores, "load_avg_1_5_15": [round(x, 2) for x in load],
            "machine": platform.machine(), "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version()}
