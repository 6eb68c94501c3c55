"""Standalone per-frame cost of each stage, outside the graph: the reference for the in-graph timing table.

The same calls the nodes make, one frame at a time (batch 1), under a chosen thread budget: the NetVLAD
forward pass on a 320 px rectified query, the rectification warp, SIFT on a 640x480 frame and matching it
against three tiles of a corpus. Against ``gdn replay``'s per-stage table (``report.json`` -> ``timing``) the
ratio in-graph / standalone shows what the graph adds (GIL, executors, other stages on the same cores).
Frames are rendered from the given corpus's own map, so this measures time, not accuracy. Last, the
forward pass beside one busy Python thread, eager and traced: what the GIL costs an eager model inside a
process whose other threads run Python (the one-process graph).

Run: ``.venv/bin/python benchmarks/bench_stages.py [--ortho out/demo/world.tif --corpus out/demo/corpus]
[--threads 1 2] [--frames 40]`` (``make demo`` writes both).
"""
from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import numpy as np

from gps_denied_nav.core.camera import R_BODY_CAM_NADIR, CameraIntrinsics
from gps_denied_nav.core.corpus import Corpus
from gps_denied_nav.core.descriptor import DescriptorExtractor
from gps_denied_nav.core.map_raster import load_geotiff
from gps_denied_nav.core.matching import MatchingConfig, TileFeatures, match_frame
from gps_denied_nav.core.rectify import query_footprint_m, rectify_to_north_up
from gps_denied_nav.core.retrieval import search
from gps_denied_nav.core.rotations import quat_from_euler, quat_to_rotmat
from gps_denied_nav.core.threads import ThreadBudget, apply_thread_budget
from gps_denied_nav.sim.render import render_frame

DEMO = Path(__file__).resolve().parents[1] / "out" / "demo"
ALTITUDE_AGL_M = 120.0
QUERY_FOOTPRINT_M = query_footprint_m(CameraIntrinsics.from_hfov(640, 480, 60.0).K, 640, 480, ALTITUDE_AGL_M)  # as inference_node


def frames(corpus: Corpus, raster, count: int, rng):
    """(rgb 640x480, R_world_cam, cam_pos_enu_m) over tiles of the corpus chosen at random."""
    K = CameraIntrinsics.from_hfov(640, 480, 60.0).K
    out = []
    while len(out) < count:
        tile = corpus.tiles[int(rng.integers(corpus.num_tiles))]
        east, north = 0.5 * (tile.east_min_m + tile.east_max_m), 0.5 * (tile.north_min_m + tile.north_max_m)
        R_world_body = quat_to_rotmat(quat_from_euler(*np.radians(rng.uniform(-5, 5, 2)), rng.uniform(-np.pi, np.pi)))
        R_world_cam = R_world_body @ R_BODY_CAM_NADIR
        cam = np.array([east, north, corpus.ground_up_m + ALTITUDE_AGL_M])
        rgb = render_frame(raster, K, R_world_cam, cam, 640, 480, ground_up_m=corpus.ground_up_m)
        if rgb is not None:
            out.append((rgb, R_world_cam, cam, K))
    return out


def pct(values) -> str:
    p50, p95 = np.percentile(values, [50, 95])
    return f"p50 {p50:7.1f} ms  p95 {p95:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ortho", type=Path, default=DEMO / "world.tif",
                        help="the GeoTIFF the corpus was provisioned from (default: make demo's)")
    parser.add_argument("--corpus", type=Path, default=DEMO / "corpus")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread budgets to compare")
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()
    if not (args.corpus / "manifest.json").exists():
        print(f"skipped: no corpus at {args.corpus} (run make demo first, or give --ortho and --corpus)")
        return
    corpus = Corpus.load(args.corpus)
    raster = load_geotiff(args.ortho, frame=corpus.frame)
    rng = np.random.default_rng(0)
    shots = frames(corpus, raster, args.frames, rng)
    extractor = DescriptorExtractor(corpus.load_model(), device="cpu", input_px=corpus.tile_px)
    gsd_m = corpus.tile_size_m / corpus.tile_px
    size_px = int(round(QUERY_FOOTPRINT_M / gsd_m))
    for threads in args.threads:
        apply_thread_budget(ThreadBudget(torch_intra_op=threads, opencv=threads, faiss=threads, blas=threads))
        times = {k: [] for k in ("rectify", "forward", "search", "sift+match")}
        extractor.describe(shots[0][0][None, :size_px, :size_px])  # warm-up
        for rgb, R_world_cam, cam, K in shots:
            t0 = time.perf_counter()
            query, _valid, _offset = rectify_to_north_up(rgb, K, R_world_cam, ALTITUDE_AGL_M, gsd_m, size_px)
            t1 = time.perf_counter()
            descriptor = extractor.describe(query[None])[0]
            t2 = time.perf_counter()
            result = search(corpus.index, descriptor, 5, corpus.tile_centres_enu_m, cam[:2], 200.0)
            t3 = time.perf_counter()
            candidates = [TileFeatures(int(i), *corpus.tile_features(int(i))) for i in result.indices[:3]]
            match_frame(rgb, K, candidates, MatchingConfig(), terrain_up_m=corpus.terrain_up_m)
            t4 = time.perf_counter()
            for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[key].append(1e3 * dt)
        print(f"threads {threads}: {len(shots)} frames, corpus {corpus.num_tiles} tiles")
        for key, values in times.items():
            print(f"  {key:11s} {pct(values)}")
    gil_contention(corpus, shots[0][0][None, :size_px, :size_px])


def gil_contention(corpus: Corpus, image: np.ndarray, repeats: int = 15) -> None:
    apply_thread_budget(ThreadBudget(torch_intra_op=1))
    stop = threading.Event()

    def busy() -> None:  # pure Python: holds the GIL whenever it runs
        n = 0
        while not stop.is_set():
            n += 1

    for label, contended in (("alone", False), ("beside a busy Python thread", True)):
        thread = threading.Thread(target=busy, daemon=True)
        if contended:
            thread.start()
        for traced in (False, True):
            extractor = DescriptorExtractor(corpus.load_model(), device="cpu", input_px=corpus.tile_px, traced=traced)
            extractor.describe(image)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                extractor.describe(image)
                times.append(1e3 * (time.perf_counter() - t0))
            print(f"forward {'traced' if traced else 'eager '} {label:28s} {pct(times)}")
        stop.set() if contended else None


if __name__ == "__main__":
    main()
