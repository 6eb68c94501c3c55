"""Monte Carlo evaluation of the ESKF on a manoeuvring flight with late visual fixes, baro and IMU noise.

N runs (default 50) of a 120 s figure-eight flight (22-44 m/s, bank up to ~35°, ±15 m altitude
waves) with a BMI088-class IMU at 100 Hz, BMP388-class baro at 10 Hz and visual-like fixes at 2 Hz
(σ 3 m horizontal + heading σ 2°) that arrive 1 s after their exposure stamp. Initial errors are drawn
from the filter's initial covariance and true biases from the sensor model, so NEES is meaningful.
Each run is flown five times on the same noise (eskf_scenarios.py): delayed fusion; fuse-on-arrival;
20 % of the fixes replaced by outliers 50-500 m off; the same fixes with those frames missing; and a
60 s fix outage. Prints the figures and exits non-zero naming every criterion that fails. The fixes'
errors here are independent, so the outlier run is held to the run with those frames missing; the
run with all fixes good is printed beside it (see eskf_scenarios.evaluate, and --fix-sigma-m /
--fix-period-s to see how much information a fifth of the fixes carries in other regimes).

    .venv/bin/python benchmarks/eval_eskf_monte_carlo.py [--runs 50] [--seed 0] [--fix-sigma-m 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))
from eskf_scenarios import MODES, Fix, RunData, Scenario, Truth, draw_outlier, fly, verdict  # noqa: E402
from eskf_truth import figure_eight  # noqa: E402  (analytic truth shared with the unit tests)

from gps_denied_nav.core.baro import pressure_to_altitude_m  # noqa: E402
from gps_denied_nav.sim.imu_model import (BaroNoiseModel, ImuNoiseModel, eskf_process_noise,  # noqa: E402
                                          synthesize_baro, synthesize_imu)

IMU_HZ, BARO_HZ, FIX_PERIOD_S, LATENCY_S, DURATION_S = 100.0, 10.0, 0.5, 1.0, 120.0
FIX_SIGMA_M, YAW_SIGMA_RAD, BARO_SIGMA_M, ORIGIN_ALT_M = 3.0, np.radians(2.0), 0.5, 100.0
IMU, BARO = ImuNoiseModel.bmi088_class(), BaroNoiseModel.bmp388_class()
SCENARIO = Scenario(latency_s=LATENCY_S, outage_s=(40.0, 100.0), epochs_s=np.arange(5.0, DURATION_S, 0.5),
                    rmse_from_s=10.0, process_noise=eskf_process_noise(IMU, BARO),
                    sigma0=dict(pos_sigma_m=np.array([3.0, 3.0, 2.0]), vel_sigma_mps=0.3,
                                att_sigma_rad=np.radians([1.0, 1.0, 3.0]), baro_offset_sigma_m=30.0),
                    accel_bias_sigma_mps2=IMU.accel_bias_init_sigma_mps2,
                    gyro_bias_sigma_radps=IMU.gyro_bias_init_sigma_radps)


def make_run(rng: np.random.Generator, fix_sigma_m: float = FIX_SIGMA_M, fix_period_s: float = FIX_PERIOD_S) -> RunData:
    t = np.arange(0.0, DURATION_S, 1.0 / IMU_HZ)
    truth = figure_eight(t)
    imu = synthesize_imu(t, truth.accel_enu_mps2, truth.q_world_body, truth.omega_body_radps, IMU, rng)
    tb = np.arange(0.05, DURATION_S, 1.0 / BARO_HZ)
    baro = synthesize_baro(tb, figure_eight(tb).pos_enu_m[:, 2] + ORIGIN_ALT_M, BARO, rng)
    stamps = np.arange(fix_period_s, DURATION_S - LATENCY_S, fix_period_s) + rng.uniform(0.0, 1.0 / IMU_HZ)
    at = figure_eight(stamps)
    cov = np.eye(2) * fix_sigma_m**2
    fixes = []
    for k, stamp in enumerate(stamps):
        pos = at.pos_enu_m[k, :2] + rng.normal(size=2) * fix_sigma_m
        outlier, bad = draw_outlier(rng, at.pos_enu_m[k])
        fixes.append(Fix(stamp, pos, cov, at.yaw_rad[k] + rng.normal() * YAW_SIGMA_RAD, YAW_SIGMA_RAD**2,
                         outlier, bad))
    s0 = SCENARIO.sigma0
    x0_error = rng.normal(size=9) * np.concatenate([s0["pos_sigma_m"], np.full(3, s0["vel_sigma_mps"]),
                                                     s0["att_sigma_rad"]])
    return RunData(imu, tb, pressure_to_altitude_m(baro.pressure_pa), BARO_SIGMA_M, fixes,
                   Truth(t, truth.pos_enu_m, truth.vel_enu_mps, truth.q_world_body), x0_error, ORIGIN_ALT_M)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fix-sigma-m", type=float, default=FIX_SIGMA_M, help="horizontal fix noise per axis")
    parser.add_argument("--fix-period-s", type=float, default=FIX_PERIOD_S)
    args = parser.parse_args()
    n = args.runs
    start = time.perf_counter()
    traces = {mode: [] for mode in MODES}
    for run in range(n):
        data = make_run(np.random.default_rng([args.seed, run]), args.fix_sigma_m, args.fix_period_s)
        for mode in traces:
            traces[mode].append(fly(data, SCENARIO, mode))
        if (run + 1) % 10 == 0:
            print(f"  {run + 1}/{n} runs, {time.perf_counter() - start:.0f} s", flush=True)
    print(f"{n} runs x {len(MODES)} scenarios, {DURATION_S:.0f} s flight, IMU {IMU_HZ:.0f} Hz ({IMU.name}), "
          f"baro {BARO_HZ:.0f} Hz, fixes every {args.fix_period_s} s (σ {args.fix_sigma_m} m) with {LATENCY_S} s latency; "
          f"wall {time.perf_counter() - start:.1f} s")
    return verdict(traces, SCENARIO, strict_outliers=False)  # white fixes: see evaluate()


if __name__ == "__main__":
    sys.exit(main())
