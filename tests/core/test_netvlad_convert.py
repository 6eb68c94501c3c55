"""VGG16-NetVLAD: the layer list, converting pytorch-NetVlad and seed checkpoints, and provisioning with one.

The source checkpoints are synthetic: random weights in the key layouts, shapes and containers of the two
code bases (K = 8 clusters keeps files small; K and the PCA size are read from the file). The converted
model's descriptors are compared with a reference forward pass written here, in float64, from the raw
source tensors: the source network as its own code computes it.
"""
from __future__ import annotations

import argparse
import collections
import zipfile

import cv2
import numpy as np
import pyproj
import pytest
import torch
import torch.nn.functional as F
from rasterio.transform import from_origin

from gps_denied_nav.cli import main as gdn
from gps_denied_nav.core import corpus_build
from gps_denied_nav.core.corpus import Corpus, file_sha256
from gps_denied_nav.core.corpus_build import ProvisionConfig, provision, tile_grid, tile_image
from gps_denied_nav.core.descriptor import DescriptorExtractor
from gps_denied_nav.core.geotiff_writer import write_geotiff
from gps_denied_nav.core.map_raster import load_geotiff
from gps_denied_nav.core.netvlad import (CheckpointError, NetVLADConfig, NetVLADModel, build_model, compute_model_id,
                                        load_checkpoint, save_checkpoint)
from gps_denied_nav.core.netvlad_convert import convert_checkpoint, read_checkpoint
from gps_denied_nav.core.netvlad_vgg16 import VGG16NetVLAD, VGG16NetVLADConfig, vgg16_encoder

# torchvision's vgg16 configuration "D": conv + ReLU per number, a 2x2 max-pool per "M".
CFG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TOLERANCE = 1e-5  # max |converted - reference| over descriptor entries (unit vectors)
CLUSTERS = 8  # 8 x 512 = 4096-d NetVLAD vectors


def vgg16_features_spec() -> list[tuple[str, int, int]]:
    """(kind, out, in) of torchvision's vgg16().features[:-2], index by index."""
    spec, in_channels = [], 3
    for v in CFG_D:
        if v == "M":
            spec.append(("pool", 0, 0))
        else:
            spec += [("conv", v, in_channels), ("relu", 0, 0)]
            in_channels = v
    return spec[:-2]


def source_tensors(clusters: int, pca_dim: int, seed: int) -> dict[str, torch.Tensor]:
    """Random weights of the source network, named as pytorch-NetVlad names them (WPCA as a 1x1 conv)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for index, (kind, out_channels, in_channels) in enumerate(vgg16_features_spec()):
        if kind == "conv":  # He init keeps the activations' scale through 13 layers
            state[f"encoder.{index}.weight"] = torch.randn(out_channels, in_channels, 3, 3, generator=g) * (
                2.0 / (9 * in_channels)) ** 0.5
            state[f"encoder.{index}.bias"] = 0.01 * torch.randn(out_channels, generator=g)
    centroids = 0.5 * F.normalize(torch.randn(clusters, 512, generator=g), dim=1)
    state["pool.conv.weight"] = (30.0 * F.normalize(centroids, dim=1))[:, :, None, None]  # vladv1 init, alpha 30
    state["pool.centroids"] = centroids
    state["WPCA.0.weight"] = torch.randn(pca_dim, clusters * 512, 1, 1, generator=g) / (clusters * 512) ** 0.5
    state["WPCA.0.bias"] = 0.01 * torch.randn(pca_dim, generator=g)
    return state


def seed_layout(state: dict, seed: int = 1) -> dict[str, torch.Tensor]:
    """The same tensors under the seed system's names: assignment bias, a Linear 'pca'."""
    out = {k: v for k, v in state.items() if not k.startswith("WPCA.")}
    out["pool.conv.bias"] = torch.randn(state["pool.centroids"].shape[0], generator=torch.Generator().manual_seed(seed))
    out["pca.weight"] = state["WPCA.0.weight"].flatten(1)
    out["pca.bias"] = state["WPCA.0.bias"]
    return out


