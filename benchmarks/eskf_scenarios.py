"""The ESKF evaluation scenarios, shared by the synthetic and the rendered-flight Monte Carlo.

One run's sensor data (IMU, baro, visual fixes, truth) is flown five ways (MODES): delayed fusion at
the exposure stamp; fuse-on-arrival (each fix fused as if taken when it arrives, ungated: a latency-
unaware filter that trusts its matcher); 20 % of the fixes replaced by outliers 50-500 m off; the same
fixes with those frames missing; and a fix outage. ``evaluate`` scores an ensemble of runs against
the acceptance criteria of the filter's issue and returns the names of those that fail.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy.stats import chi2

from gps_denied_nav.core.eskf import EskfConfig, ErrorStateKalmanFilter
from gps_denied_nav.core.eskf_diagnostics import MeasurementKind, UpdateStatus
from gps_denied_nav.core.eskf_measurements import visual_fix_measurement
from gps_denied_nav.core.eskf_propagation import ProcessNoise
from gps_denied_nav.core.rotations import quat_conjugate, quat_from_rotvec, quat_multiply, rotvec_from_quat
from gps_denied_nav.sim.imu_model import ImuSamples

MODES = ("delayed", "arrival", "outliers", "dropped", "outage")
OUTLIER_FRACTION, OUTLIER_RANGE_M = 0.2, (50.0, 500.0)
BARO_EVENT, FIX_EVENT, PROBE_EVENT = 0, 1, 2   # also the order of events arriving at the same instant


@dataclass(frozen=True)
class Fix:
    """One visual fix as the matcher reports it, and what replaces it in the outlier scenario."""

    stamp_s: float          # exposure
    pos_en_m: np.ndarray    # [2]
    cov_en_m2: np.ndarray   # [2, 2]
    yaw_rad: float
    yaw_var_rad2: float
    outlier: bool           # replaced in 'outliers', missing in 'dropped'
    bad_en_m: np.ndarray    # [2] the replacement, 50-500 m off the truth


def draw_outlier(rng: np.random.Generator, true_en_m: np.ndarray) -> tuple[bool, np.ndarray]:
    """Whether this fix becomes an outlier (OUTLIER_FRACTION) and where: uniform range, any direction."""
    outlier = bool(rng.random() < OUTLIER_FRACTION)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    return outlier, true_en_m[:2] + rng.uniform(*OUTLIER_RANGE_M) * np.array([np.cos(angle), np.sin(angle)])


@dataclass(frozen=True)
class Truth:
    """True motion at the IMU stamps; the filter's stamp is always one of them."""

    t_s: np.ndarray
    pos_enu_m: np.ndarray
    vel_enu_mps: np.ndarray
    q_world_body: np.ndarray

    def index(self, stamp_s: float) -> int:
        """The sample nearest to stamp_s."""
        i = int(np.clip(np.searchsorted(self.t_s, stamp_s), 1, len(self.t_s) - 1))
        return i if abs(self.t_s[i] - stamp_s) < abs(self.t_s[i - 1] - stamp_s) else i - 1


@dataclass(frozen=True)
class RunData:
    """Everything one run feeds the filter, and the truth it is scored against."""

    imu: ImuSamples
    baro_t_s: np.ndarray
    baro_alt_m: np.ndarray
    baro_sigma_m: float
    fixes: list
    truth: Truth
    x0_error: np.ndarray        # [9]: position, velocity, attitude (rad) errors of the initial state
    baro_offset_m: float        # baro altitude - ENU up at initialisation (the filter's first guess)


@dataclass(frozen=True)
class Scenario:
    """What the runs share: timing of fixes and probes, the filter's tuning and initial uncertainty."""

    latency_s: float
    outage_s: tuple             # (start, end) of the fix outage
    epochs_s: np.ndarray        # probe stamps for NEES and error
    rmse_from_s: float          # RMSE is taken from here (after the initial convergence)
    process_noise: ProcessNoise
    sigma0: dict                # initialize() keyword sigmas for position, velocity, attitude, baro offset
    accel_bias_sigma_mps2: float
    gyro_bias_sigma_radps: float


@dataclass
class Trace:
    """What one filter run produced at the probe epochs and at the end."""

    err_pos: np.ndarray           # [K] horizontal position error (m)
    nees: np.ndarray              # [K, 3]: position, velocity, attitude
    nees_horizontal: np.ndarray   # [K] 2-dof NEES of the horizontal position
    bias_err: np.ndarray          # [6] accel, gyro at the end
    bias_sigma: np.ndarray        # [6]
    outcomes: list                # (is_outlier, UpdateOutcome) per fused fix


