"""Export a corpus' descriptor model to ONNX (``CORPUS/model.onnx``) for the onnxruntime backend, checked against torch.

The exported graph is `DescriptorExtractor.graph_module`: input normalisation (with `standardize`, masks and
``torch.where`` included) and the model, taking the float32 0..255 batch [N x 3 x S x S] named ``images_dn``
(batch dynamic, S fixed at the corpus' tile size: the EfficientNet backbone's padding is traced for it)
and returning ``descriptors`` [N x D]. The metadata records the source model id, the input size, the opset
and the exporter versions; `runtime.OnnxRuntime` refuses a file whose model id is not the corpus' (a stale
export after ``gdn train-vpr``). Before the file replaces any earlier export (written to a temporary file,
then ``os.replace``), ONNX Runtime's descriptors are compared with torch's on random and map images, batch
1 and 3, and the export fails above `PARITY_TOLERANCE`.

Exporter: torch's TorchScript exporter (``dynamo=False``). Both exporters export the EfficientNet-Lite0 and
the VGG16 NetVLAD here with the same parity (about 1e-7); the dynamo one needs two more packages pinned
(onnxscript, onnx-ir) and took twice as long, and the TorchScript one builds the graph by tracing, as
the torch backend's own traces do. Opset 17: the newest that TensorRT 8.5/8.6 (JetPack 5 and 6) parse,
and every operator these models use exists there.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import RuntimeUnavailable
from .rectify import FILL_VALUE
from .runtime import ONNX_FILE, ONNX_INPUT, ONNX_OUTPUT, OnnxRuntime, TorchRuntime

ONNX_OPSET = 17
MIN_OPSET = 17
PARITY_TOLERANCE = 1e-4  # max |ONNX Runtime - torch| over unit descriptors; measured ~1e-7
EXPORT_FORMAT = "gps_denied_nav.descriptor_onnx/1"


@dataclass(frozen=True)
class OnnxExport:
    path: Path
    model_id: str
    opset: int
    max_abs_diff: float  # largest |ONNX Runtime - torch| over every check descriptor (unit vectors)
    checked: str  # what was compared


def export_onnx(model, input_px: int, path, opset: int = ONNX_OPSET,
                map_images: list[np.ndarray] | None = None) -> OnnxExport:
    """Export ``model`` (a NetVLADModel or VGG16NetVLAD; moved to the CPU in eval mode) to ``path``.

    map_images: [H x W x 3] uint8 RGB views of real imagery for the parity check (smoothed noise when
    none). Raises RuntimeError, leaving no file behind, when ONNX Runtime differs from torch by more than
    PARITY_TOLERANCE.
    """
    try:
        import onnx
    except ImportError as exc:
        raise RuntimeUnavailable("exporting to ONNX needs the onnx and onnxruntime packages") from exc
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be {MIN_OPSET} or newer, got {opset}")
    path = Path(path)
    reference = TorchRuntime(model, device="cpu", input_px=input_px)
    module = reference.extractor.graph_module().eval()
    rng = np.random.default_rng(0)
    example = torch.from_numpy(rng.uniform(0.0, 255.0, (2, 3, input_px, input_px)).astype(np.float32))
    tmp = path.with_name(path.name + ".tmp")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The exporter warns that it is the legacy one and that strided slices are not constant-folded.
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), str(tmp), dynamo=False, opset_version=opset,
                              input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                              dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}})
        proto = onnx.load(str(tmp))
        metadata = {"format": EXPORT_FORMAT, "model_id": reference.model_id, "input_px": str(input_px),
                    "descriptor_dim": str(reference.descriptor_dim), "opset": str(opset),
                    "exporter": "torch.onnx.export(dynamo=False)", "torch_version": torch.__version__,
                    "onnx_version": onnx.__version__}
        for key, value in metadata.items():
            proto.metadata_props.add(key=key, value=value)
        # The flattened NetVLAD vector leaves D symbolic in the traced graph; it is fixed by the model.
        proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = reference.descriptor_dim
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        del proto
        exported = OnnxRuntime(tmp, reference.model_id, input_px, reference.descriptor_dim, device="cpu")
        max_abs_diff, checked = _parity(reference, exported, _check_images(input_px, map_images, rng))
        if not max_abs_diff <= PARITY_TOLERANCE:
            raise RuntimeError(f"ONNX export of {reference.model_id} differs from torch by {max_abs_diff:.2e} "
                               f"(> {PARITY_TOLERANCE:.0e}) on {checked}; {path} not written")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return OnnxExport(path, reference.model_id, opset, max_abs_diff, checked)


def export_corpus_onnx(corpus_dir, opset: int = ONNX_OPSET) -> OnnxExport:
    """Export the model of the corpus at ``corpus_dir`` to CORPUS/model.onnx, checked on views of its map."""
    from .corpus import Corpus

    corpus = Corpus.load(corpus_dir)
    return export_onnx(corpus.load_model(), corpus.tile_px, Path(corpus_dir) / ONNX_FILE, opset,
                       map_images=_tile_views(corpus))


def _tile_views(corpus, count: int = 3) -> list[np.ndarray]:
    """Views of ``count`` corpus tiles spread over the map, cut from its preview (the tiles are not stored)."""
    image, _valid, grid = corpus.map_preview()
    views = []
    for tile in [corpus.tiles[i] for i in np.linspace(0, corpus.num_tiles - 1, count).astype(int)]:
        col0, col1 = (np.array([tile.east_min_m, tile.east_max_m]) - grid.east_min_m) / grid.gsd_m
        row0, row1 = (grid.north_max_m - np.array([tile.north_max_m, tile.north_min_m])) / grid.gsd_m
        view = image[max(0, int(row0)):int(np.ceil(row1)), max(0, int(col0)):int(np.ceil(col1))]
        if min(view.shape[:2]) >= 8:
            views.append(np.ascontiguousarray(view))
    return views


def _check_images(input_px: int, map_images, rng) -> dict[str, list[np.ndarray]]:
    """Named batches of three [S x S x 3] uint8 images: uniform noise, and map views (smoothed noise when
    there are none) whose last one has the nodata fill over its west half, as a rectified query's corner."""
    noise = [rng.integers(0, 256, (input_px, input_px, 3), dtype=np.uint8) for _ in range(3)]
    if not map_images:
        import cv2

        map_images = [cv2.GaussianBlur(image, (0, 0), input_px / 40.0) for image in noise]
    views = [np.asarray(map_images[i % len(map_images)]).copy() for i in range(3)]
    views[-1][:, : views[-1].shape[1] // 2] = FILL_VALUE
    return {"random": noise, "map": views}


def _parity(reference: TorchRuntime, exported: OnnxRuntime, batches: dict) -> tuple[float, str]:
    """Largest |ONNX Runtime - torch| over the descriptors of each batch, whole (3) and its first image (1)."""
    worst = 0.0
    for images in batches.values():
        for batch in (images[:1], images):
            worst = max(worst, float(np.abs(exported.describe(batch) - reference.describe(batch)).max()))
    return worst, f"{' and '.join(batches)} images, batch 1 and 3"


def cmd_export_onnx(args) -> int:
    """``gdn export-onnx --corpus DIR [--opset N]``."""
    result = export_corpus_onnx(args.corpus, args.opset)
    print(f"{result.path}: {result.model_id}, opset {result.opset}; ONNX Runtime vs torch max abs difference "
          f"{result.max_abs_diff:.2e} (tolerance {PARITY_TOLERANCE:.0e}) on {result.checked}")
    print("use it: inference_node backend:=onnxruntime (params/gps_denied_nav.yaml)")
    return 0
