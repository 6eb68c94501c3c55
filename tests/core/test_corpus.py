"""Provisioning a small synthetic map, verifying the corpus on load, and retrieving rendered views of it."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from gps_denied_nav.core.camera import R_BODY_CAM_NADIR, CameraIntrinsics, ground_to_image_homography
from gps_denied_nav.core.corpus import Corpus, CorpusError
from gps_denied_nav.core.corpus_build import ProvisionConfig, provision
from gps_denied_nav.core.descriptor import DescriptorExtractor
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.map_raster import MapRaster
from gps_denied_nav.core.netvlad import NetVLADConfig
from gps_denied_nav.core.rectify import rectify_to_north_up
from gps_denied_nav.core.retrieval import MODE_GLOBAL, search
from gps_denied_nav.core.rotations import quat_from_euler, quat_to_rotmat

CONFIG = ProvisionConfig(tile_size_m=150.0, stride_m=75.0, tile_px=128, sift_features_per_tile=400,
                         init_sample_size=2000, device="cpu", model=NetVLADConfig(num_clusters=16),
                         ground_alt_m=12.5)
BLOB_ENU_M = (-112.0, 57.0)  # a bright 7 m square: SIFT must put a keypoint on it, in ENU


def synthetic_raster() -> MapRaster:
    """600 m x 600 m at 1 m/px: multi-scale texture, 'fields' and 'roads', a nodata north-east corner."""
    rng = np.random.default_rng(3)
    size = 600
    image = np.zeros((size, size, 3), np.float32)
    for cells, weight in ((6, 1.0), (24, 0.6), (96, 0.5), (300, 0.3)):
        image += weight * cv2.resize(rng.uniform(0, 1, (cells, cells, 3)).astype(np.float32), (size, size),
                                     interpolation=cv2.INTER_CUBIC)
    image = (255 * (image - image.min()) / (image.max() - image.min())).astype(np.uint8)
    for _ in range(40):
        x, y, w, h = rng.integers(0, size, 4)
        cv2.rectangle(image, (int(x), int(y)), (int(x + w // 4), int(y + h // 4)), rng.integers(0, 255, 3).tolist(), -1)
    for x, y, w in rng.integers(0, size, (1500, 3)):  # "trees and sheds": the blobs SIFT lives on
        cv2.rectangle(image, (int(x), int(y)), (int(x + 2 + w % 5), int(y + 2 + w % 4)),
                      rng.integers(0, 255, 3).tolist(), -1)
    for _ in range(12):
        p, q = rng.integers(0, size, (2, 2))
        cv2.line(image, tuple(map(int, p)), tuple(map(int, q)), (200, 190, 170), 3)
    frame = LocalTangentPlane(60.40, 22.46, 0.0)
    raster = MapRaster(image, np.ones((size, size), bool), 1.0, -300.0, 300.0, frame, "synthetic")
    col, row = (int(v) for v in np.round(raster.enu_to_pixel(*BLOB_ENU_M)))
    image[row - 12:row + 13, col - 12:col + 13] = 60
    image[row - 3:row + 4, col - 3:col + 4] = 255
    raster.valid[:200, 420:] = False
    image[~raster.valid] = 0
    return raster


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory):
    raster = synthetic_raster()
    out = tmp_path_factory.mktemp("corpus")
    stages = []
    manifest = provision(raster, out, CONFIG, progress=lambda stage, done, total: stages.append((stage, done, total)))
    return raster, out, manifest, stages


def test_manifest_and_layout(provisioned):
    raster, out, manifest, stages = provisioned
    assert {s for s, _, _ in stages} == {"tiles", "init", "descriptors", "sift", "write"}
    assert all(done <= total for _, done, total in stages) and stages[-1] == ("write", 1, 1)
    corpus = Corpus.load(out)
    # 7 x 7 grid of 150 m tiles every 75 m; the nodata corner (200 m x 180 m) removes the tiles mostly in it.
    assert 30 < manifest.num_tiles < 49 and len(corpus.tile_ids) == manifest.num_tiles
    assert manifest.descriptor_dim == 16 * 64 and corpus.descriptors.shape == (manifest.num_tiles, 1024)
    assert corpus.index.ntotal == manifest.num_tiles and manifest.model_id.startswith("netvlad_efficientnet_lite0@")
    assert manifest.origin == raster.frame and manifest.map_geometry.gsd_m == 1.0
    assert corpus.ground_up_m == 12.5 and corpus.num_tiles == manifest.num_tiles and corpus.tile_px == 128
    assert corpus.ground_up_at(100.0, -50.0) == 12.5 and manifest.terrain_datum == "WGS84 ellipsoidal height"
    assert [t.tile_id for t in corpus.tiles] == corpus.tile_ids and corpus.tiles[4].index == 4
    bounds = corpus.tile_bounds_enu_m
    np.testing.assert_allclose(bounds[:, 2] - bounds[:, 0], 150.0)
    np.testing.assert_allclose(corpus.tile_centres_enu_m, 0.5 * (bounds[:, :2] + bounds[:, 2:]))
    assert bounds[:, 0].min() >= -300 and bounds[:, 2].max() <= 300
    lat, lon, _ = raster.frame.to_geodetic(np.column_stack([corpus.tile_centres_enu_m, np.zeros(len(bounds))]))
    np.testing.assert_allclose(corpus.tile_latlon_deg, np.column_stack([lat, lon]), atol=1e-9)
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["format_version"] == 3
    # Neither error was given: a flat height is good to 2 m, a 1 m/px map registered to max(1 m, 4 px).
    assert (manifest.terrain_sigma_m, manifest.map_registration_sigma_m) == (2.0, 4.0)
    assert set(on_disk["files"]) >= {"index.faiss", "model.pt", "features.npz", "terrain.npz"}
    preview, valid, geometry = corpus.map_preview()
    assert preview.shape[:2] == valid.shape == (geometry.height_px, geometry.width_px)
    assert not valid[:150, -150:].any() and valid[300:, :300].all()


def test_features_are_in_enu_without_duplicates(provisioned):
    _, out, manifest, _ = provisioned
    corpus = Corpus.load(out)
    everything, descriptors = corpus.features_in_window((0.0, 0.0), 1000.0)
    assert len(everything) == manifest.num_features > 1000
    # Each cell holds only keypoints inside its half-open bounds, so no keypoint is stored twice.
    for cell, (e0, n0, e1, n1) in enumerate(corpus.cell_bounds_enu_m):
        kp = everything[corpus.cell_offsets[cell]:corpus.cell_offsets[cell + 1]]
        assert np.all((kp[:, 0] >= e0 - 1e-3) & (kp[:, 0] < e1) & (kp[:, 1] > n0) & (kp[:, 1] <= n1 + 1e-3))
    assert np.min(np.linalg.norm(everything - np.array(BLOB_ENU_M), axis=1)) < 1.0
    for i in range(0, manifest.num_tiles, 7):
        kp, desc = corpus.tile_features(i)
        b = corpus.tile_bounds_enu_m[i]
        assert len(kp) > 50 and desc.shape == (len(kp), 128)
        assert np.all((kp >= b[:2] - 0.5) & (kp <= b[2:] + 0.5))
        np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1.0, atol=1e-4)  # RootSIFT
    kp, _ = corpus.features_in_window((50.0, -20.0), 60.0)
    assert len(kp) > 0 and np.all(np.abs(kp - np.array([50.0, -20.0], np.float32)) <= 60.0)


def test_stored_descriptors_come_from_the_stored_model(provisioned):
    raster, out, manifest, _ = provisioned
    corpus = Corpus.load(out)
    runtime = DescriptorExtractor(corpus.load_model(), device="cpu", input_px=CONFIG.tile_px)
    assert runtime.model_id == manifest.model_id
    e0, n0, e1, n1 = corpus.tile_bounds_enu_m[5]
    crop = raster.crop_enu(e0, n0, e1, n1).image_rgb
    np.testing.assert_allclose(runtime.describe([crop])[0], corpus.descriptors[5], atol=1e-4)


def render(raster, K, R_world_cam, cam_pos_enu_m, width_px, height_px):
    H_image_map = ground_to_image_homography(K, R_world_cam, cam_pos_enu_m) @ raster.enu_from_pixel_affine()
    return cv2.warpPerspective(raster.image_rgb, H_image_map, (width_px, height_px), flags=cv2.INTER_LINEAR)


def test_rendered_rectified_view_retrieves_its_tile(provisioned):
    raster, out, _, _ = provisioned
    corpus = Corpus.load(out)
    runtime = DescriptorExtractor(corpus.load_model(), device="cpu", input_px=CONFIG.tile_px)
    camera = CameraIntrinsics.from_hfov(400, 300, 90.0)
    for tile_index, yaw_deg in ((3, 40.0), (17, -100.0), (25, 60.0), (len(corpus.tile_ids) - 2, 170.0)):
        R_world_cam = quat_to_rotmat(quat_from_euler(0.05, -0.04, np.radians(yaw_deg))) @ R_BODY_CAM_NADIR
        centre = corpus.tile_centres_enu_m[tile_index]
        cam_pos = np.array([centre[0] + 4.0, centre[1] - 3.0, 110.0])
        frame = render(raster, camera.K, R_world_cam, cam_pos, camera.width_px, camera.height_px)
        query, valid, _ = rectify_to_north_up(frame, camera.K, R_world_cam, 110.0, 150.0 / 128, 128)
        result = search(corpus.index, runtime.describe([query])[0], 5)
        assert result.mode == MODE_GLOBAL and result.indices[0] == tile_index, (tile_index, result)
        assert result.scores[0] > result.scores[1] + 0.05


def _copy(out, tmp_path):
    target = tmp_path / "corpus"
    shutil.copytree(out, target)
    return target


def test_tampered_or_missing_files_raise_corpus_error(provisioned, tmp_path):
    _, out, _, _ = provisioned
    truncated = _copy(out, tmp_path / "a")
    data = (truncated / "index.faiss").read_bytes()
    (truncated / "index.faiss").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorpusError, match=r"index\.faiss.*truncated"):
        Corpus.load(truncated)

    flipped = _copy(out, tmp_path / "b")
    data = bytearray((flipped / "descriptors.npy").read_bytes())
    data[-10] ^= 0xFF
    (flipped / "descriptors.npy").write_bytes(bytes(data))
    with pytest.raises(CorpusError, match=r"descriptors\.npy.*sha256"):
        Corpus.load(flipped)

    missing = _copy(out, tmp_path / "c")
    (missing / "features.npz").unlink()
    with pytest.raises(CorpusError, match=r"features\.npz: missing"):
        Corpus.load(missing)

    bad_manifest = _copy(out, tmp_path / "d")
    (bad_manifest / "manifest.json").write_text("{ not json")
    with pytest.raises(CorpusError, match=r"manifest\.json: not valid JSON"):
        Corpus.load(bad_manifest)
    with pytest.raises(CorpusError, match="manifest.json: missing"):
        Corpus.load(tmp_path / "nowhere")


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="multiple of stride"):
        provision(synthetic_raster(), tmp_path, ProvisionConfig(tile_size_m=150.0, stride_m=40.0, assume_sea_level=True))
