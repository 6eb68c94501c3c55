"""Provisioning on a Ray cluster: the tiles' descriptors and the SIFT cells as Ray Data batch jobs.

The same corpus as `core.corpus_build.provision` (same tiles, model, descriptors within float rounding,
identical features, same manifest and checksums scheme: both write through `core.corpus_write`), with the
per-tile work spread over a cluster. What runs where, and why:

- driver: load the map, lay the tile grid (a mean per tile: cheap), adapt the NetVLAD head (PCA and k-means
  need a sample of the whole map, so it is one step), then merge the shards and write the corpus.
- descriptor job: an actor pool (a callable class, so the model loads once per actor, on a GPU where the
  cluster has them) over batches of tile records; each actor cuts its tiles from the map itself, because a
  cut is a resize costing a few % of a forward pass while shipping the image costs more, and a separate
  tiling task stage would compete with the actors for the same CPUs (on a cluster of N CPUs a pool of N
  actors starved it: the job hung).
- SIFT job: stateless tasks over batches of grid cells.

The map goes to the workers through ``ray.put`` (one copy per node, read zero-copy); the adapted model
goes as the bytes of its checkpoint through ``ray.put``, not as a path, because a ``ray://`` cluster does
not share the driver's disk, and the actor checks that the model id it loaded is the driver's. A dead
actor is restarted and its batch retried (``max_restarts``, ``max_task_retries``); a job that still fails
raises `RayProvisionError` before anything but model.pt is written, and no manifest means no corpus.
"""
from __future__ import annotations

import contextlib
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .corpus import Manifest
from .corpus_build import (ProgressCallback, ProvisionConfig, adapt_model, corpus_tiles, error_sigmas_m,
                           feature_cells, features_per_cell, pretrained_model, start_corpus, terrain_for, tile_image)
from .corpus_write import write_corpus
from .map_raster import MapRaster, load_geotiff
from .netvlad import save_checkpoint

CRASH_ONCE_ENV = "GDN_RAY_CRASH_ONCE"  # fault injection for tests: a marker path; the first batch kills its actor


class RayProvisionError(RuntimeError):
    """A Ray job of provisioning failed for good; the corpus directory holds no manifest."""


@dataclass(frozen=True)
class RayConfig:
    address: str | None = None  # None: a local ray.init(); "auto": the running cluster; "ray://host:10001"
    num_workers: int | None = None  # descriptor actors; None: one per GPU of the cluster, else one per CPU
    torch_threads: int = 1  # per actor: N one-thread actors beat one N-thread model on CPUs, and fix the sums
    sift_cells_per_task: int = 32  # grid cells per SIFT task (a cell is ~10-50 ms)
    max_restarts: int = 3  # restarts of a dead descriptor actor (-1: forever, which hides a crash loop)
    max_task_retries: int = 3  # retries of a batch whose actor or task died


@dataclass
class RayProvisionResult:
    manifest: Manifest
    describe_pids: list[int]  # worker process of each tile batch
    sift_pids: list[int]  # worker process of each SIFT cell batch
    stage_s: dict[str, float] = field(default_factory=dict)  # wall time per stage (tiles, init, descriptors, sift, write)


def import_ray():
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise RayProvisionError("--ray needs Ray Data: pip install 'ray[data]==2.60.0' (see requirements.txt); "
                                f"it is not importable here ({exc})") from exc
    return ray


