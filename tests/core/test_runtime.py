"""The descriptor runtimes: ONNX Runtime against torch on both models, refusals of unusable exports and backends,
and retrieval that ranks tiles the same whichever backend made the query descriptor."""
from __future__ import annotations

import numpy as np
import pytest

from gps_denied_nav.core import onnx_export
from gps_denied_nav.core.camera import R_BODY_CAM_NADIR, CameraIntrinsics
from gps_denied_nav.core.corpus import Corpus, CorpusError
from gps_denied_nav.core.errors import RuntimeUnavailable
from gps_denied_nav.core.map_raster import load_geotiff
from gps_denied_nav.core.netvlad import compute_model_id
from gps_denied_nav.core.netvlad_vgg16 import VGG16NetVLAD, VGG16NetVLADConfig
from gps_denied_nav.core.rectify import FILL_VALUE, query_footprint_m, rectify_to_north_up
from gps_denied_nav.core.rotations import quat_from_euler, quat_to_rotmat
from gps_denied_nav.core.runtime import ONNX_FILE, OnnxRuntime, TorchRuntime, make_runtime
from gps_denied_nav.sim.render import render_frame

TOLERANCE = 1e-4  # max |ONNX Runtime - torch| on unit descriptors


def _images(input_px: int, count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (input_px + 17 * i, input_px + 9 * i, 3), dtype=np.uint8) for i in range(count)]
    images[-1][: images[-1].shape[0] // 3] = FILL_VALUE  # nodata, as a rectified query's corner
    return images


def _assert_parity(onnx, torch_runtime, images) -> None:
    for batch in (images[:1], images):  # the batch axis is dynamic: one graph for both
        got, expected = onnx.describe(batch), torch_runtime.describe(batch)
        difference = float(np.abs(got - expected).max())
        assert got.shape == expected.shape == (len(batch), torch_runtime.descriptor_dim)
        assert difference <= TOLERANCE, f"ONNX Runtime vs torch: max abs difference {difference:.2e}"
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_efficientnet_corpus_export_matches_torch(onnx_corpus):
    printed = (onnx_corpus.parent / "export.txt").read_text()
    assert str(onnx_corpus / ONNX_FILE) in printed and "max abs difference" in printed and "opset 17" in printed
    corpus = Corpus.load(onnx_corpus)
    onnx = make_runtime("onnxruntime", corpus, device="cpu", threads=2)
    torch_runtime = make_runtime("torch", corpus, device="cpu")
    assert (onnx.name, onnx.device, onnx.model_id) == ("onnxruntime", "CPUExecutionProvider", corpus.model_id)
    _assert_parity(onnx, torch_runtime, _images(corpus.tile_px, 3))
    assert onnx.describe([]).shape == (0, corpus.descriptor_dim)


def test_vgg16_netvlad_with_random_weights_exports_and_matches_torch(tmp_path):
    model = VGG16NetVLAD(VGG16NetVLADConfig(num_clusters=8, pca_dim=64)).eval()
    result = onnx_export.export_onnx(model, 64, tmp_path / ONNX_FILE)
    assert result.max_abs_diff <= TOLERANCE and result.model_id == compute_model_id(model) and result.opset == 17
    onnx = OnnxRuntime(result.path, result.model_id, 64, 64, device="cpu")
    _assert_parity(onnx, TorchRuntime(model, device="cpu", input_px=64), _images(64, 3, seed=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == [ONNX_FILE]  # the temporary file is gone


def test_an_export_that_fails_the_parity_check_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(RuntimeError, match="differs from torch"):
        onnx_export.export_onnx(VGG16NetVLAD(VGG16NetVLADConfig(num_clusters=4, pca_dim=0)), 32, tmp_path / ONNX_FILE)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="opset"):
        onnx_export.export_onnx(VGG16NetVLAD(VGG16NetVLADConfig(num_clusters=4, pca_dim=0)), 32, tmp_path / "x", 13)


def test_a_stale_export_is_refused_naming_both_models(onnx_corpus):
    corpus = Corpus.load(onnx_corpus)
    retrained = "efficientnet_lite0_netvlad@0123456789ab"  # what gdn train-vpr leaves in the manifest
    with pytest.raises(CorpusError, match="stale export") as info:
        OnnxRuntime(onnx_corpus / ONNX_FILE, retrained, corpus.tile_px, corpus.descriptor_dim, device="cpu")
    assert corpus.model_id in str(info.value) and retrained in str(info.value)
    assert info.value.path == str(onnx_corpus / ONNX_FILE)


def test_a_corrupt_or_wrongly_sized_export_is_refused_naming_the_file(onnx_corpus, tmp_path):
    corpus = Corpus.load(onnx_corpus)
    truncated = tmp_path / ONNX_FILE
    truncated.write_bytes((onnx_corpus / ONNX_FILE).read_bytes()[:5000])
    with pytest.raises(CorpusError, match="not a loadable ONNX model") as info:
        OnnxRuntime(truncated, corpus.model_id, corpus.tile_px, corpus.descriptor_dim, device="cpu")
    assert info.value.path == str(truncated)
    with pytest.raises(CorpusError, match=f"tiles are {corpus.tile_px + 32} px"):
        OnnxRuntime(onnx_corpus / ONNX_FILE, corpus.model_id, corpus.tile_px + 32, corpus.descriptor_dim, device="cpu")


def test_unavailable_backends_are_refused_with_the_reason(small_corpus, onnx_corpus, monkeypatch):
    import onnxruntime

    with pytest.raises(RuntimeUnavailable, match="gdn export-onnx"):  # provisioned, never exported
        make_runtime("onnxruntime", Corpus.load(small_corpus), device="cpu")
    corpus = Corpus.load(onnx_corpus)
    with pytest.raises(RuntimeUnavailable, match="backend must be one of"):
        make_runtime("tensorflow", corpus)
    with pytest.raises(RuntimeUnavailable, match="fp16"):
        make_runtime("onnxruntime", corpus, device="cpu", fp16=True)
    with pytest.raises(RuntimeUnavailable, match="fp16"):
        make_runtime("torch", corpus, device="cpu", fp16=True)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    for device, provider in (("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")):
        with pytest.raises(RuntimeUnavailable, match=provider):
            make_runtime("onnxruntime", corpus, device=device)
    assert make_runtime("onnxruntime", corpus, device="auto").device == "CPUExecutionProvider"


def _rendered_queries(world, corpus, count: int = 4) -> list[np.ndarray]:
    """Frames rendered over tiles of the corpus at 120 m, any heading, rectified north-up as the node does."""
    raster, camera = load_geotiff(world), CameraIntrinsics.from_hfov(640, 480, 60.0)
    rng, gsd_m, agl_m = np.random.default_rng(4), corpus.tile_size_m / corpus.tile_px, 120.0
    queries = []
    for east, north in corpus.tile_centres_enu_m[rng.choice(corpus.num_tiles, count, replace=False)]:
        R_world_cam = quat_to_rotmat(quat_from_euler(0.05, -0.04, rng.uniform(-np.pi, np.pi))) @ R_BODY_CAM_NADIR
        ground_up_m = corpus.ground_up_at(east, north)
        frame = render_frame(raster, camera.K, R_world_cam, np.array([east, north, ground_up_m + agl_m]), 640, 480,
                             ground_up_m=ground_up_m)
        footprint_m = query_footprint_m(camera.K, 640, 480, agl_m, 1.0, corpus.tile_size_m)
        query, _valid, _offset = rectify_to_north_up(frame, camera.K, R_world_cam, agl_m, gsd_m,
                                                     int(round(footprint_m / gsd_m)))
        queries.append(query)
    return queries


def test_retrieval_ranks_tiles_the_same_with_either_backend(small_world, onnx_corpus):
    corpus = Corpus.load(onnx_corpus)
    queries = _rendered_queries(small_world, corpus)
    rankings = {}
    for backend in ("torch", "onnxruntime"):
        descriptors = make_runtime(backend, corpus, device="cpu").describe(queries)
        rankings[backend] = corpus.tile_search.search(descriptors, 5, None, None).indices
    np.testing.assert_array_equal(rankings["onnxruntime"], rankings["torch"])