def fly(run: RunData, sc: Scenario, mode: str) -> Trace:
    """Fly one of MODES on the run's data."""
    truth, e = run.truth, run.x0_error
    f = ErrorStateKalmanFilter(EskfConfig(process_noise=sc.process_noise))
    t0 = run.imu.t_s[0]
    i0 = truth.index(t0)
    f.initialize(t0, truth.pos_enu_m[i0] + e[:3], truth.vel_enu_mps[i0] + e[3:6],
                 quat_multiply(truth.q_world_body[i0], quat_from_rotvec(e[6:9])),
                 accel_bias_sigma_mps2=sc.accel_bias_sigma_mps2, gyro_bias_sigma_radps=sc.gyro_bias_sigma_radps,
                 baro_offset_m=run.baro_offset_m, **sc.sigma0)
    events = [(s, BARO_EVENT, (s, a)) for s, a in zip(run.baro_t_s, run.baro_alt_m) if s > t0]
    for fix in run.fixes:
        if (mode == "outage" and sc.outage_s[0] <= fix.stamp_s < sc.outage_s[1]) or (mode == "dropped" and fix.outlier):
            continue
        z = fix.bad_en_m if (mode == "outliers" and fix.outlier) else fix.pos_en_m
        model = partial(visual_fix_measurement, pos_enu_m=z, cov_enu_m2=fix.cov_en_m2, yaw_rad=fix.yaw_rad,
                        yaw_var_rad2=fix.yaw_var_rad2)
        told = fix.stamp_s + sc.latency_s if mode == "arrival" else fix.stamp_s
        events.append((fix.stamp_s + sc.latency_s, FIX_EVENT, (told, model, mode != "arrival",
                                                               fix.outlier and mode == "outliers")))
    events += [(s, PROBE_EVENT, None) for s in sc.epochs_s]
    events.sort(key=lambda ev: (ev[0], ev[1]))
    imu, fed, outcomes = run.imu, 1, []
    err_pos, nees, nees_horizontal = [], [], []
    for arrival_s, kind, payload in events:
        upto = int(np.searchsorted(imu.t_s, arrival_s, side="right"))
        if upto > fed:
            f.propagate_batch(imu.t_s[fed:upto], imu.accel_body_mps2[fed:upto], imu.gyro_body_radps[fed:upto])
            fed = upto
        if kind == BARO_EVENT:
            f.update_baro(payload[0], payload[1], run.baro_sigma_m**2)
        elif kind == FIX_EVENT:
            told, model, gated, is_outlier = payload
            outcomes.append((is_outlier, f.update_at(told, MeasurementKind.VISUAL_FIX, model, gated=gated)))
        else:
            i = truth.index(f.stamp_s)
            P = f.covariance
            d_pos = f.pos_enu_m - truth.pos_enu_m[i]
            d_vel = f.vel_enu_mps - truth.vel_enu_mps[i]
            d_att = rotvec_from_quat(quat_multiply(quat_conjugate(f.q_world_body), truth.q_world_body[i]))
            nees.append([d @ np.linalg.solve(P[s, s], d) for d, s in
                         ((d_pos, slice(0, 3)), (d_vel, slice(3, 6)), (d_att, slice(6, 9)))])
            err_pos.append(np.linalg.norm(d_pos[:2]))
            nees_horizontal.append(d_pos[:2] @ np.linalg.solve(P[:2, :2], d_pos[:2]))
    bias_err = np.concatenate([f.accel_bias_mps2 - imu.true_accel_bias[fed - 1],
                               f.gyro_bias_radps - imu.true_gyro_bias[fed - 1]])
    return Trace(np.array(err_pos), np.array(nees), np.array(nees_horizontal), bias_err,
                 np.sqrt(np.diag(f.covariance)[9:15]), outcomes)


