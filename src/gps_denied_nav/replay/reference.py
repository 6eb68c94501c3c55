"""The short reference flight: a small generated world, its corpus and a 40 s clip, deterministic from seeds.

CI replays it in lockstep (tests/e2e) and ``benchmarks/reproduce_figures.py`` records what it scores in
``docs/figures.json``; the test fails when a change makes it worse than those figures by more than the
stated tolerances. Small enough to provision in seconds: a 700 m square at 0.5 m/px. Its ground is not
flat: a 4 % grade and a hill around a mean 35 m above the ellipsoid, written beside the world as a DEM
GeoTIFF (EPSG:4326) that provisioning reads with ``--dem``, and rendered into the clip by ray casting.
"""
from __future__ import annotations

from pathlib import Path

WORLD_SEED = 7
WORLD_SIZE_M = (700.0, 700.0)
WORLD_GSD_M = 0.5
CLIP_SEED = 3
CLIP_DURATION_S = 40.0
CLIP_GNSS_S = 10.0
GROUND_ALT_M = 35.0  # mean height of the world's ground, WGS84 ellipsoidal (its frame's origin is on the ellipsoid)
TERRAIN_GRADE = 0.04  # rising towards the north-east, plus a hill of TERRAIN_HILL_M: 43 m of relief in all
TERRAIN_HILL_M = 6.0
TERRAIN_SEED = 2
# How much worse than the recorded figures CI tolerates (replays on DDS are not bit-exact).
FIX_RATE_TOLERANCE = 0.05  # absolute
RMSE_TOLERANCE = (1.5, 0.05)  # rmse_m <= 1.5 x recorded + 0.05 m


def small_world(path: Path) -> Path:
    """The world GeoTIFF at ``path`` and its DEM beside it (``dem_path(path)``)."""
    from gps_denied_nav.core.map_raster import load_geotiff
    from gps_denied_nav.sim.terrain_world import write_dem_geotiff
    from gps_denied_nav.sim.world import generate_world

    generate_world(path, seed=WORLD_SEED, size_m=WORLD_SIZE_M, gsd_m=WORLD_GSD_M)
    raster = load_geotiff(path)
    write_dem_geotiff(terrain(raster), raster.frame, dem_path(path))
    return path


def dem_path(world: Path) -> Path:
    return world.with_name(world.stem + "_dem.tif")


def terrain(raster):
    """The reference world's ground (a TerrainGrid of ellipsoidal heights on the raster's ENU grid)."""
    from gps_denied_nav.sim.terrain_world import sloped_terrain

    return sloped_terrain(raster, GROUND_ALT_M, grade=TERRAIN_GRADE, hill_m=TERRAIN_HILL_M, seed=TERRAIN_SEED)


def small_corpus(world: Path, out: Path) -> Path:
    from gps_denied_nav.core.corpus_build import ProvisionConfig, provision
    from gps_denied_nav.sim.world import SIMULATED_MAP_ERRORS

    provision(world, out, ProvisionConfig(init_sample_size=20000, kmeans_iterations=10,
                                          dem_path=str(dem_path(world)), **SIMULATED_MAP_ERRORS))
    return out


def short_clip(world: Path, path: Path, seed: int = CLIP_SEED, gnss_s: float = CLIP_GNSS_S,
               duration_s: float = CLIP_DURATION_S) -> Path:
    from gps_denied_nav.core.map_raster import load_geotiff
    from gps_denied_nav.sim.clip import write_clip
    from gps_denied_nav.sim.flight import FlightConfig, simulate_flight

    raster = load_geotiff(world)
    flight = simulate_flight(raster, FlightConfig.over_terrain(terrain(raster), raster.frame, seed=seed,
                                                               duration_s=duration_s, gnss_s=gnss_s))
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
