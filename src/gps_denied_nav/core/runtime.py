"""One interface for running the global descriptor, with a PyTorch and an ONNX Runtime backend behind it.

`DescriptorRuntime` is what the inference node needs: uint8 RGB images in, unit descriptors out, and the
model id that says which corpus the descriptors can be searched in. `TorchRuntime` wraps
`descriptor.DescriptorExtractor` (eager or traced PyTorch); `OnnxRuntime` runs the corpus' exported graph
(``model.onnx``, written by `core.onnx_export`) in an ONNX Runtime session, on the CPU or on a CUDA or
TensorRT execution provider when the device asks for one. Both take the same float32 0..255 batch from
`resize_images` (normalisation, including `descriptor.standardize`, is inside the model graph), so they
see identical inputs. Choosing a backend never degrades silently: an unknown backend, a missing package or
provider, or an export of another model raises `RuntimeUnavailable` or a `CorpusError` naming the file,
which fails the node's configure with the reason. This module imports no torch: the ONNX path does not
need it, and the torch backend imports it when built.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from .corpus_manifest import CorpusError
from .errors import RuntimeUnavailable

if TYPE_CHECKING:
    from .corpus import Corpus

BACKENDS = ("torch", "onnxruntime", "tensorrt")
ONNX_FILE = "model.onnx"  # in the corpus directory, beside model.pt
ONNX_INPUT, ONNX_OUTPUT = "images_dn", "descriptors"
# ONNX Runtime execution provider per device; 'auto' takes CUDA when present but never TensorRT, whose
# engine build at session creation takes minutes and must be asked for.
_PROVIDERS = {"cpu": ("CPUExecutionProvider",), "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
              "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")}


class DescriptorRuntime(Protocol):
    """A global-descriptor model ready to run: images in, unit descriptors out."""

    name: str  # backend: "torch" or "onnxruntime"
    device: str  # where it runs, for logs: "cpu", "cuda:0", "CUDAExecutionProvider", ...
    model_id: str  # the corpus model it computes (descriptors of another model are not comparable)
    descriptor_dim: int
    input_px: int  # square side the images are resized to

    def describe(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Images [N x H x W x 3] uint8 RGB -> descriptors [N x D] float32, unit L2 norm."""
        ...


