"""Inference runtime for the global descriptor: device selection, preprocessing and batched forward passes.

One class, `DescriptorExtractor`, owns a `NetVLADModel` on a device and turns uint8 RGB images into unit
descriptors (for retrieval) or backbone feature maps (for initialising the head at provisioning time).
Device selection never degrades silently: asking for CUDA on a machine without it, or for TensorRT, raises
`RuntimeUnavailable` with the reason, so a misconfigured Jetson fails at configure time instead of running
ten times slower on its CPU.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from .errors import RuntimeUnavailable
from .netvlad import NetVLADModel, compute_model_id
from .rectify import FILL_VALUE

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
    count = data.sum(dim=(2, 3), keepdim=True).clamp(min=1.0)
    mean = (batch_dn * data).sum(dim=(2, 3), keepdim=True) / count
    std = (((batch_dn - mean) ** 2 * data).sum(dim=(2, 3), keepdim=True) / count).sqrt().clamp(min=1.0)
    out = (batch_dn - mean) / std * STANDARD_STD_DN + FILL_VALUE
    return torch.where(data > 0, out, batch_dn)


class DescriptorExtractor:
    """Batched NetVLAD inference on uint8 RGB images.

    Images of any size are resized to ``input_px`` x ``input_px``: corpus tiles and
    rectified queries are square and north-up, so this keeps their ground sampling equal. The model is
    put in eval mode and moved to the device in place; do not change its weights afterwards (the model
    id is hashed once, here).
    """

    def __init__(self, model: NetVLADModel, device: str = "auto", input_px: int = 320, batch_size: int = 8,
                 fp16: bool = False):
        if input_px % 32:
            raise ValueError(f"input_px must be a multiple of 32 (backbone stride), got {input_px}")
        self.device = resolve_device(device)
        if fp16 and self.device.type != "cuda":
            raise RuntimeUnavailable("fp16 inference is only supported on CUDA")
        self.input_px, self.batch_size, self.fp16 = int(input_px), int(batch_size), bool(fp16)
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
        resized = []
        for image in images:
            image = np.asarray(image)
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"expected uint8 [H x W x 3] RGB images, got {image.dtype} {image.shape}")
            if image.shape[:2] != (self.input_px, self.input_px):
                shrink = max(image.shape[:2]) > self.input_px  # area averaging only anti-aliases when shrinking
                image = cv2.resize(image, (self.input_px, self.input_px),
                                   interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            resized.append(image)
        batch = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float()
        if self.model.config.standardize_input:
            batch = standardize(batch)
        return (batch / 255.0 - self._mean) / self._std

    def _run(self, images, head: bool) -> np.ndarray:
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = self.preprocess(images[start:start + self.batch_size]).to(self.device)
                if self.fp16:
                    batch = batch.half()
                out = self.model(batch) if head else self.model.local_features(batch)
                outputs.append(out.float().cpu().numpy())
        return np.concatenate(outputs, axis=0)

    def describe(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Images [N x H x W x 3] uint8 RGB -> descriptors [N x D] float32, unit L2 norm."""
        if len(images) == 0:
            return np.zeros((0, self.descriptor_dim), np.float32)
        descriptors = self._run(images, head=True)
        # Renormalise after the fp16 / float32 round trip so inner products stay cosine similarities.
        return descriptors / np.maximum(np.linalg.norm(descriptors, axis=1, keepdims=True), 1e-12)

    def local_features(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Images [N x H x W x 3] uint8 RGB -> backbone features [N x 1280 x S/32 x S/32] float32."""
        return self._run(images, head=False)
