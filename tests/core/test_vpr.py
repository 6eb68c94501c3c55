"""Place-recognition training and its scoring: the trunk/head split, the loss, the masks, whitening, the
appearance families, recall and its random baseline, and `train-vpr` end to end on a tiny world (resumable;
an interrupted run leaves the corpus as it was)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from gps_denied_nav.core.netvlad import build_model
from gps_denied_nav.core.vpr_eval import random_recall, rank_queries
from gps_denied_nav.core.vpr_train import (fit_whitening, head, multi_similarity_loss, pair_masks, recall_at,
                                           trunk)
from gps_denied_nav.core.vpr_views import APPEARANCES, appearance_shift


def test_trunk_then_head_is_the_model():
    torch.manual_seed(0)
    model = build_model(imagenet_backbone=False)
    images = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(head(model, trunk(model, images)), model(images), atol=1e-5)


def test_multi_similarity_loss_pushes_the_right_way():
    pos = torch.tensor([[True, False, False]])
    neg = torch.tensor([[False, True, True]])
    easy = multi_similarity_loss(torch.tensor([[0.95, 0.1, 0.2]]), pos, neg)
    hard = multi_similarity_loss(torch.tensor([[0.6, 0.8, 0.2]]), pos, neg)
    assert float(hard) > float(easy) >= 0.0
    sim = torch.tensor([[0.6, 0.8, 0.2]], requires_grad=True)
    multi_similarity_loss(sim, pos, neg).backward()
    assert sim.grad[0, 0] < 0 and sim.grad[0, 1] > 0  # descent raises the positive, lowers the hard negative
    assert sim.grad[0, 2] == 0  # an easy negative is not mined


def test_pair_masks_leave_the_half_overlapping_tiles_out():
    tiles = np.array([[0.0, 0.0], [50.0, 0.0], [80.0, 0.0], [200.0, 0.0]])
    pos, neg = pair_masks(np.array([[10.0, 0.0]]), tiles, 50.0)
    assert pos.tolist() == [[True, True, False, False]] and neg.tolist() == [[False, False, False, True]]
    _, narrow = pair_masks(np.array([[10.0, 0.0]]), tiles, 50.0, negative_strides=1.25)  # train-vpr's default band
    assert narrow.tolist() == [[False, False, True, True]]


def test_recall_and_the_random_baseline():
    assert random_recall([10], [1], 1) == pytest.approx(0.1)
    assert random_recall([10], [2], 2) == pytest.approx(1 - (8 * 7) / (10 * 9))
    assert random_recall([10], [1], 10) == pytest.approx(1.0)
    tiles = np.eye(4, dtype=np.float32)
    centres = np.array([[0.0, 0.0], [100.0, 0.0], [200.0, 0.0], [300.0, 0.0]])
    queries = np.array([[0.1, 0.9, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]], np.float32)
    truth = np.array([[0.0, 0.0], [200.0, 0.0]])
    out = rank_queries(queries, tiles, centres, truth, 50.0)
    assert out["ranks"] == [2, 1] and out["recall@1"] == 0.5 and out["recall@5"] == 1.0
    hole = rank_queries(queries, tiles, centres, np.array([[0.0, 0.0], [500.0, 0.0]]), 50.0)
    assert hole["answerable"] == 1 and hole["recall@1"] == 0.0 and hole["ranks"] == [2, 0]  # the second: no tile
    narrowed = rank_queries(queries, tiles, centres, truth, 50.0, truth, 60.0)  # only the right tile competes
    assert narrowed["ranks"] == [1, 1] and narrowed["candidates"] == [1, 1]
    assert recall_at(queries, tiles, np.abs(truth[:, None, 0] - centres[None, :, 0]) <= 50.0)["recall@1"] == 0.5


def test_whitening_decorrelates_what_it_was_fitted_on():
    torch.manual_seed(0)
    model = build_model(imagenet_backbone=False)
    rng = np.random.default_rng(0)
    vlad = rng.normal(size=(300, 8)) @ rng.normal(size=(8, model.config.vlad_dim))  # rank 8
    fit_whitening(model, vlad.astype(np.float32), 6)
    with torch.no_grad():
        white = model.whiten(torch.from_numpy(vlad).float()).numpy()
    assert np.allclose(np.cov(white, rowvar=False), np.eye(6), atol=0.05)


@pytest.mark.parametrize("family", APPEARANCES[1:])
def test_appearance_families_change_the_picture_not_its_shape(family):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:64]
    image = np.stack([40 + x, 120 + y, 40 + x // 2], axis=2).astype(np.uint8)  # greenish
    shifted = appearance_shift(image, family, rng)
    assert shifted.shape == image.shape and shifted.dtype == np.uint8
    assert np.abs(shifted.astype(int) - image).mean() > 3.0
    with pytest.raises(ValueError, match="unknown appearance"):
        appearance_shift(image, "snow", rng)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    from gps_denied_nav.core.corpus_build import ProvisionConfig, provision
    from gps_denied_nav.sim.world import SIMULATED_MAP_ERRORS, generate_world

    work = tmp_path_factory.mktemp("vpr")
    world = generate_world(work / "world.tif", seed=3, size_m=(300.0, 300.0), gsd_m=0.5)
    provision(world, work / "corpus", ProvisionConfig(tile_px=128, init_sample_size=5000, kmeans_iterations=5,
                                                      assume_sea_level=True, **SIMULATED_MAP_ERRORS))
    return work / "corpus"


def test_train_vpr_reindexes_the_corpus_and_an_interruption_leaves_it_as_it_was(tiny_corpus, tmp_path):
    import shutil

    from gps_denied_nav.core.corpus import Corpus, file_sha256
    from gps_denied_nav.core.vpr_corpus import TrainVprConfig, train_vpr

    corpus_dir = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus_dir)
    before = {f.name: file_sha256(f) for f in corpus_dir.iterdir() if f.is_file()}
    config = TrainVprConfig(views_per_tile=2, val_views_per_tile=1, epochs=2, batch_views=8, whitened_dim=8)

    def interrupt(stage, done, total):
        if stage.startswith("epoch 2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_vpr(corpus_dir, config, progress=interrupt)
    assert {f.name: file_sha256(f) for f in corpus_dir.iterdir() if f.is_file()} == before
    Corpus.load(corpus_dir)

    # Other settings do not resume that state: they start at epoch 1 (and are interrupted there).
    stages = []

    def record_then_interrupt(stage, done, total):
        stages.append(stage)
        interrupt(stage, done, total)

    with pytest.raises(KeyboardInterrupt):
        train_vpr(corpus_dir, dataclasses.replace(config, negative_strides=2.0), progress=record_then_interrupt)
    assert any(s.startswith("epoch 1") for s in stages)

    stages = []
    record = train_vpr(corpus_dir, config, progress=lambda s, d, t: stages.append(s))  # resumes at epoch 2
    assert not any(s.startswith(("render", "trunk", "epoch 1")) for s in stages)  # caches and epoch 1 reused
    assert [h["epoch"] for h in record["history"]] == [1, 2]
    corpus = Corpus.load(corpus_dir)
    model = corpus.load_model()
    assert corpus.model_id != Corpus.load(tiny_corpus).model_id
    assert corpus.descriptor_dim == model.config.descriptor_dim == corpus.descriptors.shape[1]
    assert model.config.whitened_dim in (0, 8) and record["whitening"]["kept"] == bool(model.config.whitened_dim)
    assert json.loads((corpus_dir / "train_vpr.json").read_text())["recall_after"]["held_out"]
    if model.config.whitened_dim:  # a trained, whitened model is not trained again from there
        with pytest.raises(ValueError, match="re-provision"):
            train_vpr(corpus_dir, config)


def test_views_cover_the_share_of_the_tile_asked_for(tiny_corpus):
    from gps_denied_nav.core.corpus import Corpus
    from gps_denied_nav.core.map_raster import load_geotiff
    from gps_denied_nav.core.vpr_views import ViewConfig, render_views

    corpus = Corpus.load(tiny_corpus)
    raster = load_geotiff(corpus.manifest.source, frame=corpus.frame)
    bounds = corpus.tile_bounds_enu_m[:1]
    centre, side = (bounds[0, :2] + bounds[0, 2:]) / 2, bounds[0, 2] - bounds[0, 0]
    offsets = {}
    for span in (0.5, 1.0):
        views = render_views(raster, corpus.ground_up_m, corpus.tile_size_m, corpus.tile_px, bounds, 12, ("as_mapped",),
                             np.random.default_rng(0), ViewConfig(camera_span_of_tile=span, max_tilt_deg=0.0,
                                                                  attitude_error_deg=0.0, min_valid_fraction=0.0))
        offsets[span] = np.abs(np.array([v.ground_centre_enu_m for v in views]) - centre).max(axis=0) / side
    assert (offsets[0.5] <= 0.25 + 1e-6).all()  # level camera: the ground point is the camera's foot
    assert offsets[1.0].max() > 0.3 and (offsets[1.0] <= 0.5 + 1e-6).all()


def test_train_vpr_refuses_a_corpus_without_its_map(tiny_corpus, tmp_path):
    import shutil

    from gps_denied_nav.core.vpr_corpus import train_vpr

    corpus_dir = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus_dir)
    with pytest.raises(FileNotFoundError, match="--ortho"):
        train_vpr(corpus_dir, ortho=tmp_path / "gone.tif")


def test_multi_similarity_loss_of_only_easy_pairs_is_zero_and_differentiable():
    sim = torch.tensor([[0.99, 0.0, 0.0]], requires_grad=True)
    loss = multi_similarity_loss(sim, torch.tensor([[True, False, False]]), torch.tensor([[False, True, True]]))
    loss.backward()  # a batch with nothing to learn must not break the training step
    assert float(loss) < 0.05 and sim.grad is not None


def test_colour_jitter_turns_hues_and_keeps_the_layout():
    from gps_denied_nav.core.vpr_views import colour_jitter

    image = np.zeros((8, 8, 3), np.uint8)
    image[:, :4] = (40, 160, 40)  # green field beside a black road
    out = colour_jitter(image, np.random.default_rng(3), hue_deg=36.0, grey_probability=0.0)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (out[:, 4:] == 0).all(), "black stays black"
    assert not np.array_equal(out[:, :4], image[:, :4]), "the green was not turned"
    grey = colour_jitter(image, np.random.default_rng(0), grey_probability=1.0)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