def resize_images(images: np.ndarray | Sequence[np.ndarray], input_px: int) -> np.ndarray:
    """[N x H x W x 3] uint8 RGB (array or list of arrays of any sizes) -> [N x S x S x 3] uint8, S = input_px.

    Area averaging when shrinking (it anti-aliases), bilinear when enlarging: the one rule every backend
    and the corpus' own descriptors use, so a query and a tile of equal ground sampling look alike.
    """
    resized = []
    for image in images:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected uint8 [H x W x 3] RGB images, got {image.dtype} {image.shape}")
        if image.shape[:2] != (input_px, input_px):
            shrink = max(image.shape[:2]) > input_px
            image = cv2.resize(image, (input_px, input_px), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        resized.append(image)
    return np.stack(resized)


def unit_rows(descriptors: np.ndarray) -> np.ndarray:
    """[N x D] -> rows of unit L2 norm, so inner products stay cosine similarities after any cast."""
    return descriptors / np.maximum(np.linalg.norm(descriptors, axis=1, keepdims=True), 1e-12)


class TorchRuntime:
    """PyTorch: fp32 on the CPU or CUDA, fp16 on CUDA only (RuntimeUnavailable elsewhere)."""

    name = "torch"

    def __init__(self, model, device: str = "auto", input_px: int = 320, fp16: bool = False, traced: bool = True):
        from .descriptor import DescriptorExtractor  # torch only for this backend

        self.extractor = DescriptorExtractor(model, device=device, input_px=input_px, fp16=fp16, traced=traced)
        self.device, self.input_px = str(self.extractor.device), self.extractor.input_px
        self.model_id, self.descriptor_dim = self.extractor.model_id, self.extractor.descriptor_dim

    def describe(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        return self.extractor.describe(images)


class OnnxRuntime:
    """ONNX Runtime on an exported descriptor graph ([N x 3 x S x S] float32 0..255 -> [N x D]).

    The file must have been exported from ``model_id`` for ``input_px`` inputs (its metadata and input
    shape say so), else CorpusError naming it: a stale export after retraining would return descriptors
    the corpus index was not built from. ``threads``: intra-op threads of this session (ONNX Runtime's pool
    is per session, unlike torch's per-process one).
    """

    name = "onnxruntime"

    def __init__(self, path, model_id: str, input_px: int, descriptor_dim: int, device: str = "auto",
                 threads: int = 1, batch_size: int = 8):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RuntimeUnavailable("backend 'onnxruntime' requested but the onnxruntime package is not "
                                     "installed (pip install onnxruntime); use backend 'torch'") from exc
        self.path = Path(path)
        if not self.path.is_file():
            raise RuntimeUnavailable(f"backend 'onnxruntime': {self.path} does not exist; export the corpus' "
                                     f"model with 'gdn export-onnx --corpus {self.path.parent}'")
        providers = _providers(device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads, options.inter_op_num_threads = int(threads), 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # one model, batch 1: nothing runs beside it
        # Idle pool threads would spin on cores the other nodes need (core.threads): let them sleep.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: the exporter's unused-initialiser warnings are noise
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=list(providers))
        except Exception as exc:  # noqa: BLE001 - ORT raises its own classes for a bad protobuf or graph
            raise CorpusError(self.path, f"not a loadable ONNX model ({type(exc).__name__}: {exc})") from exc
        if self.session.get_providers()[0] != providers[0]:
            # ORT falls back to the CPU when a provider's libraries fail to load: never run 10x slower unawares.
            raise RuntimeUnavailable(f"onnxruntime could not start {providers[0]} (session runs on "
                                     f"{self.session.get_providers()}); check the CUDA/cuDNN/TensorRT libraries")
        self._check_model(model_id, int(input_px), int(descriptor_dim))
        self.device, self.model_id, self.input_px = providers[0], model_id, int(input_px)
        self.descriptor_dim, self.batch_size = int(descriptor_dim), int(batch_size)

    def _check_model(self, model_id: str, input_px: int, descriptor_dim: int) -> None:
        meta = self.session.get_modelmeta().custom_metadata_map
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if meta.get("model_id") != model_id:
            raise CorpusError(self.path, f"was exported from model {meta.get('model_id')!r}, the corpus' model is "
                                         f"{model_id!r} (stale export): run 'gdn export-onnx --corpus "
                                         f"{self.path.parent}' again")
        if [i.name for i in inputs] != [ONNX_INPUT] or [o.name for o in outputs] != [ONNX_OUTPUT]:
            raise CorpusError(self.path, f"has inputs {[i.name for i in inputs]} and outputs "
                                         f"{[o.name for o in outputs]}, expected [{ONNX_INPUT!r}] and [{ONNX_OUTPUT!r}]")
        if list(inputs[0].shape[1:]) != [3, input_px, input_px] or meta.get("input_px") != str(input_px):
            raise CorpusError(self.path, f"takes inputs {inputs[0].shape}, the corpus' tiles are {input_px} px "
                                         f"([N, 3, {input_px}, {input_px}])")
        if outputs[0].shape[1:] != [descriptor_dim]:
            raise CorpusError(self.path, f"outputs {outputs[0].shape}, the corpus' descriptors have "
                                         f"{descriptor_dim} dimensions")

    def describe(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, self.descriptor_dim), np.float32)
        outputs = []
        for start in range(0, len(images), self.batch_size):
            batch_dn = resize_images(images[start:start + self.batch_size], self.input_px)
            batch_dn = np.ascontiguousarray(batch_dn.transpose(0, 3, 1, 2), dtype=np.float32)
            outputs.append(self.session.run([ONNX_OUTPUT], {ONNX_INPUT: batch_dn})[0])
        return unit_rows(np.concatenate(outputs, axis=0).astype(np.float32, copy=False))


def _providers(device: str, available: Sequence[str]) -> tuple[str, ...]:
    """The execution providers for a device, first the one that must run the graph; RuntimeUnavailable
    when ONNX Runtime on this machine lacks it."""
    if device == "auto":
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if device not in _PROVIDERS:
        raise ValueError(f"device must be one of {('auto', *_PROVIDERS)}, got {device!r}")
    wanted = _PROVIDERS[device]
    if wanted[0] not in available:
        raise RuntimeUnavailable(f"backend 'onnxruntime' on device {device!r} needs {wanted[0]}, this onnxruntime "
                                 f"has only {list(available)} (install onnxruntime-gpu, or use device 'cpu')")
    return wanted


def make_runtime(backend: str, corpus: Corpus, device: str = "auto", fp16: bool = False,
                 threads: int = 1, tensorrt_precision: str = "fp16") -> DescriptorRuntime:
    """The corpus' descriptor model on ``backend`` ("torch" | "onnxruntime" | "tensorrt"); ``threads`` is the
    ONNX Runtime session's intra-op pool (torch's is process-wide: core.threads); ``tensorrt_precision``
    picks the engine ``gdn build-engine`` built on this machine. RuntimeUnavailable with the reason when the
    backend cannot run here."""
    if backend == "torch":
        return TorchRuntime(corpus.load_model(), device=device, input_px=corpus.tile_px, fp16=fp16)
    if backend == "onnxruntime":
        if fp16:
            raise RuntimeUnavailable("fp16 is a torch-on-CUDA option; the exported ONNX model runs in float32")
        return OnnxRuntime(Path(corpus.directory) / ONNX_FILE, corpus.model_id, corpus.tile_px, corpus.descriptor_dim,
                           device=device, threads=threads)
    if backend == "tensorrt":
        from .trt_build import TensorRTRuntime  # lazy: TensorRT exists on the Jetson only (and imports this module)

        return TensorRTRuntime.for_corpus(corpus, precision=tensorrt_precision)
    raise RuntimeUnavailable(f"backend must be one of {BACKENDS}, got {backend!r}")
