"""PyTorch inference of the global descriptor: device selection, normalisation and batched forward passes.

One class, `DescriptorExtractor`, owns a `NetVLADModel` (or a `netvlad_vgg16.VGG16NetVLAD`; the input
normalisation comes from the model's config) on a device and turns uint8 RGB images into unit
descriptors (for retrieval) or backbone feature maps (for initialising the head at provisioning time).
Device selection never degrades silently: asking for CUDA on a machine without it, or for TensorRT, raises
`RuntimeUnavailable` with the reason, so a misconfigured Jetson fails at configure time instead of running
ten times slower on its CPU. `core.runtime` puts this behind the interface the inference node uses, beside
ONNX Runtime on the same graph (`graph_module`, exported by `core.onnx_export`).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import numpy as np
import torch

from .errors import RuntimeUnavailable
from .netvlad import NetVLADModel, compute_model_id
from .rectify import FILL_VALUE
from .runtime import resize_images, unit_rows

DEVICES = ("auto", "cpu", "cuda", "tensorrt")
STANDARD_STD_DN = 50.0  # per-channel std after standardisation, about that of natural 8-bit images


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when torch sees a GPU, else CPU; 'cuda'/'tensorrt' without support -> RuntimeUnavailable."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeUnavailable("device='cuda' requested but torch sees no CUDA device "
                                 f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); "
                                 "use device='cpu' or 'auto'")
    if device == "tensorrt":
        if importlib.util.find_spec("tensorrt") is None:
            raise RuntimeUnavailable("device='tensorrt' requested but the 'tensorrt' Python package is not "
                                     "installed; use device='cuda' or 'cpu'")
        raise RuntimeUnavailable("device='tensorrt': the tensorrt package is installed but building a TensorRT "
                                 "engine is not implemented yet; use device='cuda'")
    return torch.device(device)


def standardize(batch_dn: torch.Tensor) -> torch.Tensor:
    """[N x 3 x H x W] 0..255 -> per image and channel mean FILL_VALUE, std STANDARD_STD_DN.

    Statistics skip the nodata fill (pixels exactly FILL_VALUE in all channels), which stays as it is, so
    the share of footprint outside a rectified query does not shift its colours.
    """
    data = (batch_dn != FILL_VALUE).any(dim=1, keepdim=True).float()  # [N x 1 x H x W]
    count = _image_sum(data).clamp(min=1.0)
    mean = _image_sum(batch_dn * data) / count
    std = (_image_sum((batch_dn - mean) ** 2 * data) / count).sqrt().clamp(min=1.0)
    out = (batch_dn - mean) / std * STANDARD_STD_DN + FILL_VALUE
    return torch.where(data > 0, out, batch_dn)


def _image_sum(x: torch.Tensor) -> torch.Tensor:
    """[N x C x H x W] -> [N x C x 1 x 1]: the sums of the rows, then of the row sums. An exported graph's
    one ReduceSum over H*W pixels adds them one after another in float32 on ONNX Runtime, an error growing
    with the pixel count (3e-5 on unit descriptors of 320 px map views); two short sums keep it at torch's."""
    return x.sum(dim=3, keepdim=True).sum(dim=2, keepdim=True)


