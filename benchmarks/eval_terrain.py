"""Monte Carlo of the whole visual chain and the filter over terrain that is not at 0 m, on real imagery.

Three corpora of the real Turku satellite mosaic (../shared/data/turku_satellite) stand on three grounds:
flat 20 m and flat 300 m above the WGS84 ellipsoid (``--ground-alt-m``) and a sloped DEM (a 5 % grade and
hills around 150 m, written as a GeoTIFF and provisioned with ``--dem``). Over each, ``--flights`` 120 s surveys
at 120 m above the mean ground are rendered (ray-cast over the sloped one) and every 2 Hz frame goes through
the graph's visual stages as the nodes run them (rendered_fixes.py: rectification at the height above the
terrain, NetVLAD, FAISS within the prior radius, SIFT matching with each keypoint on the terrain); the fixes
are cached. Each Monte Carlo run then takes one flight's fixes with fresh IMU, baro and GNSS noise, a
BMI088-class or a consumer MEMS IMU (the filter configured for it, params/imu_consumer_mems.yaml), GNSS for
the first 10 s only and a 60 s camera outage early (20-80 s) or late (55-115 s), and feeds them to the real
``EskfNode`` (terrain_runs.py). Scored against the truth in the filter's own map frame:

- divergence: the filter restarted, its horizontal error left its own 99.99 % ellipse (NEES > 18.4) by more
  than 10 m, or it ended more than 5 m off although fixes had been flowing for RECONVERGE_S (a run that ends
  inside a fix-less window, e.g. the sloped flights whose last 60 s have no map under them, is held to the
  ellipse, not to 5 m). A filter that declares itself lost when its covariance
  outgrows ``max_position_cov_trace_m2`` (a long dead-reckoning gap) is honest, not diverged: counted apart;
- vertical RMSE; horizontal RMSE from 15 s on: outside the outage; also outside every other fix gap (ground
  with no map under it, the time from the end of GNSS to the first fix, frames the matcher refused in a row),
  re-convergence after them included; and where fixes flow and have settled (not within RECONVERGE_S after a
  gap: re-convergence is scored on its own, the time from the first returning fix until the error is below 2 m);
- while the filter is on its own: the share of probes whose horizontal error lies inside its 3σ ellipse;
- 3-D position NEES averaged over the runs at each probe, against the 95 % bounds for that many runs.

The frames are rendered from the very imagery the corpora hold (no season or sensor change) and the
terrain is known exactly: an upper bound for real flights. First run ~3 h on 2 cores (rendering and
matching 3 x 5 flights ~40 min; each filter run, 120 s of 200 Hz IMU through the node's callbacks, ~50 s on one
core: 300 runs ~2 h); fixes and runs are cached under --cache, so a later run re-scores in seconds.

    .venv/bin/python benchmarks/eval_terrain.py [--runs-per-terrain 100] [--flights 5] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from scipy.stats import chi2

import rendered_fixes
import terrain_runs
from readme_blocks import sync_readme
from gps_denied_nav.core.corpus import Corpus
from gps_denied_nav.core.corpus_build import ProvisionConfig, provision
from gps_denied_nav.core.descriptor import DescriptorExtractor
from gps_denied_nav.core.map_raster import load_geotiff
from gps_denied_nav.nodes.params import params_block
from gps_denied_nav.replay.machine import machine_info
from gps_denied_nav.replay.session import DEFAULT_PARAMS, print_progress
from gps_denied_nav.sim.flight import FlightConfig, simulate_flight
from gps_denied_nav.sim.import_tiles import mosaic_tiles_to_geotiff
from gps_denied_nav.sim.imu_model import ImuNoiseModel
from gps_denied_nav.sim.terrain_world import sloped_terrain, write_dem_geotiff
from gps_denied_nav.sim.world import SIMULATED_MAP_ERRORS

ROOT = Path(__file__).resolve().parents[1]
TURKU = ROOT.parent / "shared" / "data" / "turku_satellite"
TERRAINS = ("flat_20m", "flat_300m", "sloped")
IMU_CLASSES = {"bmi088": ImuNoiseModel.bmi088_class, "consumer_mems": ImuNoiseModel.consumer_mems}
OUTAGES_S = {"early": (20.0, 80.0), "late": (55.0, 115.0)}
DURATION_S, GNSS_S, SCORE_FROM_S = 120.0, 10.0, 15.0
GAP_S = 5.0  # fixes further apart than this leave the filter on its own (the outage, or a gap in the map)
RECONVERGE_S = 3.0  # after a fix-less window, re-convergence is scored apart for this long
INCONSISTENT_NEES, INCONSISTENT_M, RECOVERED_M = 18.4, 10.0, 5.0  # chi-square(2) 99.99 %
IMU_OVERLAYS = {"bmi088": {}, "consumer_mems": params_block(yaml.safe_load(
    (ROOT / "params" / "imu_consumer_mems.yaml").read_text()), "eskf_node")}


def prepare_corpora(cache: Path) -> dict:
    """{terrain: (raster, corpus_dir, base FlightConfig kwargs)}, provisioning what is not cached."""
    tif, dem = cache / "turku.tif", cache / "sloped_dem.tif"
    if not tif.exists():
        mosaic_tiles_to_geotiff(TURKU / "map" / "map.csv", tif)
    raster = load_geotiff(tif, gsd_m=0.25)
    sloped = sloped_terrain(raster, mean_alt_m=150.0, grade=0.05, hill_m=12.0, seed=1)
    if not dem.exists():
        write_dem_geotiff(sloped, raster.frame, dem)
    ground = {"flat_20m": dict(ground_alt_m=20.0), "flat_300m": dict(ground_alt_m=300.0), "sloped": dict(dem_path=str(dem))}
    flights = {"flat_20m": dict(ground_up_m=20.0 - raster.frame.origin_alt_m),
               "flat_300m": dict(ground_up_m=300.0 - raster.frame.origin_alt_m),
               "sloped": dict(terrain=sloped, ground_up_m=float(np.mean(sloped.heights_m)) - raster.frame.origin_alt_m)}
    out = {}
    for name in TERRAINS:
        corpus = cache / f"corpus_{name}"
        if not (corpus / "manifest.json").exists():
            provision(raster, corpus, ProvisionConfig(**ground[name], **SIMULATED_MAP_ERRORS),
                      progress=lambda s, d, t, n=name: print_progress(f"provision {n}: {s}", d, t))
        out[name] = (raster, corpus, flights[name])
    return out


def flight_config(base: dict, seed: int, **kwargs) -> FlightConfig:
    return FlightConfig(seed=seed, duration_s=DURATION_S, gnss_s=GNSS_S, **base, **kwargs)


def cached_fixes(cache: Path, name: str, raster, corpus_dir: Path, base: dict, seed: int) -> np.ndarray:
    path = cache / f"fixes_{name}_seed{seed}.npz"
    if not path.exists():
        corpus = Corpus.load(corpus_dir)
        extractor = DescriptorExtractor(corpus.load_model(), device="cpu", input_px=corpus.tile_px)
        flight = simulate_flight(raster, flight_config(base, seed))
        fixes, frames = rendered_fixes.frame_fixes(flight, corpus, extractor, np.random.default_rng([seed, 1]))
        np.savez(path, fixes=fixes, frames=frames)
        print(f"{name} flight {seed}: {len(fixes)}/{frames} frames fixed", flush=True)
    with np.load(path) as z:
        return z["fixes"]


_worker: dict = {}


def run_path(spec, cache: Path) -> Path:
    return cache / "runs" / (f"{spec.terrain}_{spec.seed}_{spec.sensor_seed}_{spec.imu_class}_"
                             f"{spec.outage_s[0]:g}-{spec.outage_s[1]:g}.npz")


def _run(args) -> tuple:
    """One run in a worker; its probe series cached (a new scoring needs no new runs)."""
    spec, cache = args
    path = run_path(spec, cache)
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            run = {k: z[k] for k in ("t_s", "err_enu_m", "cov_pos_m2", "lost", "fix_stamps_s")}
            run["counts"] = json.loads(str(z["counts"]))
        return spec, run
    spec, run = _fly(spec, cache)
    path.parent.mkdir(exist_ok=True)
    np.savez(path, **{k: v for k, v in run.items() if k != "counts"}, counts=np.array(json.dumps(run["counts"])))
    return spec, run


def _fly(spec, cache) -> tuple:
    if "corpora" not in _worker:
        _worker["corpora"] = prepare_corpora(cache)
    raster, corpus_dir, base = _worker["corpora"][spec.terrain]
    fixes = cached_fixes(cache, spec.terrain, raster, corpus_dir, base, spec.seed)
    flight = simulate_flight(raster, flight_config(base, spec.seed, sensor_seed=spec.sensor_seed, render_frames=False,
                                                   imu_noise=IMU_CLASSES[spec.imu_class]()))
    frame = Corpus.load(corpus_dir).frame
    return spec, terrain_runs.fly(spec, flight, fixes, frame, IMU_OVERLAYS[spec.imu_class])


def fixless_windows(fix_stamps_s: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) arrival times between position sources more than GAP_S apart (the last GNSS fix counts as
    one): the camera outage, or frames over a gap in the map (no fix possible); the last one is open-ended
    when the flight ends without fixes."""
    arrivals = np.concatenate([[GNSS_S], np.sort(fix_stamps_s) + terrain_runs.LATENCY_S, [np.inf]])
    return [(a, b) for a, b in zip(arrivals[:-1], arrivals[1:]) if b - a > GAP_S]