def evaluate(traces: dict, sc: Scenario, strict_outliers: bool = True) -> list[str]:
    """Print every criterion for an ensemble {mode: [Trace per run]}; return the names that fail.

    The outlier run's RMSE is held to +10 % of the run with those frames missing (what the outliers
    themselves cost) and, when strict_outliers, also to +10 % of the run with all fixes good. With
    independent (white) fix errors the second is out of reach for any filter: a fifth of the fixes
    carry a fifth of the information, +9 to +19 % RMSE in eval_eskf_monte_carlo.py's sweep.
    """
    failures = []

    def check(name: str, ok: bool, text: str) -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {name}: {text}")
        if not ok:
            failures.append(name)

    nominal = traces["delayed"]
    n = len(nominal)
    anees = np.mean([tr.nees for tr in nominal], axis=0)             # [K, 3]
    lo, hi = chi2.ppf([0.025, 0.975], 3 * n) / n
    print(f"Consistency (delayed fusion): average NEES over {n} runs, 95 % bounds [{lo:.2f}, {hi:.2f}] for 3 dof")
    for i, name in enumerate(("position", "velocity", "attitude")):
        below, above = np.mean(anees[:, i] < lo), np.mean(anees[:, i] > hi)
        # The time-mean is the criterion; per epoch, overconfidence (above the bound) is what an autopilot
        # cannot afford, so it may not last; conservative epochs (below) are reported.
        check(f"NEES {name}", lo <= anees[:, i].mean() <= hi and above <= 0.25,
              f"time-mean {anees[:, i].mean():.2f}; epochs inside bounds {100 * (1 - below - above):.0f} %, "
              f"above (overconfident) {100 * above:.0f} %, below (conservative) {100 * below:.0f} %")
    bias_in = np.array([np.abs(tr.bias_err) <= 3 * tr.bias_sigma for tr in nominal])   # [n, 6]
    sig_ratio = np.mean([tr.bias_sigma for tr in nominal], axis=0) / np.repeat(
        [sc.accel_bias_sigma_mps2, sc.gyro_bias_sigma_radps], 3)
    for i, name in ((slice(0, 3), "accel"), (slice(3, 6), "gyro")):
        check(f"{name} bias within 3σ", bias_in[:, i].mean() >= 0.95,
              f"{100 * bias_in[:, i].mean():.1f} % of run-axes; final σ / initial σ (x, y, z) = "
              + ", ".join(f"{r:.2f}" for r in sig_ratio[i]))

    def rmse(trs):
        keep = sc.epochs_s >= sc.rmse_from_s
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
    print(f"  RMSE with outliers {rmse_outliers:.3f} m; with those frames missing {rmse_dropped:.3f} m; with all "
          f"fixes good {rmse_delayed:.3f} m (missing frames alone: {100 * (rmse_dropped / rmse_delayed - 1):+.1f} %)")
    check("RMSE with outliers vs the frames missing", rmse_outliers <= 1.10 * rmse_dropped,
          f"{100 * (rmse_outliers / rmse_dropped - 1):+.1f} % (what the outliers themselves cost)")
    text = f"{100 * (rmse_outliers / rmse_delayed - 1):+.1f} %"
    if strict_outliers:
        check("RMSE with outliers vs all fixes good", rmse_outliers <= 1.10 * rmse_delayed, text)
    else:
        print(f"  [info] RMSE with outliers vs all fixes good: {text} (not a criterion here: with independent "
              f"fix errors the missing information alone costs {100 * (rmse_dropped / rmse_delayed - 1):+.1f} %)")

    k_end = int(np.searchsorted(sc.epochs_s, sc.outage_s[1] + sc.latency_s)) - 1   # last epoch before fixes return
    end_nees = np.array([tr.nees_horizontal[k_end] for tr in traces["outage"]])
    end_err = np.array([tr.err_pos[k_end] for tr in traces["outage"]])
    inside = np.mean(end_nees <= chi2.ppf(0.997, 2))
    check("outage error inside 3σ", inside >= 0.95,
          f"after {sc.outage_s[1] - sc.outage_s[0]:.0f} s without fixes: horizontal error mean {end_err.mean():.1f} m, "
          f"max {end_err.max():.1f} m; {100 * inside:.0f} % of runs inside the 99.7 % (3σ) ellipse")
    # Re-convergence, counted per run from the arrival of its first fix after the outage (over real imagery
    # the flight may be over forest or a map gap when the outage ends: that delay is the terrain's, not the
    # filter's). Ensemble: runs aligned on that arrival, RMSE per 0.5 s offset until it stays within 1.5x
    # the uninterrupted flight's; per run: until the error first drops below twice the nominal RMSE.
    ens_nominal = float(np.sqrt(np.mean([np.square(tr.err_pos[sc.epochs_s >= sc.outage_s[1]]) for tr in nominal])))
    threshold = 2.0 * rmse_delayed
    offsets = np.arange(0.0, 20.0, 0.5)
    aligned, first_below, waits = [], [], []
    for tr in traces["outage"]:
        back = min((o.stamp_s for _, o in tr.outcomes if o.stamp_s >= sc.outage_s[1]), default=np.inf) + sc.latency_s
        waits.append(back - sc.outage_s[1] - sc.latency_s)
        idx = np.searchsorted(sc.epochs_s, back + offsets)
        ok = idx < len(sc.epochs_s)
        aligned.append(np.where(ok, tr.err_pos[np.minimum(idx, len(sc.epochs_s) - 1)], np.nan))
        below = np.nonzero((sc.epochs_s >= back) & (tr.err_pos <= threshold))[0]
        first_below.append(sc.epochs_s[below[0]] - back if len(below) else np.inf)
    aligned = np.array(aligned)
    seen = np.isfinite(aligned).any(axis=0)          # offsets past the flight's end for every run drop out
    ens = np.sqrt(np.nanmean(np.square(aligned[:, seen]), axis=0))
    above = np.nonzero(ens > 1.5 * ens_nominal)[0]
    offsets = offsets[seen]
    t_ensemble = offsets[above[-1]] + 0.5 if len(above) else 0.0
    check("re-convergence after the outage", t_ensemble < 10.0 and np.percentile(first_below, 95) < 10.0,
          f"ensemble RMSE back within 1.5x nominal {t_ensemble:.1f} s after the first returning fix; per run, "
          f"error first below {threshold:.2f} m after mean {np.mean(first_below):.1f} s, 95th pct "
          f"{np.percentile(first_below, 95):.1f} s, max {np.max(first_below):.1f} s (first fix after the outage: "
          f"mean {np.mean(waits):.1f} s, max {np.max(waits):.1f} s after it ended)")
    return failures


def verdict(traces: dict, sc: Scenario, strict_outliers: bool = True) -> int:
    """``evaluate`` and print the verdict; the process exit status (1 when a criterion fails)."""
    failures = evaluate(traces, sc, strict_outliers)
    print("FAILED: " + ", ".join(failures) if failures else "all criteria met")
    return 1 if failures else 0