def reference_descriptors(state: dict, images: torch.Tensor) -> torch.Tensor:
    """The source network in float64 from raw tensors (either layout): vgg16 features[:-2], NetVLAD as
    pytorch-NetVlad computes it (a residual loop over clusters), WPCA conv or PCA Linear, L2."""
    s = {k: v.double() for k, v in state.items()}
    x = images.double()
    for index, (kind, _, _) in enumerate(vgg16_features_spec()):
        if kind == "conv":
            x = F.conv2d(x, s[f"encoder.{index}.weight"], s[f"encoder.{index}.bias"], padding=1)
        else:
            x = F.relu(x) if kind == "relu" else F.max_pool2d(x, 2, 2)
    x = F.normalize(x, p=2, dim=1)
    batch, channels = x.shape[:2]
    clusters = s["pool.centroids"].shape[0]
    soft_assign = F.softmax(F.conv2d(x, s["pool.conv.weight"], s.get("pool.conv.bias")).view(batch, clusters, -1), 1)
    flat = x.view(batch, channels, -1)
    vlad = torch.zeros(batch, clusters, channels, dtype=torch.float64)
    for k in range(clusters):
        vlad[:, k] = ((flat - s["pool.centroids"][k][None, :, None]) * soft_assign[:, k:k + 1]).sum(dim=-1)
    vlad = F.normalize(F.normalize(vlad, p=2, dim=2).reshape(batch, -1), p=2, dim=1)
    if "WPCA.0.weight" in s:
        return F.normalize(F.conv2d(vlad[:, :, None, None], s["WPCA.0.weight"], s["WPCA.0.bias"]).flatten(1), dim=1)
    if "pca.weight" in s:
        return F.normalize(F.linear(vlad, s["pca.weight"], s["pca.bias"]), p=2, dim=1)
    return vlad


def pytorch_netvlad_container(state: dict) -> dict:
    """What pytorch-NetVlad's main.py saves: epoch, state_dict, recalls, best_score, optimizer, parallel."""
    pool = [torch.nn.Parameter(state["pool.centroids"].clone()), torch.nn.Parameter(state["pool.conv.weight"].clone())]
    adam = torch.optim.Adam(pool, lr=1e-4)
    (pool[0].sum() + pool[1].square().sum()).backward()
    adam.step()
    recalls = {n: np.float64(r) for n, r in zip((1, 5, 10, 20), (0.81, 0.91, 0.94, 0.96))}  # numpy, as test() makes
    return {"epoch": 7, "state_dict": collections.OrderedDict(state), "recalls": recalls, "best_score": recalls[5],
            "optimizer": adam.state_dict(), "parallel": False}


@pytest.fixture(scope="module")
def pittsburgh_style(tmp_path_factory):
    """A pytorch-NetVlad checkpoint with a 4096-d WPCA, converted once: (source tensors, source, converted)."""
    directory = tmp_path_factory.mktemp("netvlad_convert")
    state = source_tensors(CLUSTERS, 4096, seed=0)
    source, converted = directory / "model_best.pth.tar", directory / "vgg16_netvlad.pt"
    torch.save(pytorch_netvlad_container(state), source)
    return state, source, converted, convert_checkpoint(source, converted)


def test_encoder_is_torchvision_vgg16_features_without_the_last_relu_and_pool():
    encoder = vgg16_encoder()
    spec = vgg16_features_spec()
    assert len(encoder) == 29 == len(spec)  # features has 31 layers: [:-2] drops conv5_3's ReLU and pool5
    kinds = {"conv": torch.nn.Conv2d, "relu": torch.nn.ReLU, "pool": torch.nn.MaxPool2d}
    assert all(isinstance(layer, kinds[kind]) for layer, (kind, _, _) in zip(encoder, spec))
    assert isinstance(encoder[28], torch.nn.Conv2d)  # conv5_3, no ReLU after it
    expected = {}
    for index, (kind, out_channels, in_channels) in enumerate(spec):
        if kind == "conv":
            expected[f"{index}.weight"], expected[f"{index}.bias"] = (out_channels, in_channels, 3, 3), (out_channels,)
    assert {k: tuple(v.shape) for k, v in encoder.state_dict().items()} == expected
    assert all(layer.padding == (1, 1) for layer in encoder if isinstance(layer, torch.nn.Conv2d))
    config = VGG16NetVLADConfig()
    assert (config.num_clusters, config.pca_dim, config.descriptor_dim, config.vlad_dim) == (64, 4096, 4096, 32768)
    assert (config.input_mean_rgb, config.input_std_rgb) == (IMAGENET_MEAN, IMAGENET_STD)