def score(spec, run: dict) -> dict:
    """One run against the criteria (module docstring)."""
    t, e, P, lost = run["t_s"], run["err_enu_m"], run["cov_pos_m2"], run["lost"]
    nees3 = np.einsum("ni,ni->n", e, np.linalg.solve(P, e[..., None])[..., 0])
    nees_h = np.einsum("ni,ni->n", e[:, :2], np.linalg.solve(P[:, :2, :2], e[:, :2, None])[..., 0])
    err_h = np.linalg.norm(e[:, :2], axis=1)
    after = t >= SCORE_FROM_S
    outage = (t >= spec.outage_s[0]) & (t < spec.outage_s[1])
    alone = np.zeros(len(t), bool)
    settling = np.zeros(len(t), bool)
    reconverge_s = []
    for a, b in fixless_windows(run["fix_stamps_s"]):
        alone |= (t >= a) & (t < b)
        settling |= (t >= b) & (t < b + RECONVERGE_S)
        back = np.nonzero((t >= b) & (err_h < 2.0))[0]
        if np.isfinite(b):
            reconverge_s.append(float(t[back[0]] - b) if len(back) else np.inf)
    inconsistent = bool(((nees_h > INCONSISTENT_NEES) & (err_h > INCONSISTENT_M)).any())
    fixes = run["fix_stamps_s"]
    ended_with_fixes = len(fixes) > 0 and t[-1] - float(fixes[-1]) <= RECONVERGE_S and not settling[-1]
    failed_to_recover = ended_with_fixes and err_h[-1] > RECOVERED_M
    diverged = bool(run["counts"].get("filter_restarts", 0) or inconsistent or failed_to_recover)
    return dict(diverged=diverged, declared_lost=bool(lost.any()), t=t, nees3=nees3, sq_v=np.square(e[after, 2]),
                sq_h_out=np.square(err_h[after & ~outage]), sq_h_gaps=np.square(err_h[after & ~alone]),
                sq_h_fixes=np.square(err_h[after & ~alone & ~settling]),
                inside_3sigma=nees_h[outage] <= 9.0, gap_inside_3sigma=nees_h[alone & ~outage] <= 9.0,
                reconverge_s=reconverge_s, end_err_h=float(err_h[-1]), counts=run["counts"])


