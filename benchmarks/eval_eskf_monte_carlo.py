"""Monte Carlo evaluation of the ESKF on a manoeuvring flight with late visual fixes, baro and IMU noise.

N runs (default 50) of a 120 s figure-eight flight (22-44 m/s, bank up to ~35°, ±15 m altitude
waves) with a BMI088-class IMU at 100 Hz, BMP388-class baro at 10 Hz and visual-like fixes at 2 Hz
(σ 3 m horizontal + heading σ 2°) that arrive 1 s after their exposure stamp. Initial errors are drawn
from the filter's initial covariance and true biases from the sensor model, so NEES is meaningful.
Each run is flown five times on the same noise: delayed fusion; fuse-on-arrival (each fix fused as if
taken when it arrives, ungated: a latency-unaware filter that trusts its matcher); 20 % of the fixes
replaced by outliers 50-500 m off; the same fixes with those frames simply missing (the clean
reference for the outlier run); and a 60 s fix outage. Prints the figures and exits non-zero naming
every criterion that fails.

    .venv/bin/python benchmarks/eval_eskf_monte_carlo.py [--runs 50] [--seed 0]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from scipy.stats import chi2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))
from eskf_truth import figure_eight  # noqa: E402  (analytic truth shared with the unit tests)

from gps_denied_nav.core.baro import pressure_to_altitude_m  # noqa: E402
from gps_denied_nav.core.eskf import EskfConfig, ErrorStateKalmanFilter  # noqa: E402
from gps_denied_nav.core.eskf_diagnostics import MeasurementKind, UpdateStatus  # noqa: E402
from gps_denied_nav.core.eskf_measurements import visual_fix_measurement  # noqa: E402
from gps_denied_nav.core.rotations import (quat_conjugate, quat_from_rotvec, quat_multiply,  # noqa: E402
                                           rotvec_from_quat)
from gps_denied_nav.sim.imu_model import (BaroNoiseModel, ImuNoiseModel, eskf_process_noise,  # noqa: E402
                                          synthesize_baro, synthesize_imu)

IMU_HZ, BARO_HZ, FIX_PERIOD_S, LATENCY_S, DURATION_S = 100.0, 10.0, 0.5, 1.0, 120.0
FIX_SIGMA_M, YAW_SIGMA_RAD, BARO_SIGMA_M, ORIGIN_ALT_M = 3.0, np.radians(2.0), 0.5, 100.0
OUTAGE_S = (40.0, 100.0)
OUTLIER_FRACTION, OUTLIER_RANGE_M = 0.2, (50.0, 500.0)
SIGMA0 = dict(pos_sigma_m=np.array([3.0, 3.0, 2.0]), vel_sigma_mps=0.3,
              att_sigma_rad=np.radians([1.0, 1.0, 3.0]), baro_offset_sigma_m=30.0)
EPOCHS_S = np.arange(5.0, DURATION_S, 0.5)
IMU, BARO = ImuNoiseModel.bmi088_class(), BaroNoiseModel.bmp388_class()


@dataclass(frozen=True)
class Flight:
    """One run's sensor data: IMU samples, baro altitudes, fixes (stamp, EN position, yaw, is_outlier)."""

    imu: object
    baro_t_s: np.ndarray
    baro_alt_m: np.ndarray
    fixes: list
    x0_error: np.ndarray  # [9]: position, velocity, attitude (rad) initial errors


@dataclass
class Trace:
    """What one filter run produced at the evaluation epochs and at the end."""

    err_pos: np.ndarray       # [K] horizontal position error (m)
    nees: np.ndarray          # [K, 3]: position, velocity, attitude
    nees_horizontal: np.ndarray   # [K] 2-dof NEES of the horizontal position
    bias_err: np.ndarray      # [6] accel, gyro at the end
    bias_sigma: np.ndarray    # [6]
    outcomes: list


