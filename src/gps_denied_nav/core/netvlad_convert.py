"""Convert VGG16-NetVLAD checkpoints of other code bases into this project's checkpoint format.

Two layouts hold the same network (`core.netvlad_vgg16`) under different names:

- ``pytorch-netvlad``: the public pytorch-NetVlad project (Nanne/pytorch-NetVlad, Pittsburgh-trained) and
  its descendants. A dict ``{epoch, state_dict, recalls, best_score, optimizer, parallel}`` (or Patch-NetVLAD's
  ``{num_pcs, state_dict}``); ``encoder.<i>.weight/bias`` at the conv indices of ``vgg16().features``,
  ``pool.conv.weight`` [K x 512 x 1 x 1] (a bias only when trained with vladv2), ``pool.centroids``
  [K x 512] and, when a whitened PCA was added, ``WPCA.0.weight`` [P x K*512 x 1 x 1] / ``WPCA.0.bias`` [P]:
  a 1x1 conv, i.e. a Linear. nn.DataParallel's ``module.`` name parts are dropped.
- ``seed``: the seed system's own: the same encoder names, ``pool.conv.{weight,bias}``, ``pool.centroids``,
  ``pca.{weight,bias}`` (Linear [P x K*512]).

K and P are read from the file. Conversion is strict: any missing or unexpected key or a shape that does
not fit raises CheckpointError listing them all, because a half-loaded VGG gives descriptors that look fine
and retrieve nothing. Files are read with ``weights_only=True``: besides tensors and plain containers only
the numpy scalar types in `SAFE_GLOBALS` (pytorch-NetVlad's recalls and best score are numpy floats) may
be unpickled; anything else is refused, never loaded with ``weights_only=False``.
"""
from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .corpus import file_sha256
from .netvlad import CheckpointError, save_checkpoint
from .netvlad_vgg16 import ENCODER_CHANNELS, VGG16NetVLAD, VGG16NetVLADConfig, vgg16_conv_shapes

LAYOUTS = ("auto", "pytorch-netvlad", "seed")
_NUMPY_SCALAR = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
# What a numpy float or int scalar pickles to, under numpy 1 and 2 module names; nothing that can run code.
SAFE_GLOBALS = [np.dtype, (_NUMPY_SCALAR, "numpy.core.multiarray.scalar"),
                (_NUMPY_SCALAR, "numpy._core.multiarray.scalar")] + sorted(
    {type(np.dtype(code)) for code in ("f8", "f4", "i8", "i4", "bool")}, key=str)


@dataclass(frozen=True)
class Conversion:
    """What `convert_checkpoint` wrote."""

    model_id: str
    layout: str  # the layout read: pytorch-netvlad or seed
    descriptor_dim: int
    provenance: dict


def read_checkpoint(path) -> dict:
    """``torch.load(weights_only=True)`` with the numpy-scalar allow-list; CheckpointError names what it refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "file does not exist")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip, runtime and EOF errors alike for a damaged file
        refused = _refused_globals(path, exc) if isinstance(exc, pickle.UnpicklingError) else []
        if refused:
            raise CheckpointError(path, f"refused to unpickle {', '.join(refused)}: not tensors, plain containers "
                                        "or numpy scalars, and a weights-only load never runs code from the file; "
                                        "save the state dict alone (torch.save({'state_dict': ...}, ...))") from exc
        raise CheckpointError(path, f"not a readable torch checkpoint ({type(exc).__name__}: "
                                    f"{str(exc).split('WeightsUnpickler error:')[-1].strip()})") from exc
    return payload


def _refused_globals(path: Path, exc: Exception) -> list[str]:
    """Classes and functions the file wanted unpickled beyond the allow-list ([] if that was not the problem)."""
    allowed = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__name__}" for g in SAFE_GLOBALS}
    try:
        listed = [name for name in torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
                  if name not in allowed]
    except Exception:  # legacy (non-zip) files cannot be listed: the message names the first one
        listed = []
    found = re.findall(r"GLOBAL (\S+) was not an allowed global|but got <class '([^']+)'>", str(exc))
    return listed or sorted({a or b for a, b in found})


def state_dict_of(path, payload) -> dict[str, torch.Tensor]:
    """The tensors of ``payload['state_dict']`` (or of a bare state dict), DataParallel's ``module.`` removed."""
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not state:
        raise CheckpointError(path, "holds no state dict (neither a 'state_dict' entry nor a dict of tensors)")
    not_tensors = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise CheckpointError(path, f"state dict entries that are not tensors: {not_tensors[:8]}")
    return {re.sub(r"(^|\.)module\.", r"\1", name): tensor for name, tensor in state.items()}


