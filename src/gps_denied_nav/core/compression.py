"""Compressed variants of the descriptor model: magnitude pruning, dynamic int8 (torch) and static int8 (ONNX Runtime).

What a smaller or faster descriptor model costs in retrieval is measured by `benchmarks/eval_compression.py`;
this module holds the transforms, so that they are tested on a small model. Each torch transform returns a
new model (the input is deep-copied) in eval mode:

- `prune_unstructured`: L1 magnitude pruning of every conv and linear weight, the same share per layer, made
  permanent (``prune.remove``), so the state dict has plain weights with zeros and no ``weight_orig``/mask.
- `prune_structured`: the output channels with the smallest L2 norm of every conv are zeroed
  (``prune.ln_structured``, n=2, dim=0). The tensors keep their shapes: dense kernels multiply the zeros
  as fast as any other number, and the batch norm after a zeroed conv channel still adds its shift.
- `quantize_dynamic_linear`: ``torch.ao.quantization.quantize_dynamic`` on ``nn.Linear`` only (eager torch
  has no dynamic int8 convolution); in the NetVLAD model that is the PCA whitening layer alone.
- `quantize_onnx_static`: ONNX Runtime's static QDQ quantisation of an exported graph, weights int8 per
  channel, activations uint8 with ranges calibrated on images (the corpus' own tiles in the benchmark).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from .runtime import ONNX_INPUT, TorchRuntime, resize_images

PRUNED_KINDS = (nn.Conv2d, nn.Linear)  # EfficientNet-Lite's same-padding convs subclass nn.Conv2d
# Quantised in the ONNX graph: the convolutions (nearly all the arithmetic) and the whitening Gemm. "Clip" is
# the ReLU6 after each conv: listed, the quantiser takes the conv's output range after the clip (0..6), not
# the folded batch norm's pre-activation range (-141..167 at the stem: 5 of 256 levels left for 0..6; tile
# descriptors fell to cosine 0.69 with the fp32 ones). Not listed: NetVLAD's one MatMul (soft assignments
# [0, 1] times features; quantised, the mean cosine fell from 0.98 to 0.55) and the input standardisation,
# softmax and normalisations, which stay float32 between DequantizeLinear and QuantizeLinear.
QUANTIZED_ONNX_OPS = ("Conv", "Gemm", "Clip")


def weights_of(model: nn.Module, kinds: tuple[type, ...] = PRUNED_KINDS) -> list[tuple[nn.Module, str]]:
    """(module, "weight") of every module of ``kinds``, in module order: what the pruning functions touch."""
    return [(module, "weight") for module in model.modules() if isinstance(module, kinds)]


def prune_unstructured(model: nn.Module, amount: float) -> nn.Module:
    """A copy with the ``amount`` (0..1) smallest-magnitude weights of each conv and linear layer set to 0.

    Per layer, not global: one ranking over all layers would strip the layers whose weights are small by
    scale (the NetVLAD reduction's median |w| is 0.012, the stem's 0.17) long before the others.
    """
    pruned = copy.deepcopy(model).eval()
    for module, name in weights_of(pruned):
        prune.l1_unstructured(module, name, amount=amount)
        prune.remove(module, name)  # fold the mask into the weight: a plain parameter, no weight_orig
    return _in_original_order(model, pruned)


def prune_structured(model: nn.Module, amount: float) -> nn.Module:
    """A copy with the ``amount`` (0..1) of output channels of smallest L2 norm of each conv zeroed.

    Depthwise convs (one filter per channel) included. The shapes do not change; see the module docstring.
    """
    pruned = copy.deepcopy(model).eval()
    for module, name in weights_of(pruned, (nn.Conv2d,)):
        prune.ln_structured(module, name, amount=amount, n=2, dim=0)
        prune.remove(module, name)
    return _in_original_order(model, pruned)


def _in_original_order(model: nn.Module, pruned: nn.Module) -> nn.Module:
    """A copy of ``model`` holding ``pruned``'s weights. ``prune.remove`` registers each weight again, after
    its bias: the state dict's order changes, and with it `netvlad.weights_sha256`, so a checkpoint of the
    pruned model would fail its own hash check on loading (which hashes a freshly built model's order)."""
    ordered = copy.deepcopy(model).eval()
    ordered.load_state_dict(pruned.state_dict())
    return ordered


def quantize_dynamic_linear(model: nn.Module) -> nn.Module:
    """A copy whose ``nn.Linear`` layers compute in int8 (weights quantised once, activations per call)."""
    import warnings

    with warnings.catch_warnings():
        # torch.ao.quantization warns that it moves to torchao; it is what this torch ships.
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


def weight_sparsity(model: nn.Module, kinds: tuple[type, ...] = PRUNED_KINDS) -> float:
    """Share of exact zeros over the weights of ``kinds`` (0..1)."""
    zeros = total = 0
    for module, name in weights_of(model, kinds):
        weight = getattr(module, name)
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / max(total, 1)


def zeroed_channel_share(model: nn.Module) -> float:
    """Share of conv output channels whose whole filter is zero (0..1)."""
    zeroed = total = 0
    for module, name in weights_of(model, (nn.Conv2d,)):
        weight = getattr(module, name).detach()
        zeroed += int((weight.flatten(1) == 0).all(dim=1).sum())
        total += weight.shape[0]
    return zeroed / max(total, 1)


def torch_runtime(model: nn.Module, reference: nn.Module, input_px: int, variant: str) -> TorchRuntime:
    """The torch backend (traced, CPU) running a transformed ``model`` made from ``reference``.

    The runtime is built on the reference and its module swapped before the first trace: the model id
    hashes the state dict, and a dynamically quantised one holds packed parameters (a dtype, a tuple) that
    cannot be hashed. The id says what ran: the reference's, "+variant".
    """
    runtime = TorchRuntime(reference, device="cpu", input_px=input_px)
    runtime.extractor.model = model.eval()
    runtime.model_id = f"{runtime.model_id}+{variant}"
    return runtime


def state_dict_bytes(model: nn.Module, path) -> int:
    """Size in bytes of ``model``'s state dict saved with torch.save to ``path`` (what a checkpoint weighs)."""
    torch.save(model.state_dict(), str(path))
    return Path(path).stat().st_size


def onnx_input_batches(images: Sequence[np.ndarray], input_px: int):
    """[1 x 3 x S x S] float32 0..255 batches, one per image: the exported graph's input (runtime.OnnxRuntime)."""
    for image in images:
        batch = resize_images([image], input_px).transpose(0, 3, 1, 2)
        yield np.ascontiguousarray(batch, dtype=np.float32)


def quantize_onnx_static(fp32_path, out_path, calibration_images: Sequence[np.ndarray], input_px: int,
                         op_types: Sequence[str] = QUANTIZED_ONNX_OPS) -> Path:
    """Quantise the exported graph at ``fp32_path`` to QDQ int8 at ``out_path``; returns ``out_path``.

    calibration_images: [H x W x 3] uint8 RGB, resized as the runtime resizes them; their activation ranges
    (min/max) fix the uint8 scales. ``quant_pre_process`` first runs shape inference and ONNX Runtime's
    graph optimisations (batch norm folded into the convs, which then quantise as one). The fp32 file's
    metadata (model id, input size) is carried over so that `runtime.OnnxRuntime` accepts the result.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = onnx_input_batches(calibration_images, input_px)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {ONNX_INPUT: batch}

    out_path = Path(out_path)
    prepared = out_path.with_name(out_path.stem + ".pre.onnx")
    quant_pre_process(str(fp32_path), str(prepared))
    quantize_static(str(prepared), str(out_path), _Reader(), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(op_types), per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    prepared.unlink()
    source, proto = onnx.load(str(fp32_path), load_external_data=False), onnx.load(str(out_path))
    known = {p.key for p in proto.metadata_props}
    for prop in source.metadata_props:
        if prop.key not in known:
            proto.metadata_props.add(key=prop.key, value=prop.value)
    proto.metadata_props.add(key="quantization", value=f"static QDQ int8 per-channel, {len(calibration_images)} "
                                                       f"calibration images, ops {','.join(op_types)}")
    onnx.save(proto, str(out_path))
    return out_path


def onnx_op_counts(path) -> dict[str, int]:
    """Operator type -> node count of the ONNX graph at ``path`` (e.g. how many QuantizeLinear)."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts
