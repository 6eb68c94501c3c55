"""Fine-tuning the corpus' NetVLAD model on its own region: frozen trunk, trained last blocks and head.

The EfficientNet-Lite0 backbone is split after block ``TRUNK_BLOCKS``: the stem and the first blocks stay
frozen (ImageNet edges and textures serve any region), the last blocks, the 1x1 head convolution, the
reduction and NetVLAD learn. Because the trunk is frozen its output for every training view and every tile is
computed once and cached (192 x 10 x 10 floats for a 320 px input): an epoch then costs only the trained
part, which is what makes minutes of CPU enough. Batch norm keeps its running statistics (eval mode): batches
of a few dozen views would make them noise.

The loss is the multi-similarity loss (Wang et al., CVPR 2019) between views (anchors) and tiles: a tile whose
centre is within one stride of the view's ground point is a positive, one more than ``negative_strides``
strides away a negative, those in between are ignored (they overlap the view almost as much as the
positives). The band is narrow (1.25 strides) on purpose: retrieval is scored, and the matcher is fed,
by the nearest tiles, and a wide band (2 strides was measured) leaves the model free to rank a tile
55 m off above one 45 m off -- most of the misses it made were such neighbours. Hard pairs are mined per anchor: negatives
more similar than the hardest positive minus a margin, positives less similar than the hardest negative plus
it. The views carry the gradient; the tiles are re-described without it (a memory bank refreshed every few
steps), so that a step costs its batch of views whatever the corpus size, and the hardest negatives are
mined over every tile.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from gps_denied_nav.core.netvlad import NetVLADModel

TRUNK_BLOCKS = 13  # of EfficientNet-Lite0's 16: blocks 13-15 (192 -> 320 channels, stride 32) are trained


def trunk(model: NetVLADModel, images: torch.Tensor) -> torch.Tensor:
    """Normalised images [B x 3 x S x S] -> the frozen part's output [B x 192 x S/32 x S/32]."""
    b = model.backbone
    x = b._swish(b._bn0(b._conv_stem(images)))
    for block in b._blocks[:TRUNK_BLOCKS]:
        x = block(x)
    return x


def head(model: NetVLADModel, trunk_out: torch.Tensor, whiten: bool = True) -> torch.Tensor:
    """Trunk output -> descriptors [B x D] (NetVLAD, whitened when the model has it and ``whiten``)."""
    b = model.backbone
    x = trunk_out
    for block in b._blocks[TRUNK_BLOCKS:]:
        x = block(x)
    x = b._swish(b._bn1(b._conv_head(x)))
    vlad = model.netvlad(F.normalize(model.reduction(x), p=2, dim=1))
    if model.whiten is None or not whiten:
        return vlad
    return F.normalize(model.whiten(vlad), p=2, dim=1)


def trained_parameters(model: NetVLADModel) -> list[torch.nn.Parameter]:
    b = model.backbone
    modules = [*b._blocks[TRUNK_BLOCKS:], b._conv_head, b._bn1, model.reduction, model.netvlad]
    return [p for m in modules for p in m.parameters()]


@dataclass(frozen=True)
class LossConfig:
    alpha: float = 2.0  # positive scale
    beta: float = 50.0  # negative scale
    base: float = 0.5  # lambda: the similarity the loss pivots on
    margin: float = 0.1  # mining margin


def multi_similarity_loss(sim: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                          config: LossConfig = LossConfig()) -> torch.Tensor:
    """Mean MS loss over anchors. sim [A x T] cosine similarities view-tile; positive/negative [A x T] bool."""
    losses = []
    for s, pos, neg in zip(sim, positive, negative):
        if not pos.any() or not neg.any():
            continue
        sp, sn = s[pos], s[neg]
        hard_neg = sn[sn + config.margin > sp.min()]
        hard_pos = sp[sp - config.margin < sn.max()]
        loss = s.sum() * 0.0  # in the graph even when nothing is mined (every pair already easy)
        if len(hard_pos):
            loss = loss + torch.log1p(torch.exp(-config.alpha * (hard_pos - config.base)).sum()) / config.alpha
        if len(hard_neg):
            loss = loss + torch.log1p(torch.exp(config.beta * (hard_neg - config.base)).sum()) / config.beta
        losses.append(loss)
    return torch.stack(losses).mean() if losses else sim.sum() * 0.0


def pair_masks(view_centres_enu_m: np.ndarray, tile_centres_enu_m: np.ndarray, stride_m: float,
               negative_strides: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """(positive [V x T], negative [V x T]) bool: tile centre within one stride of the view's ground point, and
    more than ``negative_strides`` strides away (the band between is left out)."""
    d = np.linalg.norm(view_centres_enu_m[:, None, :2] - tile_centres_enu_m[None, :, :2], axis=2)
    return d <= stride_m, d > negative_strides * stride_m


def describe_cached(model: NetVLADModel, trunk_out: torch.Tensor, batch: int = 64, whiten: bool = True) -> np.ndarray:
    """Descriptors [N x D] of cached trunk outputs, no gradients."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        return torch.cat([head(model, trunk_out[i:i + batch].to(device), whiten).cpu()
                          for i in range(0, len(trunk_out), batch)]).numpy()


def recall_at(view_desc: np.ndarray, tile_desc: np.ndarray, positive: np.ndarray, ks=(1, 5, 10)) -> dict:
    """recall@k of global search: a hit when one of the top k tiles is a positive of the view."""
    order = np.argsort(-(view_desc @ tile_desc.T), axis=1)
    hits = np.take_along_axis(positive, order, axis=1)
    return {f"recall@{k}": float(hits[:, :k].any(axis=1).mean()) for k in ks}


def fit_whitening(model: NetVLADModel, vlad: np.ndarray, dim: int, power: float = 1.0, eps: float = 1e-6) -> None:
    """PCA of NetVLAD vectors [N x vlad_dim] down to ``dim``, scaled by eigenvalue^(-power/2): 1 is full whitening,
    0 a plain projection, in between the shrunk whitening of the retrieval literature (full whitening also
    amplifies the directions only noise spans). The model's ``whiten`` layer becomes
    diag(lambda^(-power/2)) U^T (x - mean) over the top ``dim`` principal directions."""
    x = vlad.astype(np.float64)
    mean = x.mean(axis=0)
    # Thin SVD of the centred samples: N << vlad_dim, so never form the vlad_dim^2 covariance.
    _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
    dim = min(dim, len(singular))
    eigen = singular[:dim] ** 2 / max(len(x) - 1, 1)
    W = vt[:dim] * ((eigen + eps) ** (-0.5 * power))[:, None]
    whiten = torch.nn.Linear(x.shape[1], dim)
    with torch.no_grad():
        whiten.weight.copy_(torch.from_numpy(W).float())
        whiten.bias.copy_(torch.from_numpy(-W @ mean).float())
    model.whiten = whiten.to(next(model.parameters()).device)
