"""The compression transforms on a small model: pruning's sparsity and permanence, zeroed channels, int8 layers and
descriptors that stay close to fp32 (dynamic int8 in torch, static QDQ int8 in ONNX Runtime)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from gps_denied_nav.core import compression
from gps_denied_nav.core.netvlad import NetVLADConfig, build_model, load_checkpoint, save_checkpoint
from gps_denied_nav.core.runtime import OnnxRuntime, TorchRuntime

INPUT_PX = 64
# The ImageNet backbone, a small head and a PCA layer: every kind of layer the corpus model has.
SMALL = NetVLADConfig(reduced_channels=16, num_clusters=8, whitened_dim=32)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(SMALL)


def _images(count: int, seed: int) -> list[np.ndarray]:
    """Smoothed noise: image-like spatial correlation, so the backbone's activations are not those of pure noise."""
    rng = np.random.default_rng(seed)
    noise = [rng.integers(0, 256, (INPUT_PX, INPUT_PX, 3), dtype=np.uint8) for _ in range(count)]
    return [cv2.GaussianBlur(image, (0, 0), 2.0) for image in noise]


def _state_names(model: nn.Module) -> list[str]:
    return list(model.state_dict())


@pytest.mark.parametrize("amount", [0.1, 0.3])
def test_unstructured_pruning_reaches_the_sparsity_per_layer_and_is_permanent(model, amount, tmp_path):
    pruned = compression.prune_unstructured(model, amount)
    for module, name in compression.weights_of(pruned):
        weight = getattr(module, name)
        assert int((weight == 0).sum()) >= round(amount * weight.numel())  # l1_unstructured rounds the count
        assert isinstance(weight, nn.Parameter) and not module._forward_pre_hooks  # the mask is folded in
    assert not [n for n in _state_names(pruned) if n.endswith(("_orig", "_mask"))]
    assert _state_names(pruned) == _state_names(model)  # the order the checkpoint hash needs
    save_checkpoint(pruned, tmp_path / "pruned.pt")
    reloaded, _ = load_checkpoint(tmp_path / "pruned.pt")
    assert compression.weight_sparsity(reloaded) == compression.weight_sparsity(pruned)
    assert compression.weight_sparsity(pruned) == pytest.approx(amount, abs=0.005)
    assert compression.weight_sparsity(model) < 0.01  # the input model is left as it was


def test_structured_pruning_zeroes_whole_output_channels_and_keeps_the_shapes(model):
    pruned = compression.prune_structured(model, 0.2)
    convs = compression.weights_of(pruned, (nn.Conv2d,))
    originals = [getattr(module, name) for module, name in compression.weights_of(model, (nn.Conv2d,))]
    assert len(convs) == len(originals) > 50  # the backbone's, the reduction and the NetVLAD assignment
    for (module, name), original in zip(convs, originals):
        weight = getattr(module, name).detach()
        assert weight.shape == original.shape  # zeroed, not removed
        zero_filters = (weight.flatten(1) == 0).all(dim=1)
        assert int(zero_filters.sum()) == round(0.2 * weight.shape[0])
        # The zeroed filters are those of smallest L2 norm.
        norms = original.detach().flatten(1).norm(dim=1)
        assert norms[zero_filters].max() <= norms[~zero_filters].min()
    assert not [n for n in _state_names(pruned) if n.endswith(("_orig", "_mask"))]
    assert compression.zeroed_channel_share(pruned) == pytest.approx(0.2, abs=0.02)
    assert pruned.whiten.weight.count_nonzero() == model.whiten.weight.numel()  # convs only
    descriptors = TorchRuntime(pruned, "cpu", INPUT_PX).describe(_images(2, seed=0))
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), 1.0, atol=1e-5)


def test_dynamic_quantization_replaces_the_linear_layer_and_stays_close_to_fp32(model):
    quantized = compression.quantize_dynamic_linear(model)
    assert not [m for m in quantized.modules() if type(m) is nn.Linear]
    assert isinstance(quantized.whiten, torch.ao.nn.quantized.dynamic.Linear)
    assert isinstance(model.whiten, nn.Linear)  # the input model is left as it was
    images = _images(4, seed=1)
    fp32 = TorchRuntime(model, "cpu", INPUT_PX).describe(images)
    runtime = compression.torch_runtime(quantized, model, INPUT_PX, "quantize_dynamic")
    int8 = runtime.describe(images)
    assert runtime.model_id.endswith("+quantize_dynamic") and int8.shape == fp32.shape == (4, SMALL.whitened_dim)
    # int8 weights (per tensor) and activations of the 128 -> 32 layer: measured cosine 0.99995, max diff 0.004.
    assert (int8 * fp32).sum(axis=1).min() > 0.999
    assert np.abs(int8 - fp32).max() < 0.02


def test_static_onnx_quantization_has_quantize_nodes_and_correlates_with_fp32(model, tmp_path):
    from gps_denied_nav.core.onnx_export import export_onnx

    export = export_onnx(model, INPUT_PX, tmp_path / "fp32.onnx")
    path = compression.quantize_onnx_static(export.path, tmp_path / "int8.onnx", _images(8, seed=2), INPUT_PX)
    ops = compression.onnx_op_counts(path)
    assert ops.get("QuantizeLinear", 0) > 0 and ops.get("DequantizeLinear", 0) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fp32.onnx", "int8.onnx"]  # the pre-processed file is gone
    # OnnxRuntime checks the model id and input size in the metadata: carried over from the fp32 export.
    int8 = OnnxRuntime(path, export.model_id, INPUT_PX, SMALL.whitened_dim, "cpu")
    fp32 = OnnxRuntime(export.path, export.model_id, INPUT_PX, SMALL.whitened_dim, "cpu")
    images = _images(6, seed=3)  # not the calibration images
    cosine = (int8.describe(images) * fp32.describe(images)).sum(axis=1)
    # Measured 0.986 to 0.997 here (on the trained corpus' 320 px tiles: mean 0.98, benchmarks/eval_compression.py).
    assert cosine.min() > 0.95, f"cosine int8 vs fp32 {cosine}"