def summarise(group: list[dict]) -> dict:
    """Criteria over the runs of one group; the 3-D NEES averaged over runs at common probe times."""
    n = len(group)
    grid = np.arange(SCORE_FROM_S, DURATION_S - 1.0, terrain_runs.PROBE_PERIOD_S)
    nees = np.array([np.interp(grid, g["t"], g["nees3"]) for g in group]).mean(axis=0)
    lo, hi = chi2.ppf([0.025, 0.975], 3 * n) / n
    inside = np.concatenate([g["inside_3sigma"] for g in group])
    gap_inside = np.concatenate([g["gap_inside_3sigma"] for g in group])
    rms = lambda key: float(np.sqrt(np.mean(np.concatenate([g[key] for g in group]))))  # noqa: E731
    reconverge = np.concatenate([g["reconverge_s"] for g in group]) if group else np.zeros(0)
    return dict(runs=n, diverged=int(sum(g["diverged"] for g in group)),
                declared_lost=int(sum(g["declared_lost"] for g in group)), vertical_rmse_m=rms("sq_v"),
                reconverge_s_p95=float(np.percentile(reconverge, 95)) if len(reconverge) else None,
                horizontal_rmse_outside_outage_m=rms("sq_h_out"), horizontal_rmse_outside_gaps_m=rms("sq_h_gaps"),
                horizontal_rmse_with_fixes_m=rms("sq_h_fixes"),
                outage_inside_3sigma=float(inside.mean()) if len(inside) else None,
                map_gap_inside_3sigma=float(gap_inside.mean()) if len(gap_inside) else None,
                nees3_mean=float(nees.mean()), nees3_bounds=[float(lo), float(hi)],
                nees3_epochs_inside=float(np.mean((nees >= lo) & (nees <= hi))),
                nees3_epochs_above=float(np.mean(nees > hi)),
                end_error_h_max_m=float(max(g["end_err_h"] for g in group)))


