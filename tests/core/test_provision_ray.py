"""Provisioning on a local two-CPU Ray instance gives the one-process corpus, spreads the work over several
worker processes, survives a worker that dies, and writes no manifest when the job fails for good."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

ray = pytest.importorskip("ray", reason="ray[data] is not installed: the --ray provisioning path is optional")
pytest.importorskip("ray.data", reason="ray is installed without its [data] extra")

from gps_denied_nav.core.corpus import Corpus, CorpusError  # noqa: E402
from gps_denied_nav.core.corpus_build import ProvisionConfig, provision  # noqa: E402
from gps_denied_nav.core.map_raster import load_geotiff  # noqa: E402
from gps_denied_nav.core.netvlad import NetVLADConfig  # noqa: E402
from gps_denied_nav.core.provision_ray import CRASH_ONCE_ENV, RayConfig, RayProvisionError, provision_ray  # noqa: E402

CONFIG = ProvisionConfig(tile_size_m=150.0, stride_m=75.0, tile_px=128, sift_features_per_tile=400,
                         init_sample_size=2000, kmeans_iterations=10, device="cpu",
                         model=NetVLADConfig(num_clusters=16), ground_alt_m=12.5)
RAY = RayConfig(num_workers=2, sift_cells_per_task=16)


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def raster(small_world):
    return load_geotiff(small_world)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread here as in every actor: the head's k-means and the forward passes then add in the
    same order on both paths."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):  # and BLAS (the head's eigh): more threads than cores crawl on a loaded machine
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpora(raster, ray_cluster, one_thread, tmp_path_factory):
    single, on_ray = tmp_path_factory.mktemp("single"), tmp_path_factory.mktemp("ray")
    provision(raster, single, CONFIG)
    result = provision_ray(raster, on_ray, CONFIG, RAY)
    return single, on_ray, result


def test_ray_corpus_equals_the_one_process_corpus(corpora):
    single, on_ray, result = corpora
    a, b = Corpus.load(single), Corpus.load(on_ray)  # both verify against their manifests
    assert a.tile_ids == b.tile_ids and len(a.tile_ids) > 30
    np.testing.assert_allclose(np.asarray(b.descriptors), np.asarray(a.descriptors), atol=1e-5, rtol=0)
    with np.load(single / "features.npz") as fa, np.load(on_ray / "features.npz") as fb:
        assert fa.files == fb.files and all(np.array_equal(fa[k], fb[k]) for k in fa.files)
    manifest_a, manifest_b = (json.loads((d / "manifest.json").read_text()) for d in (single, on_ray))
    for manifest in (manifest_a, manifest_b):
        manifest["provision_config"].pop("created_unix_s")
        files = manifest.pop("files")
    assert manifest_a == manifest_b and manifest_a["num_tiles"] == len(a.tile_ids)
    # Files whose bytes cannot depend on float rounding are identical; descriptors may differ in the last bits.
    exact = ("tiles.json", "features.npz", "map.png", "model.pt", "terrain.npz")
    sums_a, sums_b = (json.loads((d / "manifest.json").read_text())["files"] for d in (single, on_ray))
    assert {k: sums_a[k] for k in exact} == {k: sums_b[k] for k in exact} and set(files) == set(sums_a)
    assert set(result.stage_s) == {"tiles", "init", "descriptors", "sift", "write"}


def test_the_work_is_spread_over_worker_processes(corpora):
    _, _, result = corpora
    n_batches = -(-len(Corpus.load(corpora[1]).tile_ids) // CONFIG.batch_size)
    assert len(result.describe_pids) == n_batches
    assert len(set(result.describe_pids)) >= 2, "the two descriptor actors should both have described tiles"
    assert os.getpid() not in result.describe_pids + result.sift_pids
    assert len(result.sift_pids) >= 2


def test_a_dead_worker_is_replaced_and_its_batch_retried(corpora, raster, tmp_path, monkeypatch):
    single, _, _ = corpora
    marker = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_ONCE_ENV, str(marker))
    provision_ray(raster, tmp_path / "corpus", CONFIG, RAY)
    assert marker.exists(), "no actor ran into the fault injection"
    corpus = Corpus.load(tmp_path / "corpus")
    np.testing.assert_allclose(np.asarray(corpus.descriptors), np.asarray(Corpus.load(single).descriptors),
                               atol=1e-5, rtol=0)


def test_a_job_that_fails_for_good_writes_no_manifest(raster, ray_cluster, one_thread, tmp_path, monkeypatch):
    monkeypatch.setenv(CRASH_ONCE_ENV, str(tmp_path / "crashed"))
    out = tmp_path / "corpus"
    no_retries = RayConfig(num_workers=2, max_restarts=0, max_task_retries=0)
    with pytest.raises(RayProvisionError, match="descriptor job failed.*no manifest"):
        provision_ray(raster, out, CONFIG, no_retries)
    assert not (out / "manifest.json").exists()
    with pytest.raises(CorpusError, match="manifest"):
        Corpus.load(out)