def make_flight(rng: np.random.Generator) -> Flight:
    t = np.arange(0.0, DURATION_S, 1.0 / IMU_HZ)
    truth = figure_eight(t)
    imu = synthesize_imu(t, truth.accel_enu_mps2, truth.q_world_body, truth.omega_body_radps, IMU, rng)
    tb = np.arange(0.05, DURATION_S, 1.0 / BARO_HZ)
    baro = synthesize_baro(tb, figure_eight(tb).pos_enu_m[:, 2] + ORIGIN_ALT_M, BARO, rng)
    stamps = np.arange(FIX_PERIOD_S, DURATION_S - LATENCY_S, FIX_PERIOD_S) + rng.uniform(0.0, 1.0 / IMU_HZ)
    at = figure_eight(stamps)
    fixes = []
    for k, stamp in enumerate(stamps):
        pos = at.pos_enu_m[k, :2] + rng.normal(size=2) * FIX_SIGMA_M
        outlier = rng.random() < OUTLIER_FRACTION
        angle = rng.uniform(0.0, 2.0 * np.pi)
        bad = at.pos_enu_m[k, :2] + rng.uniform(*OUTLIER_RANGE_M) * np.array([np.cos(angle), np.sin(angle)])
        fixes.append((stamp, pos, at.yaw_rad[k] + rng.normal() * YAW_SIGMA_RAD, outlier, bad))
    x0_error = rng.normal(size=9) * np.concatenate([SIGMA0["pos_sigma_m"], np.full(3, SIGMA0["vel_sigma_mps"]),
                                                     SIGMA0["att_sigma_rad"]])
    return Flight(imu, tb, pressure_to_altitude_m(baro.pressure_pa), fixes, x0_error)


MODES = ("delayed", "arrival", "outliers", "dropped", "outage")
BARO_EVENT, FIX_EVENT, PROBE_EVENT = 0, 1, 2   # also the order of events arriving at the same instant


@dataclass(frozen=True)
class FixArrival:
    stamp_s: float        # the stamp the filter is told (exposure, or arrival for 'arrival')
    model: partial        # visual_fix_measurement bound to the fix
    gated: bool
    is_outlier: bool