def markdown(results: dict, machine: dict, minutes: float, runs: int, cached: int) -> str:
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {machine['cpu_model']}, {machine['cores']} cores "
             f"(`benchmarks/eval_terrain.py`, {runs} runs, {cached} of them from the run cache; {minutes:.0f} min). Frames rendered from the corpus imagery itself "
             "and exact terrain: upper bounds.", "",
             "| ground | IMU | outage | runs | diverged (declared lost) | vertical RMSE m | horizontal RMSE m: outside "
             "outage / also outside fix gaps / with fixes, settled | re-converged, p95 s | in 3σ: outage / map gaps | 3-D NEES mean (95 % bounds) | "
             "epochs inside / above bounds |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (terrain, imu, outage), s in results.items():
        lines.append(f"| {terrain} | {imu} | {outage} | {s['runs']} | {s['diverged']} ({s['declared_lost']}) | "
                     f"{s['vertical_rmse_m']:.2f} | "
                     f"{s['horizontal_rmse_outside_outage_m']:.2f} / {s['horizontal_rmse_outside_gaps_m']:.2f} / "
                     f"{s['horizontal_rmse_with_fixes_m']:.2f} | "
                     f"{s['reconverge_s_p95']:.1f} | "
                     f"{100 * s['outage_inside_3sigma']:.1f} / {100 * (s['map_gap_inside_3sigma'] or 1.0):.1f} % | "
                     f"{s['nees3_mean']:.2f} ({s['nees3_bounds'][0]:.2f}-{s['nees3_bounds'][1]:.2f}) | "
                     f"{100 * s['nees3_epochs_inside']:.0f} / {100 * s['nees3_epochs_above']:.0f} % |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-per-terrain", type=int, default=100)
    parser.add_argument("--flights", type=int, default=5, help="rendered flights per terrain (fixes cached)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "gdn_eval_terrain")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    if not (TURKU / "map" / "map.csv").exists():
        print(f"skipped: the real imagery is not at {TURKU}")
        return 0
    t0, machine = time.monotonic(), machine_info()
    args.cache.mkdir(parents=True, exist_ok=True)
    corpora = prepare_corpora(args.cache)
    for name, (raster, corpus_dir, base) in corpora.items():  # render and match once, in this process
        for seed in range(args.flights):
            cached_fixes(args.cache, name, raster, corpus_dir, base, seed)
    specs = []
    for name in TERRAINS:
        for r in range(args.runs_per_terrain):
            imu, outage = list(IMU_CLASSES)[(r // 2) % 2], list(OUTAGES_S)[r % 2]
            specs.append(terrain_runs.RunSpec(name, r % args.flights, 1000 + r, imu, OUTAGES_S[outage]))
    cached = sum(run_path(spec, args.cache).exists() for spec in specs)
    scored: dict = {}
    context = multiprocessing.get_context("spawn")  # rclpy per process, never forked
    with context.Pool(args.workers, initializer=terrain_runs.init_worker, initargs=(str(DEFAULT_PARAMS),)) as pool:
        for k, (spec, run) in enumerate(pool.imap_unordered(_run, [(s, args.cache) for s in specs])):
            outage = next(o for o, window in OUTAGES_S.items() if tuple(window) == tuple(spec.outage_s))
            scored.setdefault((spec.terrain, spec.imu_class, outage), []).append(score(spec, run))
            print_progress("filter runs", k + 1, len(specs))
        # Let the workers leave on their own: terminate() (the with-block's exit) sends SIGTERM, which rclpy's
        # handler in each worker turns into a context shutdown, and the pool then waited on them for ever.
        pool.close()
        pool.join()
    print()
    results = {key: summarise(group) for key, group in sorted(scored.items())}
    for terrain in TERRAINS:
        results[(terrain, "all", "all")] = summarise([g for key, group in scored.items() if key[0] == terrain
                                                      for g in group])
    minutes = (time.monotonic() - t0) / 60.0
    table = markdown(results, machine, minutes, len(specs), cached)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "terrain.json").write_text(json.dumps({"machine": machine, "minutes": minutes, "results": {
        "/".join(key): value for key, value in results.items()}}, indent=1) + "\n")
    (args.out / "TERRAIN.md").write_text(table)
    if args.out == ROOT / "docs":
        sync_readme(("terrain",))
    failed = [key for key, s in results.items() if key[1] == "all" and (
        s["diverged"] or s["vertical_rmse_m"] > 3.0 or s["horizontal_rmse_with_fixes_m"] > 1.5
        or s["outage_inside_3sigma"] < 0.95 or not s["nees3_bounds"][0] <= s["nees3_mean"] <= s["nees3_bounds"][1])]
    print("FAILED: " + ", ".join("/".join(k) for k in failed) if failed else "all criteria met")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