def test_encoder_matches_torchvision_when_installed():
    torchvision = pytest.importorskip("torchvision")
    reference = torchvision.models.vgg16(weights=None).features[:-2]
    assert [type(m) for m in reference] == [type(m) for m in vgg16_encoder()]
    assert ({k: tuple(v.shape) for k, v in reference.state_dict().items()}
            == {k: tuple(v.shape) for k, v in vgg16_encoder().state_dict().items()})


def test_pytorch_netvlad_checkpoint_gives_the_source_networks_descriptors(pittsburgh_style):
    state, source, converted, result = pittsburgh_style
    assert result.layout == "pytorch-netvlad" and result.descriptor_dim == 4096
    assert result.model_id.startswith("vgg16_netvlad@")
    assert result.provenance["source_sha256"] == file_sha256(source)
    assert result.provenance["source_file"] == "model_best.pth.tar" and result.provenance["source_epoch"] == 7
    assert result.provenance["source_recalls"] == {"1": 0.81, "5": 0.91, "10": 0.94, "20": 0.96}
    model, config = load_checkpoint(converted)
    assert isinstance(model, VGG16NetVLAD) and config == VGG16NetVLADConfig(num_clusters=CLUSTERS, pca_dim=4096)
    assert compute_model_id(model) == result.model_id and model.provenance == result.provenance
    # Through the runtime, as queries run: uint8 RGB, ImageNet normalisation, traced forward pass.
    rng = np.random.default_rng(0)  # coarse and fine random texture, so the two descriptors differ clearly
    images = np.stack([np.clip(cv2.resize(rng.uniform(0, 255, (cells, cells, 3)), (224, 224)) + rng.normal(0, 20, (
        224, 224, 3)), 0, 255).astype(np.uint8) for cells in (4, 28)])
    got = DescriptorExtractor(model, device="cpu", input_px=224).describe(images)
    normalised = (torch.from_numpy(images).permute(0, 3, 1, 2) / 255.0 - torch.tensor(IMAGENET_MEAN)[:, None, None]
                  ) / torch.tensor(IMAGENET_STD)[:, None, None]
    expected = reference_descriptors(state, normalised).numpy()
    print(f"max |converted - reference| {np.abs(got - expected).max():.2e}, between the images "
          f"{np.abs(expected[0] - expected[1]).max():.2e}")
    assert got.shape == (2, 4096) and np.abs(got - expected).max() < TOLERANCE
    assert np.abs(expected[0] - expected[1]).max() > 100 * TOLERANCE  # the comparison can tell images apart


def test_seed_checkpoint_gives_the_source_networks_descriptors(pittsburgh_style, tmp_path):
    state = seed_layout({k: v for k, v in pittsburgh_style[0].items()})
    state["pca.weight"], state["pca.bias"] = state["pca.weight"][:256], state["pca.bias"][:256]  # P from the file
    torch.save(state, tmp_path / "seed.pt")  # a bare state dict
    result = convert_checkpoint(tmp_path / "seed.pt", tmp_path / "out.pt")
    assert result.layout == "seed" and result.descriptor_dim == 256
    model, _ = load_checkpoint(tmp_path / "out.pt")
    images = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (model(images).double() - reference_descriptors(state, images)).abs().max() < TOLERANCE


def test_vladv2_data_parallel_checkpoint_without_wpca(pittsburgh_style, tmp_path):
    """nn.DataParallel's 'module.' parts are dropped; a vladv2 bias is kept; no WPCA: the 4096-d NetVLAD vector."""
    source = {k: v for k, v in pittsburgh_style[0].items() if not k.startswith("WPCA.")}
    source["pool.conv.bias"] = torch.linspace(-1.0, 1.0, CLUSTERS)
    wrapped = {k.replace("encoder.", "encoder.module.").replace("pool.", "pool.module."): v for k, v in source.items()}
    torch.save({"state_dict": wrapped, "parallel": True}, tmp_path / "parallel.pth.tar")
    result = convert_checkpoint(tmp_path / "parallel.pth.tar", tmp_path / "out.pt")
    assert result.layout == "pytorch-netvlad" and result.descriptor_dim == CLUSTERS * 512
    model, _ = load_checkpoint(tmp_path / "out.pt")
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (model(images).double() - reference_descriptors(source, images)).abs().max() < TOLERANCE


