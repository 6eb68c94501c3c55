"""ESKF throughput on one core: IMU propagation rate, and the cost of a late fix's rollback and replay.

Prints rates and ratios, asserts nothing (house rule: benchmarks never assert wall-clock times).

    .venv/bin/python benchmarks/bench_eskf.py
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")   # one core, before numpy loads its BLAS

import copy  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from gps_denied_nav.core.eskf import ErrorStateKalmanFilter  # noqa: E402
from gps_denied_nav.core.rotations import quat_from_euler  # noqa: E402

IMU_HZ = 400.0
TARGET_HZ = 5000.0


def _samples(n: int, rng: np.random.Generator):
    t = np.arange(1, n + 1) / IMU_HZ
    accel = np.array([0.3, -0.2, 9.81]) + rng.normal(size=(n, 3)) * 0.05
    gyro = np.array([0.01, -0.02, 0.1]) + rng.normal(size=(n, 3)) * 0.005
    return t, accel, gyro


def _fresh_filter() -> ErrorStateKalmanFilter:
    f = ErrorStateKalmanFilter()
    f.initialize(0.0, np.array([0.0, 0.0, 120.0]), np.array([20.0, 0.0, 0.0]), quat_from_euler(0.05, 0.0, 0.3))
    return f


def bench_propagation(n: int = 8000) -> None:
    t, accel, gyro = _samples(n, np.random.default_rng(0))
    f = _fresh_filter()
    start = time.perf_counter()
    for k in range(n):
        f.propagate(t[k], accel[k], gyro[k])
    single_hz = n / (time.perf_counter() - start)
    print(f"propagate(), one sample per call:      {single_hz:8.0f} Hz  ({single_hz / TARGET_HZ:.1f}x the "
          f"{TARGET_HZ:.0f} Hz target, {single_hz / IMU_HZ:.0f}x a {IMU_HZ:.0f} Hz IMU)")
    for chunk in (8, 40):
        f = _fresh_filter()
        start = time.perf_counter()
        for k in range(0, n, chunk):
            f.propagate_batch(t[k:k + chunk], accel[k:k + chunk], gyro[k:k + chunk])
        print(f"propagate_batch(), {chunk:2d} samples per call: {n / (time.perf_counter() - start):8.0f} Hz")


def bench_delayed_update(repeats: int = 30, baro_hz: float = 0.0) -> float:
    """Mean seconds of update_visual_fix() for a fix stamped 1 s before the newest IMU sample."""
    rng = np.random.default_rng(1)
    t, accel, gyro = _samples(int(3 * IMU_HZ), rng)
    f = _fresh_filter()
    baro_period = int(IMU_HZ / baro_hz) if baro_hz else 0
    for k in range(len(t)):
        f.propagate(t[k], accel[k], gyro[k])
        if baro_period and k % baro_period == 0:
            f.update_baro(t[k], 200.0 + rng.normal() * 0.3, 0.25)
    elapsed = 0.0
    for _ in range(repeats):
        g = copy.deepcopy(f)   # each repeat replays the same window, not the previous repeats' fixes
        start = time.perf_counter()
        g.update_visual_fix(g.stamp_s - 1.0, g.pos_enu_m[:2] + rng.normal(size=2), np.eye(2) * 9.0)
        elapsed += time.perf_counter() - start
    return elapsed / repeats


def bench_on_time_update(repeats: int = 200) -> float:
    f = _fresh_filter()
    t, accel, gyro = _samples(400, np.random.default_rng(2))
    f.propagate_batch(t, accel, gyro)
    start = time.perf_counter()
    for _ in range(repeats):
        f.update_visual_fix(f.stamp_s, f.pos_enu_m[:2], np.eye(2) * 9.0)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    print(f"ESKF benchmark, IMU at {IMU_HZ:.0f} Hz, BLAS threads: {os.environ['OMP_NUM_THREADS']}")
    bench_propagation()
    on_time = bench_on_time_update()
    late = bench_delayed_update()
    late_baro = bench_delayed_update(baro_hz=25.0)
    print(f"on-time visual fix update:             {1e3 * on_time:8.3f} ms")
    print(f"fix 1 s late, replay 400 IMU samples:  {1e3 * late:8.3f} ms  ({late / on_time:.0f}x on-time, "
          f"{100 * late * 2:.2f} % of a core at 2 fixes/s)")
    print(f"  same with 25 Hz baro in the window:  {1e3 * late_baro:8.3f} ms  (25 baro updates replayed)")


if __name__ == "__main__":
    main()
