"""NetVLAD layer maths, the default model, checkpoints and the inference runtime's device handling."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gps_denied_nav.core.descriptor import DescriptorExtractor, RuntimeUnavailable, resolve_device
from gps_denied_nav.core.netvlad import (CheckpointError, NetVLAD, NetVLADConfig, build_model, compute_model_id,
                                        initialize_from_local_features, load_checkpoint, save_checkpoint)
from gps_denied_nav.core.rectify import FILL_VALUE

SMALL = NetVLADConfig(reduced_channels=16, num_clusters=8)


def unit_features(batch=2, dim=16, height=5, width=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(batch, dim, height, width, generator=generator), dim=1)


def test_netvlad_shape_and_norms():
    layer = NetVLAD(num_clusters=8, dim=16)
    layer.set_centroids(F.normalize(torch.randn(8, 16), dim=1), alpha=10.0)
    out = layer(unit_features())
    assert out.shape == (2, 8 * 16)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    # Intra-normalisation: every cluster block has the same norm, 1/sqrt(K).
    torch.testing.assert_close(out.view(2, 8, 16).norm(dim=2), torch.full((2, 8), 8**-0.5))


def test_netvlad_is_orderless_and_cluster_permutation_permutes_blocks():
    layer = NetVLAD(num_clusters=8, dim=16)
    centroids = F.normalize(torch.randn(8, 16), dim=1)
    layer.set_centroids(centroids, alpha=10.0)
    x = unit_features()
    shuffled = x.flatten(2)[:, :, torch.randperm(30)].view_as(x)
    torch.testing.assert_close(layer(shuffled), layer(x))
    order = torch.randperm(8)
    permuted = NetVLAD(num_clusters=8, dim=16)
    permuted.set_centroids(centroids[order], alpha=10.0)
    torch.testing.assert_close(permuted(x).view(2, 8, 16), layer(x).view(2, 8, 16)[:, order])
    # Not invariant to the content: a different feature map gives a different descriptor.
    assert (layer(x) - layer(unit_features(seed=1))).abs().max() > 1e-2


def test_hard_assignment_limit_is_vlad():
    """With a large alpha the soft assignment becomes nearest-centroid VLAD (paper eq. 1)."""
    layer = NetVLAD(num_clusters=4, dim=16)
    # Seeded: with the global RNG the centroids depended on test order, and a point almost equidistant
    # from two centroids (dot products 2e-4 apart) is still soft at alpha 1e4 and failed CI once.
    centroids = F.normalize(torch.randn(4, 16, generator=torch.Generator().manual_seed(2)), dim=1)
    layer.set_centroids(centroids, alpha=1e4)
    x = unit_features(batch=1)
    local = x.flatten(2)[0].T  # [N x C]
    similarity = (local @ centroids.T).sort(dim=1, descending=True).values
    assert (similarity[:, 0] - similarity[:, 1]).min() > 1e-2, "every point must have a clear nearest centroid"
    nearest = torch.cdist(local, centroids).argmin(dim=1)
    vlad = torch.stack([(local[nearest == k] - centroids[k]).sum(dim=0) for k in range(4)])
    expected = F.normalize(F.normalize(vlad, dim=1).flatten(), dim=0)
    torch.testing.assert_close(layer(x)[0], expected, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def small_model():
    model = build_model(SMALL)
    rng = np.random.default_rng(0)
    alpha = initialize_from_local_features(model, rng.uniform(0, 6, (200, 1280)).astype(np.float32))
    assert alpha > 0
    return model


def test_model_forward_and_pca_init(small_model):
    images = torch.randn(2, 3, 64, 96)
    out = small_model(images)
    assert out.shape == (2, SMALL.descriptor_dim)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    weights = small_model.reduction.weight.detach().view(16, 1280)
    torch.testing.assert_close(weights @ weights.T, torch.eye(16), atol=1e-5, rtol=0)  # orthonormal PCA basis


def test_checkpoint_round_trip(small_model, tmp_path):
    path = tmp_path / "model.pt"
    identifier = save_checkpoint(small_model, path, SMALL)
    assert identifier == compute_model_id(small_model) and identifier.startswith("netvlad_efficientnet_lite0@")
    loaded, config = load_checkpoint(path)
    assert config == SMALL and compute_model_id(loaded) == identifier
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), small_model(images))


def test_checkpoint_errors_name_the_file_and_problem(small_model, tmp_path):
    good = tmp_path / "model.pt"
    save_checkpoint(small_model, good, SMALL)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:5000])
    not_a_checkpoint = tmp_path / "notes.pt"
    not_a_checkpoint.write_text("hello")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    cases = {truncated: "not a readable", not_a_checkpoint: "not a readable", foreign: "not a gps_denied_nav",
             tmp_path / "absent.pt": "does not exist"}
    for path, problem in cases.items():
        with pytest.raises(CheckpointError, match=problem) as info:
            load_checkpoint(path)
        assert str(path) in str(info.value)

    payload = torch.load(good, weights_only=True)
    wrong_shape = dict(payload, config=dataclasses.asdict(dataclasses.replace(SMALL, num_clusters=4)))
    torch.save(wrong_shape, tmp_path / "wrong_shape.pt")
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(tmp_path / "wrong_shape.pt")
    missing = dict(payload, state_dict={k: v for k, v in payload["state_dict"].items() if "centroids" not in k})
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="missing.*centroids"):
        load_checkpoint(tmp_path / "missing.pt")
    tampered_state = dict(payload["state_dict"])
    tampered_state["netvlad.centroids"] = tampered_state["netvlad.centroids"] + 1.0
    torch.save(dict(payload, state_dict=tampered_state), tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(tmp_path / "tampered.pt")


def test_descriptor_extractor_outputs(small_model):
    extractor = DescriptorExtractor(small_model, device="cpu", input_px=64, batch_size=3)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (80, 80, 3), dtype=np.uint8) for _ in range(4)]
    descriptors = extractor.describe(images)
    assert descriptors.shape == (4, SMALL.descriptor_dim) and descriptors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(extractor.describe(np.stack(images[:1])), descriptors[:1], atol=1e-5)
    assert extractor.local_features(images[:2]).shape == (2, 1280, 2, 2)
    assert extractor.model_id == compute_model_id(small_model)
    with pytest.raises(ValueError, match="multiple of 32"):
        DescriptorExtractor(small_model, device="cpu", input_px=100)


def test_traced_descriptors_equal_eager_ones(small_model):
    """The trace (one GIL acquisition per forward pass) computes what the eager model computes, per batch shape."""
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(5)]
    traced = DescriptorExtractor(small_model, device="cpu", input_px=64, batch_size=3)
    eager = DescriptorExtractor(small_model, device="cpu", input_px=64, batch_size=3, traced=False)
    np.testing.assert_allclose(traced.describe(images), eager.describe(images), atol=1e-5)
    assert len(traced._traces) == 2  # batches of 3 and of 2


def test_device_selection_never_falls_back_silently(small_model):
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeUnavailable, match="no CUDA"):
            DescriptorExtractor(small_model, device="cuda")
    with pytest.raises(RuntimeUnavailable, match="tensorrt"):
        DescriptorExtractor(small_model, device="tensorrt")
    with pytest.raises(ValueError):
        resolve_device("tpu")


def test_input_standardisation_removes_exposure_and_colour_cast(small_model):
    rng = np.random.default_rng(4)
    image = rng.integers(30, 200, (64, 64, 3)).astype(np.uint8)
    image[:16] = FILL_VALUE  # nodata fill: ignored by the statistics and left as it is
    changed = np.clip(image * np.array([0.7, 0.8, 0.9]) + 15, 0, 255).astype(np.uint8)
    changed[:16] = FILL_VALUE
    batch = DescriptorExtractor(small_model, device="cpu", input_px=64).preprocess([image, changed])
    torch.testing.assert_close(batch[0], batch[1], atol=0.03, rtol=0)
    data = batch[:, :, 16:]
    torch.testing.assert_close(data.mean(dim=(2, 3)), torch.zeros(2, 3), atol=1e-3, rtol=0)  # 127 -> ~0
    raw = build_model(dataclasses.replace(SMALL, standardize_input=False), imagenet_backbone=False)
    raw_batch = DescriptorExtractor(raw, device="cpu", input_px=64).preprocess([image, changed])
    assert (raw_batch[0] - raw_batch[1]).abs().max() > 0.3
