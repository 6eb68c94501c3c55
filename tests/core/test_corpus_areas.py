"""Growing a corpus by a neighbouring map computes only the new tiles and cells and keeps the old ones as
they were; splitting a map into mission areas gives one verified corpus per area, each on its own origin."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from gps_denied_nav.core import corpus_add
from gps_denied_nav.core.corpus import Corpus
from gps_denied_nav.core.corpus_add import add_map
from gps_denied_nav.core.corpus_build import ProvisionConfig, provision, tile_grid
from gps_denied_nav.core.descriptor import DescriptorExtractor
from gps_denied_nav.core.map_raster import load_geotiff
from gps_denied_nav.core.netvlad import NetVLADConfig
from gps_denied_nav.core.provision_areas import AREAS_FILE, provision_areas

# Small and quick: what is tested is which tiles and cells are made where, not how well they retrieve.
CONFIG = ProvisionConfig(tile_size_m=150.0, stride_m=75.0, tile_px=64, sift_features_per_tile=200,
                         init_sample_size=500, kmeans_iterations=5, device="cpu",
                         model=NetVLADConfig(num_clusters=8), ground_alt_m=12.5)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread for torch and BLAS: on a loaded 2-core machine more threads than cores made the head's
    eigh and the forward passes ten times slower (oversubscription)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world(small_world):
    return load_geotiff(small_world)


@pytest.fixture(scope="module")
def grown(world, tmp_path_factory):
    """The west part provisioned, then the east part (overlapping it by a tile and a stride) added, with the
    descriptor and SIFT calls of the add counted; and the tile grid of the whole map."""
    e0, n0, e1, n1 = world.east_min_m, world.north_min_m, world.east_max_m, world.north_max_m
    seam = e0 + 300.0
    west, east = world.crop_enu(e0, n0, seam, n1), world.crop_enu(seam - 225.0, n0, e1, n1)
    out = tmp_path_factory.mktemp("grown") / "corpus"
    provision(west, out, CONFIG)
    before = Corpus.load(out)
    old = {"ids": list(before.tile_ids), "descriptors": np.array(before.descriptors),
           "features": dict(np.load(out / "features.npz")), "model": (out / "model.pt").read_bytes()}
    counts = {"described": 0, "cells": 0}
    patch = pytest.MonkeyPatch()
    describe, detect = DescriptorExtractor.describe, corpus_add.detect_cell_features

    def counting_describe(self, images):
        counts["described"] += len(images)
        return describe(self, images)

    def counting_detect(*args, **kwargs):
        counts["cells"] += 1
        return detect(*args, **kwargs)

    patch.setattr(DescriptorExtractor, "describe", counting_describe)
    patch.setattr(corpus_add, "detect_cell_features", counting_detect)
    try:
        result = add_map(east, out)
    finally:
        patch.undo()
    return out, old, result, counts, east, tile_grid(world, CONFIG)


def test_only_the_new_tiles_and_cells_are_computed(grown):
    out, old, result, counts, _, _ = grown
    assert counts["described"] == len(result.new_tile_ids) > 0
    assert counts["cells"] == result.new_cells > 0 and result.reused_cells > 0
    assert not set(result.new_tile_ids) & set(old["ids"])


def test_the_old_corpus_is_kept_and_the_new_tiles_appended(grown):
    out, old, result, _, _, whole_grid = grown
    corpus = Corpus.load(out)  # every checksum of the new manifest verifies
    n_old = len(old["ids"])
    assert corpus.tile_ids == old["ids"] + result.new_tile_ids and corpus.manifest.num_tiles == len(corpus.tile_ids)
    np.testing.assert_array_equal(np.asarray(corpus.descriptors)[:n_old], old["descriptors"])
    assert (out / "model.pt").read_bytes() == old["model"] and corpus.index.ntotal == len(corpus.tile_ids)
    features = np.load(out / "features.npz")
    n_cells = len(old["features"]["cell_offsets"]) - 1
    n_kp = old["features"]["cell_offsets"][-1]
    np.testing.assert_array_equal(features["cell_offsets"][:n_cells + 1], old["features"]["cell_offsets"])
    np.testing.assert_array_equal(features["keypoints_enu_m"][:n_kp], old["features"]["keypoints_enu_m"])
    np.testing.assert_array_equal(features["cell_bounds_enu_m"][:n_cells], old["features"]["cell_bounds_enu_m"])
    # The grown corpus has the tile grid of the whole map provisioned at once: same ids, same bounds.
    at_once = {t["tile_id"]: [t["east_min_m"], t["north_min_m"], t["east_max_m"], t["north_max_m"]] for t in whole_grid}
    assert sorted(corpus.tile_ids) == sorted(at_once)
    np.testing.assert_allclose(corpus.tile_bounds_enu_m, [at_once[t] for t in corpus.tile_ids], atol=1e-6)
    for i, tile in enumerate(corpus.tiles):  # every tile's cells hold keypoints inside its bounds
        kp, _ = corpus.tile_features(i)
        assert len(kp) > 0 and np.all((kp >= corpus.tile_bounds_enu_m[i, :2] - 0.5) &
                                      (kp <= corpus.tile_bounds_enu_m[i, 2:] + 0.5)), tile.tile_id


def test_new_tiles_are_described_by_the_corpus_model(grown):
    out, old, result, _, east, _ = grown
    corpus = Corpus.load(out)
    runtime = DescriptorExtractor(corpus.load_model(), "cpu", CONFIG.tile_px, CONFIG.batch_size)
    i = corpus.tile_ids.index(result.new_tile_ids[-1])
    crop = east.crop_enu(*corpus.tile_bounds_enu_m[i]).image_rgb
    np.testing.assert_allclose(runtime.describe([crop])[0], corpus.descriptors[i], atol=1e-4)
    added = corpus.manifest.provision_config["added"]
    assert len(added) == 1 and added[0]["num_tiles"] == len(result.new_tile_ids)
    _, valid, geometry = corpus.map_preview()
    g = corpus.manifest.map_geometry
    assert (geometry.east_min_m, geometry.north_max_m) == (g.east_min_m, g.north_max_m) and valid.mean() > 0.95


def test_adding_the_same_map_again_is_refused(grown, world):
    out = grown[0]
    with pytest.raises(ValueError, match="adds no tile"):
        add_map(world.crop_enu(world.east_min_m, world.north_min_m, world.east_min_m + 300.0, world.north_max_m), out)
    Corpus.load(out)  # and the corpus is still whole


def test_a_map_split_into_areas_gives_one_corpus_per_area(small_world, tmp_path):
    index = provision_areas(small_world, tmp_path, CONFIG, area_size_m=500.0)
    assert json.loads((tmp_path / AREAS_FILE).read_text()) == json.loads(json.dumps(index))
    areas = index["areas"]
    assert [a["name"] for a in areas] == ["area_0_0", "area_0_1", "area_1_0", "area_1_1"]
    origins = set()
    for area in areas:
        corpus = Corpus.load(tmp_path / area["dir"])
        e0, n0, e1, n1 = area["box_enu_m"]
        assert max(e1 - e0, n1 - n0) <= 500.0 and corpus.manifest.num_tiles == area["num_tiles"] > 0
        assert (corpus.frame.origin_lat_deg, corpus.frame.origin_lon_deg) == (area["origin_lat_deg"],
                                                                              area["origin_lon_deg"])
        # the area's tiles lie in its box, around its own origin
        b = corpus.tile_bounds_enu_m
        assert b[:, 0].min() >= e0 - 1 and b[:, 2].max() <= e1 + 1 and b[:, 1].min() >= n0 - 1 and b[:, 3].max() <= n1 + 1
        origins.add((round(area["origin_lat_deg"], 6), round(area["origin_lon_deg"], 6)))
        lat, lon = np.array(area["corners_lat_lon_deg"]).T
        assert np.all((corpus.tile_latlon_deg[:, 0] > lat.min()) & (corpus.tile_latlon_deg[:, 0] < lat.max()))
        assert np.all((corpus.tile_latlon_deg[:, 1] > lon.min()) & (corpus.tile_latlon_deg[:, 1] < lon.max()))
    assert len(origins) == 4