class DescriptorExtractor:
    """Batched NetVLAD inference on uint8 RGB images.

    Images of any size are resized to ``input_px`` x ``input_px``: corpus tiles and
    rectified queries are square and north-up, so this keeps their ground sampling equal. The model is
    put in eval mode and moved to the device in place; do not change its weights afterwards (the model
    id is hashed once, here).

    Descriptors come from a TorchScript trace of the model per input shape (``traced``, the default): its
    forward pass runs in C++ and takes Python's GIL once, where eager PyTorch re-takes it between every two
    operators and, whenever another thread of the process is running Python, waits up to the interpreter's
    switch interval (5 ms) each time. Beside one busy Python thread that was measured at 601 ms eager
    against 63 ms traced for one 320 px forward pass (57 / 53 ms alone): inside the one-process graph the
    filter's IMU callbacks are that thread. Traced and eager outputs are identical here.
    """

    def __init__(self, model: NetVLADModel, device: str = "auto", input_px: int = 320, batch_size: int = 8,
                 fp16: bool = False, traced: bool = True):
        if input_px % 32:
            raise ValueError(f"input_px must be a multiple of 32 (backbone stride), got {input_px}")
        self.device = resolve_device(device)
        if fp16 and self.device.type != "cuda":
            raise RuntimeUnavailable("fp16 inference is only supported on CUDA")
        self.input_px, self.batch_size, self.fp16 = int(input_px), int(batch_size), bool(fp16)
        self.traced = bool(traced)
        self._traces: dict[tuple, torch.jit.ScriptModule] = {}  # input shape and dtype -> traced model
        self._model_id = compute_model_id(model)  # hashed before a possible fp16 cast changes the bytes
        self.model = model.eval().to(self.device)
        if fp16:
            self.model = self.model.half()
        cfg = model.config
        self._mean = torch.tensor(cfg.input_mean_rgb, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(cfg.input_std_rgb, dtype=torch.float32).view(1, 3, 1, 1)

    @property
    def model_id(self) -> str:
        """Model card name + short sha256 of the weights, as recorded in corpus manifests."""
        return self._model_id

    @property
    def descriptor_dim(self) -> int:
        return self.model.config.descriptor_dim

    def preprocess(self, images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        """[N x H x W x 3] uint8 RGB (array or list of arrays) -> normalised [N x 3 x S x S] float32 (CPU)."""
        return self._normalise(self._to_tensor(images))

    def _to_tensor(self, images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        """[N x H x W x 3] uint8 RGB -> [N x 3 x S x S] float32 0..255, resized to input_px (CPU)."""
        return torch.from_numpy(resize_images(images, self.input_px)).permute(0, 3, 1, 2).float()

    def _normalise(self, batch_dn: torch.Tensor) -> torch.Tensor:
        if self.model.config.standardize_input:
            batch_dn = standardize(batch_dn)
        return (batch_dn / 255.0 - self._mean.to(batch_dn.device)) / self._std.to(batch_dn.device)

    def _run(self, images, head: bool) -> np.ndarray:
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch_dn = self._to_tensor(images[start:start + self.batch_size]).to(self.device)
                out = self._forward(batch_dn) if head else self.model.local_features(self._model_input(batch_dn))
                outputs.append(out.float().cpu().numpy())
        return np.concatenate(outputs, axis=0)

    def _model_input(self, batch_dn: torch.Tensor) -> torch.Tensor:
        batch = self._normalise(batch_dn)
        return batch.half() if self.fp16 else batch

    def _forward(self, batch_dn: torch.Tensor) -> torch.Tensor:
        """Descriptors of a [N x 3 x S x S] 0..255 batch: normalisation and model through one trace per shape
        (made on first use), so that not even the input standardisation runs operator by operator."""
        if not self.traced:
            return self.model(self._model_input(batch_dn))
        key = (tuple(batch_dn.shape), batch_dn.device.type)
        if key not in self._traces:
            self._traces[key] = torch.jit.trace(self.graph_module(), batch_dn, check_trace=False)
        return self._traces[key](batch_dn)

    def describe(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Images [N x H x W x 3] uint8 RGB -> descriptors [N x D] float32, unit L2 norm."""
        if len(images) == 0:
            return np.zeros((0, self.descriptor_dim), np.float32)
        descriptors = self._run(images, head=True)
        return unit_rows(descriptors)  # after the fp16 / float32 round trip

    def graph_module(self) -> torch.nn.Module:
        """Normalisation and model as one module, [N x 3 x S x S] float32 0..255 -> [N x D]: what the traces
        run and what `core.onnx_export` exports, so every backend starts from the same 0..255 batch."""
        return _Traceable(self)

    def local_features(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Images [N x H x W x 3] uint8 RGB -> backbone features [N x C x S/s x S/s] float32 (EfficientNet:
        C 1280, s 32; VGG16: C 512, s 16)."""
        return self._run(images, head=False)



class _Traceable(torch.nn.Module):
    """Normalisation and model as one module (the model a registered submodule), for ``torch.jit.trace``."""

    def __init__(self, extractor: DescriptorExtractor):
        super().__init__()
        self.model = extractor.model
        self._model_input = extractor._model_input

    def forward(self, batch_dn: torch.Tensor) -> torch.Tensor:
        return self.model(self._model_input(batch_dn))
