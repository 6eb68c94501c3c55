"""``gdn demo``: the embedded default. World, flight clip and corpus are generated once (deterministically
from the seed) and reused; the replay and its report are made fresh every time."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

# The gate: in lockstep the demo's figures do not depend on the machine (measured 0.97-0.99 and 0.05-0.07 m
# on 2 cores, also with another process spinning on one of them); realtime on a slow machine drops frames.
FIX_RATE_MIN = 0.9
RMSE_MAX_M = 0.5
GROUND_ALT_M = 45.0  # the demo world stands 45 m above the WGS84 ellipsoid: the ground is not at 0 m

def prepare_demo(out: Path, seed: int = 0, duration_s: float = 90.0, force: bool = False) -> tuple[Path, Path, Path]:
    """The demo's world GeoTIFF, flight clip and corpus under ``out``, made unless already there for these
    inputs. Returns (world, clip, corpus)."""
    from gps_denied_nav.core.corpus_build import ProvisionConfig, provision
    from gps_denied_nav.core.map_raster import load_geotiff
    from gps_denied_nav.replay.session import print_progress
    from gps_denied_nav.sim.clip import write_clip
    from gps_denied_nav.sim.flight import FlightConfig, simulate_flight
    from gps_denied_nav.sim.world import SIMULATED_MAP_ERRORS, generate_world

    out.mkdir(parents=True, exist_ok=True)
    stamp_file = out / "inputs.json"
    from gps_denied_nav.core.corpus_manifest import CORPUS_FORMAT_VERSION

    inputs = {"seed": seed, "duration_s": duration_s, "ground_alt_m": GROUND_ALT_M, "corpus_format": CORPUS_FORMAT_VERSION}
    fresh = force or not stamp_file.exists() or json.loads(stamp_file.read_text()) != inputs
    world, clip, corpus = out / "world.tif", out / "clip.mcap", out / "corpus"
    if fresh or not world.exists():
        print("[demo] generating the demo world (synthetic orthophoto GeoTIFF)")
        generate_world(world, seed=seed)
    if fresh or not clip.exists():
        print("[demo] simulating the flight clip")
        raster = load_geotiff(world)
        # The world's frame has its origin on the ellipsoid, so the ground at GROUND_ALT_M is that high up in it.
        flight = simulate_flight(raster, FlightConfig(seed=seed, duration_s=duration_s, ground_up_m=GROUND_ALT_M),
                                 progress=lambda d, t: print_progress("render frames", d, t))
        if clip.exists():
            shutil.rmtree(clip) if clip.is_dir() else clip.unlink()
        write_clip(flight, clip, progress=lambda d, t: print_progress("write clip", d, t))
    if fresh or not (corpus / "manifest.json").exists():
        print("[demo] provisioning the tile corpus")
        provision(world, corpus, ProvisionConfig(ground_alt_m=GROUND_ALT_M, **SIMULATED_MAP_ERRORS),
                  progress=lambda stage, d, t: print_progress(f"provision: {stage}", d, t))
    stamp_file.write_text(json.dumps(inputs))
    return world, clip, corpus


def run_demo(out: Path, seed: int = 0, rate: float = 1.0, duration_s: float = 90.0, force: bool = False,
             domain_id: int | None = None, mode: str = "lockstep") -> dict:
    from gps_denied_nav.replay.session import replay

    t0 = time.monotonic()
    _world, clip, corpus = prepare_demo(out, seed, duration_s, force)
    prepare_s = time.monotonic() - t0
    print(f"[demo] replaying {clip} at rate {rate}, {mode}")
    report = replay(clip, corpus, out / "replay", rate=rate, domain_id=domain_id, mode=mode).to_json_dict()
    ok = (report["fix_rate"] or 0.0) >= FIX_RATE_MIN and (report["rmse_m"] or float("inf")) <= RMSE_MAX_M
    report["pass"] = ok
    print(f"[demo] preparation {prepare_s:.1f} s, replay {report['wall_s']:.1f} s")
    print(f"[demo] frames {report['frames']}, fixes {report['fixes_accepted']} (fix_rate {report['fix_rate']:.2f}), "
          f"rmse {report['rmse_m']} m, cep95 {report['cep95_m']} m, latency p50 {report['latency_ms_p50']} ms")
    print(f"[demo] {'PASS' if ok else 'FAIL'} (fix_rate >= {FIX_RATE_MIN}, rmse_m <= {RMSE_MAX_M}); "
          f"report and plots in {out / 'replay'}")
    return report