def provision_ray(map_source: str | Path | MapRaster, out_dir, config: ProvisionConfig = ProvisionConfig(),
                  ray_config: RayConfig = RayConfig(), progress: ProgressCallback | None = None) -> RayProvisionResult:
    """`corpus_build.provision` with descriptors and SIFT computed on Ray (connects unless Ray is initialised)."""
    ray = import_ray()
    report = progress or (lambda stage, done, total: None)
    stage_s, t0 = {}, time.perf_counter()
    pretrained = pretrained_model(config)
    raster = map_source if isinstance(map_source, MapRaster) else load_geotiff(map_source, gsd_m=config.map_gsd_m)
    out_dir = start_corpus(out_dir)
    terrain = terrain_for(raster, config)
    sigmas_m = error_sigmas_m(raster, config)
    tiles = corpus_tiles(raster, config)
    report("tiles", len(tiles), len(tiles))
    stage_s["tiles"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    images = _TileImages(raster, [t["pixels"] for t in tiles], config.tile_px)  # cut only for the sample
    model, alpha = (pretrained, None) if pretrained is not None else adapt_model(images, config, rng, report)
    model_id = save_checkpoint(model, out_dir / "model.pt", model.config)
    stage_s["init"] = time.perf_counter() - t0

    with ray_session(ray_config.address):
        raster_ref = ray.put(raster)
        checkpoint_ref = ray.put((out_dir / "model.pt").read_bytes())
        t0 = time.perf_counter()
        descriptors, describe_pids = _describe(ray, raster_ref, checkpoint_ref, model_id, tiles, config,
                                               ray_config, model.config.descriptor_dim, report)
        stage_s["descriptors"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cells = feature_cells(tiles, config)
        found, sift_pids = _detect(ray, raster_ref, cells, config, ray_config, report)
        stage_s["sift"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    manifest = write_corpus(out_dir, raster, map_source, config, tiles, model_id, alpha, descriptors, cells, found,
                            terrain, sigmas_m, report)
    stage_s["write"] = time.perf_counter() - t0
    return RayProvisionResult(manifest, describe_pids, sift_pids, stage_s)


@contextlib.contextmanager
def ray_session(address: str | None):
    """Ray as it is when initialised already (a test's, a notebook's), else connected to ``address`` (None: a
    local instance) for the duration, so that several corpora (mission areas) can share one connection."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    ray.init(address=address)
    try:
        yield ray
    finally:
        ray.shutdown()


class _TileImages:
    """The tile images as a lazy sequence: adapt_model reads only its sample, in the same order as a list."""

    def __init__(self, raster: MapRaster, pixels: list, tile_px: int):
        self.raster, self.pixels, self.tile_px = raster, pixels, tile_px

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i) -> np.ndarray:
        return tile_image(self.raster, self.pixels[i], self.tile_px)


def _describe(ray, raster_ref, checkpoint_ref, model_id, tiles, config, ray_config, dim, report):
    """Descriptors [N x D] float32 in tile order, and the worker PID of each batch of ``config.batch_size``."""
    from .provision_ray_workers import DescribeTiles

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if config.device != "cpu" else 0
    # A fixed pool larger than the cluster can place waits for ever: at most one actor per GPU (or CPU).
    slots = gpus or max(1, int(resources.get("CPU", 1)))
    workers = min(ray_config.num_workers or slots, slots)
    # One row per batch of the one-process path: the same images go through each forward pass together,
    # which is what makes the descriptors equal to it (a conv's sums depend on the batch it runs in).
    rows = [{"start": s, "stop": min(s + config.batch_size, len(tiles))} for s in range(0, len(tiles), config.batch_size)]
    shared = {"raster": raster_ref, "checkpoint": checkpoint_ref, "model_id": model_id,
              "pixels": np.array([t["pixels"] for t in tiles], np.int64), "config": config,
              "torch_threads": ray_config.torch_threads, "crash_once_marker": os.environ.get(CRASH_ONCE_ENV)}
    dataset = ray.data.from_items(rows, override_num_blocks=min(len(rows), 4 * workers))
    with warnings.catch_warnings():
        # Ray 2.60 takes actor restarts only through the remote args it has deprecated (removal: 2.64).
        warnings.simplefilter("ignore", DeprecationWarning)
        dataset = dataset.map_batches(
            DescribeTiles, batch_size=1, fn_constructor_args=(shared,),
            compute=ray.data.ActorPoolStrategy(size=min(workers, len(rows))), num_cpus=1,
            num_gpus=1 if gpus else 0, max_restarts=ray_config.max_restarts,
            max_task_retries=ray_config.max_task_retries)
    descriptors, pids = np.zeros((len(tiles), dim), np.float32), []
    for done, row in enumerate(_rows(ray, dataset, "descriptor"), start=1):
        descriptors[row["start"]:row["start"] + len(row["descriptors"])] = row["descriptors"]
        pids.append(int(row["pid"]))
        report("descriptors", done, len(rows))
    return descriptors, pids


def _detect(ray, raster_ref, cells, config, ray_config, report):
    """found[k] = (kp_enu_m [M x 2], desc [M x 128]) of cells[k], and the worker PID of each task batch."""
    from .provision_ray_workers import detect_cells

    per_cell = features_per_cell(config)
    rows = [{"cell": k, "row": row, "col": col} for k, (row, col) in enumerate(cells)]
    n_tasks = -(-len(rows) // ray_config.sift_cells_per_task)
    dataset = ray.data.from_items(rows, override_num_blocks=n_tasks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        dataset = dataset.map_batches(
            detect_cells, batch_size=ray_config.sift_cells_per_task, num_cpus=1,
            fn_kwargs={"shared": {"raster": raster_ref, "config": config, "per_cell": per_cell}},
            max_retries=ray_config.max_task_retries)
    found, pid_of_batch = [None] * len(cells), {}
    for done, row in enumerate(_rows(ray, dataset, "SIFT"), start=1):
        found[row["cell"]] = (np.asarray(row["keypoints"], np.float32).reshape(-1, 2),
                              np.asarray(row["descriptors"], np.float32).reshape(-1, 128))
        pid_of_batch[int(row["batch"])] = int(row["pid"])
        report("sift", done, len(cells))
    return found, [pid_of_batch[b] for b in sorted(pid_of_batch)]


def _rows(ray, dataset, job: str):
    """The dataset's rows as they finish; a job that fails for good becomes a RayProvisionError."""
    try:
        yield from dataset.iter_rows()
    except Exception as exc:  # Ray raises its own errors and the UDF's, wrapped: all end the job alike
        first_line = (str(exc).strip().splitlines() or [""])[0]  # the rest (Ray's advice) stays on the chain
        raise RayProvisionError(f"the Ray {job} job failed after its retries ({type(exc).__name__}: {first_line}); "
                                "no corpus was written (no manifest.json)") from exc

