"""``gdn train-vpr``: fine-tune a corpus' descriptor model on views of its own map, then re-index the corpus.

Steps (core/vpr_views.py renders, core/vpr_train.py learns): views over every tile from training seeds and
every appearance family but the held-out one; a validation set from another seed with all families, the
held-out one reported on its own; the frozen trunk's output cached for views and tiles; epochs of the
multi-similarity loss, validated after each (model selection on the held-in families only); PCA whitening
fitted on the trained vectors and kept when it does not lower validation recall; then the corpus' model,
descriptors, index and manifest rewritten together.

Resumable and deterministic: views, caches and the training state (after each epoch) live in
``CORPUS/.train_vpr/``; a re-run with the same seed picks up where it stopped. The corpus files are only
replaced at the very end, each by an atomic rename with the manifest last, so an interrupted training leaves
the corpus as it was.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from gps_denied_nav.core.corpus import Corpus, file_sha256
from gps_denied_nav.core.corpus_manifest import CorpusError
from gps_denied_nav.core.descriptor import DescriptorExtractor, resolve_device
from gps_denied_nav.core.netvlad import save_checkpoint
from gps_denied_nav.core.tile_index import IndexConfig, build_index, save_index
from gps_denied_nav.core.vpr_train import (LossConfig, describe_cached, fit_whitening, head, multi_similarity_loss,
                                           pair_masks, recall_at, trained_parameters, trunk)
from gps_denied_nav.core.vpr_views import APPEARANCES, ViewConfig, render_views

WORK_DIR = ".train_vpr"
MIN_TILES = 8  # fewer tiles than this cannot give a view both positives and negatives to learn from
_INDEX_CONFIG_FIELDS = {f.name for f in dataclasses.fields(IndexConfig)} - {"flat_max_tiles"}
WHITENING_POWERS = (0.0, 0.25, 0.5, 1.0)  # PCA projection ... full whitening (vpr_train.fit_whitening)


@dataclass(frozen=True)
class TrainVprConfig:
    views_per_tile: int = 24  # training views rendered over each tile
    val_views_per_tile: int = 4  # validation views (another seed) over each tile
    held_out_appearance: str = "autumn"  # never trained on; reported separately
    colour_jitter: float = 0.0  # share of training views also colour-jittered (vpr_views.colour_jitter); 0: none
    negative_strides: float = 1.25  # tiles further than this many strides from a view are its negatives
    camera_span_of_tile: float = 0.5  # training views' cameras over this central share of each tile (ViewConfig)
    epochs: int = 12  # validation recall still rose at 9 (the best epoch is kept)
    batch_views: int = 32
    learning_rate: float = 1e-4
    whitened_dim: int = 256  # PCA (whitening) to this many dimensions when it validates at least as well; 0: never
    tile_refresh_steps: int = 1  # the tiles' descriptors are recomputed (without gradients) this often
    seed: int = 0
    device: str = "auto"  # training device: auto (CUDA when present), cpu or cuda


def _progress(progress, stage: str, done: float, total: float) -> None:
    if progress is not None:
        progress(stage, done, total)


def _tile_images(corpus: Corpus, raster) -> list[np.ndarray]:
    """The corpus' tile images, cut again from its map exactly as provisioning cut them."""
    from gps_denied_nav.core.corpus_build import ProvisionConfig, tile_grid, tile_image

    pc = corpus.manifest.provision_config
    grid = tile_grid(raster, ProvisionConfig(tile_size_m=corpus.tile_size_m, stride_m=corpus.manifest.tile_stride_m,
                                             min_valid_fraction=pc.get("min_valid_fraction", 0.5)))
    by_id = {t["tile_id"]: t for t in grid}
    missing = [tid for tid in corpus.tile_ids if tid not in by_id]
    if missing or len(by_id) != corpus.num_tiles:
        raise CorpusError(corpus.directory, f"its map ({corpus.manifest.source}) does not cut into the corpus' "
                                            f"tiles ({len(by_id)} tiles, {len(missing)} of the corpus' missing)")
    return [tile_image(raster, by_id[tid]["pixels"], corpus.tile_px) for tid in corpus.tile_ids]


def _cache(work: Path, name: str, make):
    """np arrays saved under work/name.npz once, loaded on later (resumed) runs."""
    path = work / f"{name}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    arrays = make()
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return arrays


def _trunk_outputs(model, extractor: DescriptorExtractor, images, progress, stage: str) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), 16):
            device = next(model.parameters()).device
            out.append(trunk(model, extractor.preprocess(images[i:i + 16]).to(device)).cpu().numpy())
            _progress(progress, stage, min(i + 16, len(images)), len(images))
    return np.concatenate(out).astype(np.float16)  # half the cache; the head runs in float32


def _config_key(config: TrainVprConfig) -> str:
    """Short hash of the settings that shape the training (not the device, not the epochs still to run)."""
    fields = {k: v for k, v in asdict(config).items() if k not in ("device", "epochs")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:8]