def expected_shapes(layout: str, state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """Source key -> shape for ``layout``, with K and P taken from the file's centroids and projection."""
    centroids = state.get("pool.centroids")
    clusters = int(centroids.shape[0]) if centroids is not None and centroids.dim() == 2 else 64
    vlad_dim = clusters * ENCODER_CHANNELS
    shapes: dict[str, tuple[int, ...]] = {}
    for index, (out_channels, in_channels) in vgg16_conv_shapes().items():
        shapes[f"encoder.{index}.weight"] = (out_channels, in_channels, 3, 3)
        shapes[f"encoder.{index}.bias"] = (out_channels,)
    shapes["pool.conv.weight"] = (clusters, ENCODER_CHANNELS, 1, 1)
    shapes["pool.centroids"] = (clusters, ENCODER_CHANNELS)
    if layout == "seed" or "pool.conv.bias" in state:  # pytorch-NetVlad: vladv2 only
        shapes["pool.conv.bias"] = (clusters,)
    if layout == "seed":
        projection = state.get("pca.weight")
        pca_dim = int(projection.shape[0]) if projection is not None and projection.dim() >= 1 else 4096
        shapes.update({"pca.weight": (pca_dim, vlad_dim), "pca.bias": (pca_dim,)})
    elif any(name.startswith("WPCA.") for name in state):
        projection = state.get("WPCA.0.weight")
        pca_dim = int(projection.shape[0]) if projection is not None and projection.dim() >= 1 else 4096
        shapes.update({"WPCA.0.weight": (pca_dim, vlad_dim, 1, 1), "WPCA.0.bias": (pca_dim,)})
    return shapes


def _check(path, layout: str, state: dict, expected: dict) -> None:
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [f"{name} {tuple(state[name].shape)} (expected {shape})" for name, shape in expected.items()
             if name in state and tuple(state[name].shape) != shape]
    if missing or unexpected or wrong:
        problems = [f"{label} {len(names)}: {names[:8]}{' ...' if len(names) > 8 else ''}"
                    for label, names in (("missing", missing), ("unexpected", unexpected),
                                         ("wrong shape", wrong)) if names]
        raise CheckpointError(path, f"does not fit VGG16-NetVLAD in the {layout} layout: " + "; ".join(problems))


def convert_state(path, state: dict[str, torch.Tensor], layout: str = "auto") -> tuple[VGG16NetVLAD, str]:
    """Source state dict -> (VGG16NetVLAD in eval mode, layout read); floats become float32."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "auto":  # only the seed names its projection 'pca'
        layout = "seed" if any(name.startswith("pca.") for name in state) else "pytorch-netvlad"
    expected = expected_shapes(layout, state)
    _check(path, layout, state, expected)
    clusters = expected["pool.centroids"][0]
    projection = "pca" if layout == "seed" else "WPCA.0"
    pca_dim = expected[f"{projection}.bias"][0] if f"{projection}.bias" in expected else 0
    model = VGG16NetVLAD(VGG16NetVLADConfig(num_clusters=clusters, pca_dim=pca_dim))
    target = {name: state[name] for name in expected if name.startswith("encoder.")}
    target["netvlad.assignment.weight"] = state["pool.conv.weight"]
    # vladv1 has no bias: zeros give the same soft assignment.
    target["netvlad.assignment.bias"] = state.get("pool.conv.bias", torch.zeros(clusters))
    target["netvlad.centroids"] = state["pool.centroids"]
    if pca_dim:
        target["pca.weight"] = state[f"{projection}.weight"].reshape(pca_dim, -1)  # a 1x1 conv is a Linear
        target["pca.bias"] = state[f"{projection}.bias"]
    # Patch-NetVLAD's add_pca.py stores its WPCA in float64 (from numpy); the runtime is float32.
    model.load_state_dict({name: tensor.to(torch.float32) for name, tensor in target.items()}, strict=True)
    return model.eval(), layout


def _plain(value):
    """A number of the source's bookkeeping (int, float, numpy scalar) as a plain Python number, else None."""
    if isinstance(value, (bool, int, float, np.integer, np.floating)):
        return value.item() if isinstance(value, np.generic) else value
    return None


def convert_checkpoint(source, out, layout: str = "auto") -> Conversion:
    """Read ``source`` (either layout), write the project's checkpoint to ``out`` with provenance."""
    source = Path(source)
    payload = read_checkpoint(source)
    model, layout = convert_state(source, state_dict_of(source, payload), layout)
    container = payload if isinstance(payload, dict) and "state_dict" in payload else {}
    provenance = {"source_file": source.name, "source_sha256": file_sha256(source), "source_layout": layout,
                  "source_entries": sorted(str(k) for k in container), "converted_by": "gdn convert-netvlad"}
    for key in ("epoch", "best_score", "num_pcs"):
        if _plain(container.get(key)) is not None:
            provenance[f"source_{key}"] = _plain(container[key])
    recalls = container.get("recalls")
    if isinstance(recalls, dict):  # pytorch-NetVlad: {N: recall@N} on its validation split
        provenance["source_recalls"] = {str(n): _plain(v) for n, v in recalls.items() if _plain(v) is not None}
    model_id = save_checkpoint(model, out, model.config, provenance=provenance)
    return Conversion(model_id, layout, model.config.descriptor_dim, provenance)
