"""VGG16-NetVLAD, the seed system's descriptor: a trained model to run as it is, never adapted to a map.

The network of Arandjelović et al. (CVPR 2016) as the public pytorch-NetVlad project and the seed system
build it: torchvision's ``vgg16().features[:-2]`` (conv1_1 .. conv5_3, without conv5_3's ReLU and the
last max-pool), per-location L2 normalisation, NetVLAD with K clusters on the 512 channels, then a PCA
(or whitened PCA) projection of the K*512-d vector to 4096-d and a final L2 normalisation. The layer list
is written out with ``torch.nn`` so the runtime does not need torchvision. No VGG16 weights ship with the
project: a checkpoint of either code base becomes this model with ``gdn convert-netvlad``
(`core.netvlad_convert`), and `load_vgg16_netvlad` reads the converted file.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .netvlad import CheckpointError, NetVLAD, compute_model_id, load_checkpoint

MODEL_CARD_NAME = "vgg16_netvlad"
# torchvision's configuration "D": output channels of conv1_1 .. conv5_3, a 2x2 max-pool after each block.
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
ENCODER_CHANNELS = 512  # conv5_3


@dataclass(frozen=True)
class VGG16NetVLADConfig:
    num_clusters: int = 64  # NetVLAD K; the NetVLAD vector has K * 512 dimensions
    pca_dim: int = 4096  # output of the (W)PCA layer; 0: none, the descriptor is the K*512-d NetVLAD vector
    # pytorch-NetVlad trained on torchvision's ToTensor + Normalize(ImageNet mean, std): RGB in [0, 1].
    input_mean_rgb: tuple[float, float, float] = (0.485, 0.456, 0.406)
    input_std_rgb: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # Off: trained weights expect the raw photometry they were trained on (the EfficientNet default turns it on).
    standardize_input: bool = False

    @property
    def vlad_dim(self) -> int:
        return self.num_clusters * ENCODER_CHANNELS

    @property
    def descriptor_dim(self) -> int:
        return self.pca_dim or self.vlad_dim


def vgg16_encoder() -> nn.Sequential:
    """Layers 0..28 of torchvision's ``vgg16().features``: same indices, so the same state-dict names."""
    layers: list[nn.Module] = []
    in_channels = 3
    for block in VGG16_BLOCKS:
        for out_channels in block:
            layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = out_channels
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    # NetVLAD pools conv5_3 before its ReLU: negative responses carry information the residuals use.
    return nn.Sequential(*layers[:-2])


def vgg16_conv_shapes() -> dict[int, tuple[int, int]]:
    """Index in ``vgg16().features`` -> (out, in) channels of each 3x3 conv (conv + ReLU, a pool per block)."""
    shapes, index, in_channels = {}, 0, 3
    for block in VGG16_BLOCKS:
        for out_channels in block:
            shapes[index], in_channels = (out_channels, in_channels), out_channels
            index += 2
        index += 1
    return shapes


class VGG16NetVLAD(nn.Module):
    """VGG16 conv5_3 -> per-location L2 -> NetVLAD -> (W)PCA Linear -> L2.

    Input: normalised images [B x 3 x H x W] (H, W multiples of 16; the extractor asks for 32). Output:
    [B x D] unit vectors, D = config.descriptor_dim.
    """

    model_card = MODEL_CARD_NAME

    def __init__(self, config: VGG16NetVLADConfig = VGG16NetVLADConfig()):
        super().__init__()
        self.config = config
        self.encoder = vgg16_encoder()
        self.netvlad = NetVLAD(config.num_clusters, ENCODER_CHANNELS)
        self.pca = nn.Linear(config.vlad_dim, config.pca_dim) if config.pca_dim else None

    def local_features(self, images: torch.Tensor) -> torch.Tensor:
        """[B x 3 x H x W] -> conv5_3 features [B x 512 x H/16 x W/16]."""
        return self.encoder(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        vlad = self.netvlad(F.normalize(self.local_features(images), p=2, dim=1))
        return vlad if self.pca is None else F.normalize(self.pca(vlad), p=2, dim=1)


def load_vgg16_netvlad(path) -> VGG16NetVLAD:
    """A converted checkpoint (``gdn convert-netvlad``) in eval mode; CheckpointError for anything else."""
    model, _ = load_checkpoint(path)
    if not isinstance(model, VGG16NetVLAD):
        raise CheckpointError(path, f"holds {compute_model_id(model)}, not a {MODEL_CARD_NAME} model: convert a "
                                    "pytorch-NetVlad or seed checkpoint with 'gdn convert-netvlad CHECKPOINT --out "
                                    "MODEL.pt'")
    return model