def train_vpr(corpus_dir, config: TrainVprConfig = TrainVprConfig(), ortho=None, progress=None) -> dict:
    """Train, re-index the corpus in place and return the record (recalls before/after, times)."""
    from gps_denied_nav.core.map_raster import load_geotiff

    t0 = time.monotonic()
    corpus_dir = Path(corpus_dir)
    corpus = Corpus.load(corpus_dir)
    if corpus.num_tiles < MIN_TILES:
        raise CorpusError(corpus_dir, f"{corpus.num_tiles} tiles: training needs at least {MIN_TILES}")
    if config.held_out_appearance not in APPEARANCES:
        raise ValueError(f"held_out_appearance must be one of {APPEARANCES}, got {config.held_out_appearance!r}")
    model = corpus.load_model()
    if model.config.whitened_dim:
        raise CorpusError(corpus.model_path, "is already whitened (trained): re-provision to train from the start")
    ortho = Path(ortho or corpus.manifest.source)
    if not ortho.is_file():
        raise FileNotFoundError(f"the corpus' map {ortho} is not there: give it with --ortho")
    raster = load_geotiff(ortho, corpus.manifest.provision_config.get("map_gsd_m"), frame=corpus.frame)
    work = corpus_dir / WORK_DIR
    work.mkdir(exist_ok=True)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    extractor = DescriptorExtractor(model, "cpu", corpus.tile_px, traced=False)  # preprocessing only
    model.to(device)
    tile_images = _tile_images(corpus, raster)
    train_families = tuple(a for a in APPEARANCES if a != config.held_out_appearance)
    tag = corpus.model_id.split("@")[-1]  # caches and state belong to the model they started from

    def views(name, seed, per_tile, families, jitter=0.0, span=ViewConfig.camera_span_of_tile):
        def make():
            rng = np.random.default_rng(seed)
            made = render_views(raster, corpus.ground_up_m, corpus.tile_size_m, corpus.tile_px,
                                corpus.tile_bounds_enu_m, per_tile, families, rng,
                                ViewConfig(colour_jitter_probability=jitter, camera_span_of_tile=span),
                                lambda d, t: _progress(progress, f"render {name}", d, t))
            return {"trunk": _trunk_outputs(model, extractor, [v.image for v in made], progress, f"trunk {name}"),
                    "centre": np.array([v.ground_centre_enu_m for v in made]),
                    "family": np.array([APPEARANCES.index(v.appearance) for v in made])}
        return _cache(work, f"views_{name}_{tag}_{seed}_{per_tile}" + (f"_j{jitter:g}" if jitter else "")
                      + (f"_c{span:g}" if span != ViewConfig.camera_span_of_tile else ""), make)

    # Validation views are never jittered and always drawn alike: they measure the families as they are.
    train = views("train", config.seed, config.views_per_tile, train_families, config.colour_jitter,
                  config.camera_span_of_tile)
    val = views("val", config.seed + 1_000_003, config.val_views_per_tile, APPEARANCES)
    tiles = _cache(work, f"tiles_{tag}", lambda: {"trunk": _trunk_outputs(model, extractor, tile_images, progress, "trunk tiles")})
    t_data = time.monotonic() - t0

    stride = corpus.manifest.tile_stride_m
    pos_train, neg_train = pair_masks(train["centre"], corpus.tile_centres_enu_m, stride, config.negative_strides)
    pos_val, _ = pair_masks(val["centre"], corpus.tile_centres_enu_m, stride)
    keep = pos_train.any(axis=1)
    tile_trunk = torch.from_numpy(tiles["trunk"].astype(np.float32))
    train_trunk = torch.from_numpy(train["trunk"][keep].astype(np.float32))
    pos_train, neg_train = torch.from_numpy(pos_train[keep]), torch.from_numpy(neg_train[keep])
    val_trunk = torch.from_numpy(val["trunk"].astype(np.float32))
    held_out = val["family"] == APPEARANCES.index(config.held_out_appearance)

    def validate() -> dict:
        v, t = describe_cached(model, val_trunk), describe_cached(model, tile_trunk)
        return {"held_in": recall_at(v[~held_out], t, pos_val[~held_out]),
                "held_out": recall_at(v[held_out], t, pos_val[held_out])}

    before = validate()
    # The state of one training configuration: a run with other settings starts afresh instead of resuming it.
    state_path = work / f"state_{tag}_{config.seed}_{_config_key(config)}.pt"
    params = trained_parameters(model)
    optimizer = torch.optim.Adam(params, lr=config.learning_rate)
    history, best, epoch0, train_s0 = [], None, 0, 0.0
    if state_path.exists():  # resume: the weights, the optimiser and the history of the epochs done
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, epoch0 = json.loads(state["history"]), int(state["epoch"])
        best = state["best"], json.loads(state["best_recall"])
        train_s0 = float(state.get("train_s", 0.0))  # the epochs done before the interruption
    rng = np.random.default_rng(config.seed + epoch0)
    for epoch in range(epoch0, config.epochs):
        torch.manual_seed(config.seed * 1000 + epoch)
        order = rng.permutation(len(train_trunk))
        losses = []
        for step, start in enumerate(range(0, len(order), config.batch_views)):
            batch = torch.from_numpy(order[start:start + config.batch_views])
            if step % config.tile_refresh_steps == 0:  # the tiles as the current weights describe them
                tile_desc = torch.from_numpy(describe_cached(model, tile_trunk))
            # Anchors carry the gradient; the tiles, described without it, move with the shared weights (a
            # memory bank refreshed every tile_refresh_steps): a step costs the batch, not the corpus.
            sim = head(model, train_trunk[batch].to(device)) @ tile_desc.to(device).T
            loss = multi_similarity_loss(sim, pos_train[batch].to(device), neg_train[batch].to(device), LossConfig())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            _progress(progress, f"epoch {epoch + 1}/{config.epochs}", min(start + config.batch_views, len(order)),
                      len(order))
        recall = validate()
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), **recall})
        if best is None or recall["held_in"]["recall@1"] >= best[1]["held_in"]["recall@1"]:
            best = ({k: v.detach().clone() for k, v in model.state_dict().items()}, recall)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                    "history": json.dumps(history), "best": best[0], "best_recall": json.dumps(best[1]),
                    "train_s": train_s0 + time.monotonic() - t0 - t_data},
                   str(state_path) + ".tmp")
        os.replace(str(state_path) + ".tmp", state_path)
    if best is not None:
        model.load_state_dict(best[0])
    after = validate()
    whitening = None
    if config.whitened_dim:  # the whitening power that validates best on the held-in families, if any beats none
        vlad = describe_cached(model, torch.cat([tile_trunk, train_trunk]), whiten=False)
        whitening = {"dim": config.whitened_dim, "candidates": {}}
        best_power, best_r1 = None, after["held_in"]["recall@1"]
        for power in WHITENING_POWERS:
            fit_whitening(model, vlad, config.whitened_dim, power)
            recall = validate()
            whitening["candidates"][str(power)] = recall
            if recall["held_in"]["recall@1"] >= best_r1:  # ties: the smaller descriptor
                best_power, best_r1 = power, recall["held_in"]["recall@1"]
        whitening["power"] = best_power
        whitening["kept"] = best_power is not None
        if best_power is None:
            model.whiten = None
        else:
            fit_whitening(model, vlad, config.whitened_dim, best_power)
            after = validate()
    model.cpu().config = dataclasses.replace(model.config, whitened_dim=model.whiten.out_features if model.whiten else 0)
    t_train = train_s0 + time.monotonic() - t0 - t_data  # every run's epochs, whitening and validation
    record = {"config": asdict(config), "views": {"train": int(keep.sum()), "val": len(val_trunk),
                                                  "val_held_out": int(held_out.sum())},
              "recall_before": before, "recall_after": after, "whitening": whitening, "history": history,
              "seconds": {"views_and_cache": t_data, "training": t_train}, "resumed_from_epoch": epoch0,
              "ortho": str(ortho)}
    _rewrite_corpus(corpus, model, tile_images, record, progress)
    record["seconds"]["total"] = time.monotonic() - t0
    (corpus_dir / "train_vpr.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def _rewrite_corpus(corpus: Corpus, model, tile_images, record: dict, progress) -> None:
    """The trained model, the tiles' descriptors and a fresh index into the corpus; manifest last."""
    d = corpus.directory
    staged = {}
    model = model.eval()
    model_id = save_checkpoint(model, d / "model.pt.new", model.config)
    staged["model.pt"] = d / "model.pt.new"
    extractor = DescriptorExtractor(model, "cpu", corpus.tile_px)
    descriptors = np.concatenate([extractor.describe(tile_images[i:i + 8]) for i in range(0, len(tile_images), 8)])
    _progress(progress, "re-index", 1, 1)
    np.save(d / "descriptors.npy.new.npy", descriptors.astype(np.float32))
    staged["descriptors.npy"] = d / "descriptors.npy.new.npy"
    # The index kind follows the corpus size, as at provisioning (core.tile_index), with its own parameters.
    index_config = IndexConfig(**{k: v for k, v in corpus.manifest.index.items() if k in _INDEX_CONFIG_FIELDS})
    index, index_record = build_index(descriptors.astype(np.float32), index_config)
    save_index(index, d / "index.faiss.new")
    staged["index.faiss"] = d / "index.faiss.new"
    files = dict(corpus.manifest.files)
    for name, path in staged.items():
        files[name] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
    pc = {**corpus.manifest.provision_config, "vpr_training": {k: record[k] for k in ("config", "views", "seconds")}}
    manifest = dataclasses.replace(corpus.manifest, model_id=model_id, descriptor_dim=int(descriptors.shape[1]),
                                   files=files, provision_config=pc, index=index_record)
    (d / "manifest.json.new").write_text(json.dumps(manifest.to_json(), indent=1))
    (d / "manifest.json").unlink()  # from here until the last rename the corpus reads as unprovisioned, not wrong
    for name, path in staged.items():
        os.replace(path, d / name)
    os.replace(d / "manifest.json.new", d / "manifest.json")