def test_another_architecture_is_refused_naming_missing_and_unexpected_keys(tmp_path):
    efficientnet = tmp_path / "efficientnet.pt"
    save_checkpoint(build_model(NetVLADConfig(reduced_channels=16, num_clusters=8), imagenet_backbone=False),
                    efficientnet)
    resnet = {"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.running_mean": torch.zeros(64),
              "layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3), "fc.weight": torch.zeros(1000, 2048)}
    torch.save({"state_dict": resnet, "epoch": 90}, tmp_path / "resnet.pth")
    for path, foreign in ((efficientnet, "unexpected 299: ['backbone._blocks.0."),
                          (tmp_path / "resnet.pth", "unexpected 4: ['bn1.running_mean', 'conv1.weight'")):
        with pytest.raises(CheckpointError) as info:
            convert_checkpoint(path, tmp_path / "out.pt")
        message = str(info.value)
        assert str(path) in message and "missing 28: ['encoder.0.bias', 'encoder.0.weight'" in message
        assert foreign in message
    assert not (tmp_path / "out.pt").exists()


def test_shape_mismatches_and_missing_keys_are_named(pittsburgh_style, tmp_path):
    state = dict(pittsburgh_style[0])
    state["encoder.28.weight"] = torch.zeros(256, 512, 3, 3)
    state["WPCA.0.weight"] = torch.zeros(128, 4000, 1, 1)
    state["WPCA.0.bias"] = torch.zeros(128)
    del state["pool.centroids"]
    torch.save({"state_dict": state}, tmp_path / "bad.pth.tar")
    with pytest.raises(CheckpointError) as info:
        convert_checkpoint(tmp_path / "bad.pth.tar", tmp_path / "out.pt")
    message = str(info.value)
    assert "missing 1: ['pool.centroids']" in message
    assert "encoder.28.weight (256, 512, 3, 3) (expected (512, 512, 3, 3))" in message
    assert "WPCA.0.weight (128, 4000, 1, 1) (expected (128, 32768, 1, 1))" in message  # K unknown: 64 assumed
    seed_keys = "seed layout: missing 3: \\['pca.bias', 'pca.weight', 'pool.conv.bias'\\]"
    with pytest.raises(CheckpointError, match=seed_keys):
        convert_checkpoint(pittsburgh_style[1], tmp_path / "out.pt", layout="seed")


class TrainingState(collections.OrderedDict):
    """A container class of some training script: unpickling it would run this module's code."""

    constructed = 0

    def __init__(self, *args, **kwargs):
        TrainingState.constructed += 1
        super().__init__(*args, **kwargs)


def test_pickled_classes_outside_the_allow_list_are_refused(tmp_path):
    tensors = {"encoder.0.weight": torch.zeros(64, 3, 3, 3)}
    torch.save({"state_dict": tensors, "opt": argparse.Namespace(lr=1e-4)}, tmp_path / "with_opt.pth.tar")
    torch.save({"state_dict": TrainingState(tensors)}, tmp_path / "custom.pth.tar")
    TrainingState.constructed = 0
    for name, refused in (("with_opt.pth.tar", "argparse.Namespace"), ("custom.pth.tar", "TrainingState")):
        with pytest.raises(CheckpointError, match=f"refused to unpickle .*{refused}") as info:
            convert_checkpoint(tmp_path / name, tmp_path / "out.pt")
        assert name in str(info.value)
    assert TrainingState.constructed == 0
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        convert_checkpoint(tmp_path / "notes.pt", tmp_path / "out.pt")


def test_numpy_1_scalars_of_old_checkpoints_are_allowed(tmp_path):
    """Checkpoints written under numpy 1 name its scalar 'numpy.core.multiarray.scalar' (numpy 2: numpy._core)."""
    torch.save({"best_score": np.float64(0.9), "epoch": 3}, tmp_path / "new.pt")
    with zipfile.ZipFile(tmp_path / "new.pt") as src, zipfile.ZipFile(tmp_path / "old.pt", "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
                         if name.endswith("data.pkl") else data)
    assert b"numpy.core.multiarray\nscalar" in zipfile.ZipFile(tmp_path / "old.pt").read("new/data.pkl")
    assert read_checkpoint(tmp_path / "old.pt") == {"best_score": 0.9, "epoch": 3}


def test_checkpoints_record_their_architecture(tmp_path):
    small = build_model(NetVLADConfig(reduced_channels=16, num_clusters=8), imagenet_backbone=False)
    save_checkpoint(small, tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    assert payload["architecture"] == "netvlad_efficientnet_lite0" and "provenance" not in payload
    del payload["architecture"]  # a checkpoint written before VGG16 existed
    torch.save(payload, tmp_path / "old.pt")
    assert isinstance(load_checkpoint(tmp_path / "old.pt")[0], NetVLADModel)
    torch.save(dict(payload, architecture="resnet50_gem"), tmp_path / "unknown.pt")
    with pytest.raises(CheckpointError, match="unknown architecture 'resnet50_gem'"):
        load_checkpoint(tmp_path / "unknown.pt")


def test_gdn_convert_netvlad(pittsburgh_style, tmp_path, capsys):
    out = tmp_path / "model.pt"
    assert gdn(["convert-netvlad", str(pittsburgh_style[1]), "--out", str(out)]) == 0
    assert pittsburgh_style[3].model_id in capsys.readouterr().out
    assert compute_model_id(load_checkpoint(out)[0]) == pittsburgh_style[3].model_id
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "foreign.pt")
    assert gdn(["convert-netvlad", str(tmp_path / "foreign.pt"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "gdn convert-netvlad: error:" in capsys.readouterr().err


def test_provision_vgg16_netvlad_needs_a_converted_checkpoint(tmp_path, capsys):
    args = ["provision", "--ortho", str(tmp_path / "absent.tif"), "--out", str(tmp_path / "corpus"),
            "--ground-alt-m", "0", "--model", "vgg16-netvlad"]
    assert gdn(args) == 2
    assert "--checkpoint MODEL.pt" in (err := capsys.readouterr().err) and "gdn convert-netvlad" in err
    efficientnet = tmp_path / "efficientnet.pt"
    save_checkpoint(build_model(NetVLADConfig(reduced_channels=16, num_clusters=8), imagenet_backbone=False),
                    efficientnet)
    assert gdn(args + ["--checkpoint", str(efficientnet)]) == 2
    assert "not a vgg16_netvlad model" in capsys.readouterr().err
    with pytest.raises(ValueError, match="only read for --model vgg16-netvlad"):
        provision(tmp_path / "absent.tif", tmp_path / "corpus", ProvisionConfig(model_checkpoint=str(efficientnet)))


def test_provision_uses_converted_vgg16_netvlad_as_it_is(pittsburgh_style, tmp_path, monkeypatch):
    """A 200 m GeoTIFF, 100 m tiles every 50 m at 64 px: the corpus loads the VGG model and its 4096-d descriptors
    are what the query side computes for the same tiles."""
    rng = np.random.default_rng(5)
    image = sum(cv2.resize(rng.uniform(0, 255, (n, n, 3)).astype(np.float32), (200, 200)) for n in (5, 20, 80)) / 3
    x0, y0 = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32634", always_xy=True).transform(22.46, 60.40)
    ortho = write_geotiff(tmp_path / "map.tif", image.astype(np.uint8), "EPSG:32634", from_origin(x0, y0, 1.0, 1.0))

    def no_adaptation(*args, **kwargs):
        raise AssertionError("a trained VGG16-NetVLAD must not be adapted to the map")

    monkeypatch.setattr(corpus_build, "adapt_model", no_adaptation)
    out = tmp_path / "corpus"
    assert gdn(["provision", "--ortho", str(ortho), "--out", str(out), "--tile-size-m", "100", "--stride-m", "50",
                "--tile-px", "64", "--ground-alt-m", "20", "--model", "vgg16-netvlad",
                "--checkpoint", str(pittsburgh_style[2])]) == 0
    corpus = Corpus.load(out)
    model = corpus.load_model()
    assert isinstance(model, VGG16NetVLAD) and corpus.model_id == pittsburgh_style[3].model_id
    assert corpus.descriptor_dim == 4096 and corpus.descriptors.shape == (corpus.num_tiles, 4096)
    assert model.provenance["source_sha256"] == file_sha256(pittsburgh_style[1])  # kept in the corpus's model.pt
    assert corpus.manifest.provision_config["descriptor_model"] == "vgg16-netvlad"
    config = ProvisionConfig(tile_size_m=100.0, stride_m=50.0, tile_px=64)
    raster = load_geotiff(ortho)
    tiles = [tile_image(raster, t["pixels"], 64) for t in tile_grid(raster, config)]
    assert len(tiles) == corpus.num_tiles >= 4
    query_side = DescriptorExtractor(model, device="cpu", input_px=corpus.tile_px).describe(tiles)
    np.testing.assert_allclose(query_side, corpus.descriptors, atol=TOLERANCE)
