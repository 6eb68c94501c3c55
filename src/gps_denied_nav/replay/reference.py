"""The short reference flight: a small generated world, its corpus and a 40 s clip, deterministic from seeds.

CI replays it in lockstep (tests/e2e) and ``benchmarks/reproduce_figures.py`` records what it scores in
``docs/figures.json``; the test fails when a change makes it worse than those figures by more than the
stated tolerances. Small enough to provision in seconds: a 700 m square at 0.5 m/px.
"""
from __future__ import annotations

from pathlib import Path

WORLD_SEED = 7
WORLD_SIZE_M = (700.0, 700.0)
WORLD_GSD_M = 0.5
CLIP_SEED = 3
CLIP_DURATION_S = 40.0
CLIP_GNSS_S = 10.0
GROUND_ALT_M = 35.0  # the world's ground, WGS84 ellipsoidal (its frame's origin is on the ellipsoid)
# How much worse than the recorded figures CI tolerates (replays on DDS are not bit-exact).
FIX_RATE_TOLERANCE = 0.05  # absolute
RMSE_TOLERANCE = (1.5, 0.05)  # rmse_m <= 1.5 x recorded + 0.05 m


def small_world(path: Path) -> Path:
    from gps_denied_nav.sim.world import generate_world

    return generate_world(path, seed=WORLD_SEED, size_m=WORLD_SIZE_M, gsd_m=WORLD_GSD_M)


def small_corpus(world: Path, out: Path) -> Path:
    from gps_denied_nav.core.corpus_build import ProvisionConfig, provision
    from gps_denied_nav.sim.world import SIMULATED_MAP_ERRORS

    provision(world, out, ProvisionConfig(init_sample_size=20000, kmeans_iterations=10, ground_alt_m=GROUND_ALT_M,
                                          **SIMULATED_MAP_ERRORS))
    return out


def short_clip(world: Path, path: Path, seed: int = CLIP_SEED, gnss_s: float = CLIP_GNSS_S,
               duration_s: float = CLIP_DURATION_S) -> Path:
    from gps_denied_nav.core.map_raster import load_geotiff
    from gps_denied_nav.sim.clip import write_clip
    from gps_denied_nav.sim.flight import FlightConfig, simulate_flight

    flight = simulate_flight(load_geotiff(world), FlightConfig(seed=seed, duration_s=duration_s, gnss_s=gnss_s,
                                                               ground_up_m=GROUND_ALT_M))
    return write_clip(flight, path)


def within_tolerance(report: dict, recorded: dict) -> list[str]:
    """What in ``report`` is worse than the ``recorded`` figures beyond the tolerances (empty: fine)."""
    problems = []
    if not report["fix_rate"] >= recorded["fix_rate"] - FIX_RATE_TOLERANCE:
        problems.append(f"fix_rate {report['fix_rate']} < recorded {recorded['fix_rate']} - {FIX_RATE_TOLERANCE}")
    limit = RMSE_TOLERANCE[0] * recorded["rmse_m"] + RMSE_TOLERANCE[1]
    if not (report["rmse_m"] or float("inf")) <= limit:
        problems.append(f"rmse_m {report['rmse_m']} > {limit:.3f} (recorded {recorded['rmse_m']})")
    return problems
