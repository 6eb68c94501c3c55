"""What runs inside Ray workers for `core.provision_ray`: the descriptor actor and the SIFT task.

Kept apart from the driver so a worker imports only this, the map code and torch; Ray pickles the class
and the function by reference, so the package must be installed on every node of the cluster.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .corpus_build import cell_pixels, detect_cell_features, tile_image


class DescribeTiles:
    """Actor: loads the adapted model once, then describes batches of tiles cut from the shared map.

    shared: raster (ObjectRef of the MapRaster), checkpoint (ObjectRef of model.pt's bytes), model_id (what
    the driver saved), pixels [N x 4] int64 (r0, r1, c0, c1 per tile), config (ProvisionConfig),
    torch_threads, crash_once_marker (test fault injection: path or None).
    """

    def __init__(self, shared: dict):
        import ray
        import torch

        from .descriptor import DescriptorExtractor
        from .netvlad import compute_model_id, load_checkpoint

        torch.set_num_threads(shared["torch_threads"])
        self.raster = ray.get(shared["raster"])
        with tempfile.TemporaryDirectory() as scratch:  # load_checkpoint reads a file (weights only)
            path = Path(scratch) / "model.pt"
            path.write_bytes(ray.get(shared["checkpoint"]))
            model, _ = load_checkpoint(path)
        if compute_model_id(model) != shared["model_id"]:
            raise RuntimeError(f"the actor loaded {compute_model_id(model)}, the driver saved {shared['model_id']}")
        config = shared["config"]
        self.runtime = DescriptorExtractor(model, config.device, config.tile_px, config.batch_size)
        self.pixels, self.tile_px = shared["pixels"], config.tile_px
        self.crash_once_marker = shared["crash_once_marker"]

    def __call__(self, batch: dict) -> dict:
        """batch: start [B], stop [B] (tile index ranges) -> start, descriptors [B] of [n x D] float32, pid."""
        _crash_once(self.crash_once_marker)
        out = np.empty(len(batch["start"]), dtype=object)
        for k, (start, stop) in enumerate(zip(batch["start"], batch["stop"])):
            images = [tile_image(self.raster, tuple(p), self.tile_px) for p in self.pixels[start:stop]]
            out[k] = self.runtime.describe(images)
        return {"start": batch["start"], "descriptors": out, "pid": np.full(len(out), os.getpid())}


def detect_cells(batch: dict, shared: dict) -> dict:
    """Task: SIFT of grid cells. batch: cell, row, col [B] -> cell, keypoints [B] of [M x 2] (ENU m),
    descriptors [B] of [M x 128], batch (its first cell) and pid [B]."""
    import ray

    raster, config, per_cell = ray.get(shared["raster"]), shared["config"], shared["per_cell"]
    keypoints, descriptors = np.empty(len(batch["cell"]), dtype=object), np.empty(len(batch["cell"]), dtype=object)
    for k, (row, col) in enumerate(zip(batch["row"], batch["col"])):
        keypoints[k], descriptors[k] = detect_cell_features(raster, cell_pixels(raster, (int(row), int(col)), config),
                                                            per_cell, config.sift_margin_px, config.root_sift)
    n = len(batch["cell"])
    return {"cell": batch["cell"], "keypoints": keypoints, "descriptors": descriptors,
            "batch": np.full(n, int(batch["cell"][0])), "pid": np.full(n, os.getpid())}


def _crash_once(marker: str | None) -> None:
    """Kill this worker process the first time any actor gets here (the marker file says it happened):
    what a node's OOM killer or a preempted GPU does, so that the restart path is tested."""
    if marker and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