def fly(flight: Flight, mode: str) -> Trace:
    """Fly one scenario of MODES on the flight's data."""
    truth0 = figure_eight(np.array([0.0]))
    f = ErrorStateKalmanFilter(EskfConfig(process_noise=eskf_process_noise(IMU, BARO)))
    e = flight.x0_error
    f.initialize(0.0, truth0.pos_enu_m[0] + e[:3], truth0.vel_enu_mps[0] + e[3:6],
                 quat_multiply(truth0.q_world_body[0], quat_from_rotvec(e[6:9])),
                 accel_bias_sigma_mps2=IMU.accel_bias_init_sigma_mps2,
                 gyro_bias_sigma_radps=IMU.gyro_bias_init_sigma_radps,
                 baro_offset_m=ORIGIN_ALT_M, **SIGMA0)
    events = [(s, BARO_EVENT, (s, a)) for s, a in zip(flight.baro_t_s, flight.baro_alt_m)]
    for stamp, pos, yaw, outlier, bad in flight.fixes:
        if (mode == "outage" and OUTAGE_S[0] <= stamp < OUTAGE_S[1]) or (mode == "dropped" and outlier):
            continue
        z = bad if (mode == "outliers" and outlier) else pos
        model = partial(visual_fix_measurement, pos_enu_m=z, cov_enu_m2=np.eye(2) * FIX_SIGMA_M**2, yaw_rad=yaw,
                        yaw_var_rad2=YAW_SIGMA_RAD**2)
        told = stamp + LATENCY_S if mode == "arrival" else stamp
        arrival = FixArrival(told, model, gated=mode != "arrival", is_outlier=outlier and mode == "outliers")
        events.append((stamp + LATENCY_S, FIX_EVENT, arrival))
    events += [(s, PROBE_EVENT, None) for s in EPOCHS_S]
    events.sort(key=lambda ev: (ev[0], ev[1]))
    imu, fed, outcomes = flight.imu, 0, []
    err_pos, nees, nees_horizontal = [], [], []
    for arrival_s, kind, payload in events:
        upto = int(np.searchsorted(imu.t_s, arrival_s, side="right"))
        if upto > fed:
            f.propagate_batch(imu.t_s[fed:upto], imu.accel_body_mps2[fed:upto], imu.gyro_body_radps[fed:upto])
            fed = upto
        if kind == BARO_EVENT:
            f.update_baro(payload[0], payload[1], BARO_SIGMA_M**2)
        elif kind == FIX_EVENT:
            outcome = f.update_at(payload.stamp_s, MeasurementKind.VISUAL_FIX, payload.model, gated=payload.gated)
            outcomes.append((payload.is_outlier, outcome))
        else:
            truth = figure_eight(np.array([f.stamp_s]))
            P = f.covariance
            d_pos = f.pos_enu_m - truth.pos_enu_m[0]
            d_vel = f.vel_enu_mps - truth.vel_enu_mps[0]
            d_att = rotvec_from_quat(quat_multiply(quat_conjugate(f.q_world_body), truth.q_world_body[0]))
            nees.append([d @ np.linalg.solve(P[s, s], d) for d, s in
                         ((d_pos, slice(0, 3)), (d_vel, slice(3, 6)), (d_att, slice(6, 9)))])
            err_pos.append(np.linalg.norm(d_pos[:2]))
            nees_horizontal.append(d_pos[:2] @ np.linalg.solve(P[:2, :2], d_pos[:2]))
    bias_err = np.concatenate([f.accel_bias_mps2 - imu.true_accel_bias[-1],
                               f.gyro_bias_radps - imu.true_gyro_bias[-1]])
    return Trace(np.array(err_pos), np.array(nees), np.array(nees_horizontal), bias_err,
                 np.sqrt(np.diag(f.covariance)[9:15]), outcomes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n = args.runs
    start = time.perf_counter()
    traces = {mode: [] for mode in MODES}
    for run in range(n):
        flight = make_flight(np.random.default_rng([args.seed, run]))
        for mode in traces:
            traces[mode].append(fly(flight, mode))
        if (run + 1) % 10 == 0:
            print(f"  {run + 1}/{n} runs, {time.perf_counter() - start:.0f} s", flush=True)
    wall_s = time.perf_counter() - start
    print(f"{n} runs x {len(MODES)} scenarios, {DURATION_S:.0f} s flight, IMU {IMU_HZ:.0f} Hz ({IMU.name}), "
          f"baro {BARO_HZ:.0f} Hz, "
          f"fixes every {FIX_PERIOD_S} s with {LATENCY_S} s latency; wall {wall_s:.1f} s")
    failures = []

    def check(name: str, ok: bool, text: str) -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {name}: {text}")
        if not ok:
            failures.append(name)

    nominal = traces["delayed"]
    anees = np.mean([tr.nees for tr in nominal], axis=0)             # [K, 3]
    lo, hi = chi2.ppf([0.025, 0.975], 3 * n) / n
    print(f"Consistency (delayed fusion): average NEES over {n} runs, 95 % bounds [{lo:.2f}, {hi:.2f}] for 3 dof")
    for i, name in enumerate(("position", "velocity", "attitude")):
        inside = np.mean((anees[:, i] >= lo) & (anees[:, i] <= hi))
        check(f"NEES {name}", lo <= anees[:, i].mean() <= hi and inside >= 0.75,
              f"time-mean {anees[:, i].mean():.2f}, epochs inside bounds {100 * inside:.0f} %")
    bias_in = np.array([np.abs(tr.bias_err) <= 3 * tr.bias_sigma for tr in nominal])   # [n, 6]
    sig_ratio = np.mean([tr.bias_sigma for tr in nominal], axis=0) / np.repeat(
        [IMU.accel_bias_init_sigma_mps2, IMU.gyro_bias_init_sigma_radps], 3)
    for i, name in ((slice(0, 3), "accel"), (slice(3, 6), "gyro")):
        check(f"{name} bias within 3σ", bias_in[:, i].mean() >= 0.95,
              f"{100 * bias_in[:, i].mean():.1f} % of run-axes; final σ / initial σ (x, y, z) = "
              + ", ".join(f"{r:.2f}" for r in sig_ratio[i]))

    def rmse(trs, t0=10.0):
        keep = EPOCHS_S >= t0
        return float(np.sqrt(np.mean([np.square(tr.err_pos[keep]) for tr in trs])))

    rmse_delayed, rmse_arrival = rmse(nominal), rmse(traces["arrival"])
    gain = 1.0 - rmse_delayed / rmse_arrival
    check("delayed vs on-arrival", gain >= 0.30,
          f"horizontal RMSE {rmse_delayed:.2f} m (delayed, rollback) vs {rmse_arrival:.2f} m (fused on arrival): "
          f"gain {100 * gain:.0f} %")

    flagged = [(is_out, o.status) for tr in traces["outliers"] for is_out, o in tr.outcomes]
    n_out = sum(is_out for is_out, _ in flagged)
    rejected = sum(is_out and s is UpdateStatus.REJECTED for is_out, s in flagged)
    false_rej = sum((not is_out) and s is UpdateStatus.REJECTED for is_out, s in flagged) / (len(flagged) - n_out)
    check("outlier rejection", rejected / n_out >= 0.95,
          f"{rejected}/{n_out} outliers rejected ({100 * rejected / n_out:.1f} %), "
          f"good fixes rejected {100 * false_rej:.2f} %")
    rmse_outliers, rmse_dropped = rmse(traces["outliers"]), rmse(traces["dropped"])
    check("RMSE with outliers", rmse_outliers <= 1.10 * rmse_dropped,
          f"{rmse_outliers:.2f} m vs {rmse_dropped:.2f} m with the outlier frames missing "
          f"({100 * (rmse_outliers / rmse_dropped - 1):+.1f} %); vs all fixes good {rmse_delayed:.2f} m "
          f"({100 * (rmse_outliers / rmse_delayed - 1):+.1f} %, the information lost with 20 % of the fixes)")

    k_end = int(np.searchsorted(EPOCHS_S, OUTAGE_S[1] + LATENCY_S)) - 1     # last epoch before fixes return
    end_nees = np.array([tr.nees_horizontal[k_end] for tr in traces["outage"]])
    end_err = np.array([tr.err_pos[k_end] for tr in traces["outage"]])
    inside = np.mean(end_nees <= chi2.ppf(0.997, 2))
    check("outage error inside 3σ", inside >= 0.95,
          f"after {OUTAGE_S[1] - OUTAGE_S[0]:.0f} s without fixes: horizontal error mean {end_err.mean():.1f} m, "
          f"max {end_err.max():.1f} m; {100 * inside:.0f} % of runs inside the 99.7 % (3σ) ellipse")
    # Re-convergence: from the first returning fix's arrival until the ensemble RMSE (over runs, per
    # epoch) is back within 1.5x the uninterrupted flight's at the same epochs, and stays there.
    t_back = OUTAGE_S[1] + LATENCY_S
    after = EPOCHS_S >= t_back
    ens_outage = np.sqrt(np.mean([np.square(tr.err_pos) for tr in traces["outage"]], axis=0))
    ens_nominal = np.sqrt(np.mean([np.square(tr.err_pos) for tr in nominal], axis=0))
    above = np.nonzero(after & (ens_outage > 1.5 * ens_nominal))[0]
    t_ensemble = (EPOCHS_S[above[-1]] + 0.5 - t_back) if len(above) else 0.0
    threshold = 2.0 * rmse_delayed
    first_below = []
    for tr in traces["outage"]:
        below = np.nonzero(after & (tr.err_pos <= threshold))[0]
        first_below.append(EPOCHS_S[below[0]] - t_back if len(below) else np.inf)
    check("re-convergence after the outage", t_ensemble < 10.0 and np.percentile(first_below, 95) < 10.0,
          f"ensemble RMSE back within 1.5x nominal after {t_ensemble:.1f} s; per run, error first below "
          f"{threshold:.1f} m after mean {np.mean(first_below):.1f} s, "
          f"95th pct {np.percentile(first_below, 95):.1f} s, "
          f"max {np.max(first_below):.1f} s")
    if failures:
        print("FAILED: " + ", ".join(failures))
        return 1
    print("all criteria met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
