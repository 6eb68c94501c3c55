"""``gdn fetch-map`` against a local tile server serving a synthetic raster: the COG's grid and pixels are
the tiles', faults are retried or reported, an interrupted fetch resumes, the server is treated politely,
and ``provision`` takes the result."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import rasterio

from gdn_maps import expected_grid, run_gdn, textured_rgba
from tile_server import TileServer, png_tiles

from gps_denied_nav.maps.fetch import FetchConfig, TileCache, fetch_tiles
from gps_denied_nav.maps.xyz import BBox, tile_block, tile_url

ZOOM = 17
BBOX = (22.4603, 60.4004, 22.4668, 60.4033)  # Turku, ~360 m x 320 m: 4 x 3 tiles at zoom 17
UA = "gdn-tests/1.0 (fetch-map test)"


@pytest.fixture(scope="module")
def source():
    """The synthetic raster covering the bbox's tile block, its PNG tiles, and the block."""
    block = tile_block(BBox(*BBOX), ZOOM)
    rows, cols = block.y_max - block.y_min + 1, block.x_max - block.x_min + 1
    rgba = textured_rgba(rows * 256, cols * 256)
    return rgba, png_tiles(rgba, ZOOM, block.x_min, block.y_min), block


def fetch_args(server, out, *extra: str) -> list[str]:
    return ["fetch-map", "--bbox", ",".join(map(str, BBOX)), "--zoom", str(ZOOM), "--source", server.template,
            "--out", str(out), "--user-agent", UA, "--attribution", "Imagery (c) Test Provider",
            "--rate-per-s", "200", "--timeout-s", "0.5", "--max-attempts", "3", *extra]


def expected_pixels(rgba, bounds_m):
    """The source pixels under ``bounds_m`` (the raster starts at the north-west tile's corner)."""
    res_m, _, (x0, y0) = expected_grid(BBOX, ZOOM)
    half_m = np.pi * 6378137.0
    col0 = round((bounds_m[0] + half_m) / res_m) - x0 * 256
    row0 = round((half_m - bounds_m[3]) / res_m) - y0 * 256
    width, height = round((bounds_m[2] - bounds_m[0]) / res_m), round((bounds_m[3] - bounds_m[1]) / res_m)
    return rgba[row0:row0 + height, col0:col0 + width], (row0, col0)


@pytest.fixture(scope="module")
def faulty_fetch(source, tmp_path_factory):
    """One fetch through every transient fault, a 404 tile left nodata (--allow-missing)."""
    rgba, tiles, block = source
    keys = sorted(tiles)
    out = tmp_path_factory.mktemp("fetch") / "map.tif"
    with TileServer(tiles, retry_after_s="2") as server:  # longer than any first back-off (<= 1 s)
        server.always_404.add(keys[0])
        server.add_fault(keys[1], "slow")
        server.add_fault(keys[2], "corrupt")
        server.add_fault(keys[3], "503")
        code, stdout, stderr = run_gdn(*fetch_args(server, out, "--allow-missing"))
    return out, code, stdout + stderr, server, keys


def test_fetched_map_is_the_tiles_on_the_exact_web_mercator_grid(source, faulty_fetch):
    rgba, _, _ = source
    out, code, printed, server, keys = faulty_fetch
    assert code == 0, printed
    _, bounds_m, _ = expected_grid(BBOX, ZOOM)
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 3857
        assert np.allclose(tuple(ds.bounds), bounds_m, rtol=0, atol=1e-6)
        assert ds.block_shapes[0] == (512, 512) and ds.overviews(1), "not tiled or no internal overviews"
        assert ds.compression.name == "deflate"
        got = np.moveaxis(ds.read(), 0, -1)
    want, (row0, col0) = expected_pixels(rgba, bounds_m)
    assert got.shape == want.shape
    # The 404 tile is nodata (alpha 0); everywhere else the pixels are exactly the PNG tiles'.
    z, x, y = keys[0]
    r = (y - source[2].y_min) * 256 - row0
    c = (x - source[2].x_min) * 256 - col0
    hole = np.zeros(got.shape[:2], bool)
    hole[max(r, 0):r + 256, max(c, 0):c + 256] = True
    assert (got[hole, 3] == 0).all()
    assert np.array_equal(got[~hole], want[~hole])


def test_faults_are_retried_and_the_404_is_asked_once(faulty_fetch):
    out, code, printed, server, keys = faulty_fetch
    requests = server.tile_requests()
    assert requests.count(server.tile_path(*keys[0])) == 1, "a 404 is an answer, not retried"
    for key in keys[1:4]:  # slow (timed out), corrupt, 503: each asked exactly twice
        assert requests.count(server.tile_path(*key)) == 2, key
    assert all(requests.count(server.tile_path(*k)) == 1 for k in keys[4:])
    times = [t for path, _, t in server.log if path == server.tile_path(*keys[3])]
    assert times[1] - times[0] >= 1.9, "Retry-After: 2 was not waited out"
    assert {ua for _, ua, _ in server.log} == {UA}


def test_attribution_and_source_are_recorded(faulty_fetch, source):
    out, code, printed, server, keys = faulty_fetch
    with rasterio.open(out) as ds:
        tags = ds.tags()
    assert tags["TIFFTAG_COPYRIGHT"] == tags["ATTRIBUTION"] == "Imagery (c) Test Provider"
    assert tags["GDN_SOURCE"] == server.template and tags["GDN_ZOOM"] == str(ZOOM)
    record = json.loads((out.parent / "map.tif.source.json").read_text())
    assert record["source"] == server.template and record["zoom"] == ZOOM and record["bbox_deg"] == list(BBOX)
    assert record["tile_count"] == source[2].count and record["tiles_missing"] == [list(keys[0])]
    assert record["user_agent"] == UA and record["attribution"] == "Imagery (c) Test Provider"
    assert record["fetched_utc"].endswith("+00:00")


def test_missing_tiles_fail_the_command_with_the_list_and_no_map(source, tmp_path):
    _, tiles, _ = source
    key = sorted(tiles)[5]
    with TileServer(tiles) as server:
        server.always_404.add(key)
        code, _, stderr = run_gdn(*fetch_args(server, tmp_path / "map.tif"))
    assert code == 2
    assert server.base + server.tile_path(*key) in stderr and "HTTP 404" in stderr and "--allow-missing" in stderr
    assert not (tmp_path / "map.tif").exists() and not list(tmp_path.glob(".map.tif*"))


def test_a_down_server_fails_with_the_url_and_status(source, tmp_path):
    _, tiles, _ = source
    with TileServer(tiles) as server:
        server.fail_all = 503
        code, _, stderr = run_gdn(*fetch_args(server, tmp_path / "map.tif"))
    assert code == 2 and "HTTP 503" in stderr and server.base + "/tiles/" in stderr, stderr
    assert len(server.tile_requests()) <= 3 * len(tiles), "kept hammering a dead server"
    assert not (tmp_path / "map.tif").exists()


def test_an_interrupted_fetch_resumes_with_only_the_missing_tiles(source, tmp_path):
    rgba, tiles, block = source
    out = tmp_path / "map.tif"
    cache_dir = tmp_path / "map.tif.tiles"

    def interrupt_after_4(done, total):
        if done >= 4:
            raise KeyboardInterrupt

    with TileServer(tiles) as server:
        cache = TileCache(cache_dir, server.template)
        with pytest.raises(KeyboardInterrupt):
            fetch_tiles(block.tiles(), lambda t: tile_url(server.template, t), cache,
                        FetchConfig(UA, rate_per_s=200, workers=2), progress=interrupt_after_4)
        first_run = len(server.tile_requests())
        cached = sorted(cache_dir.glob("17/*/*.png"))
        assert 4 <= len(cached) < len(tiles) and first_run == len(cached)
        cached[0].write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # a tile damaged on disk since
        code, _, stderr = run_gdn(*fetch_args(server, out))
        second_run = server.tile_requests()[first_run:]
    assert code == 0, stderr
    assert len(second_run) == len(tiles) - len(cached) + 1
    assert len(set(second_run)) == len(second_run) and len(set(server.tile_requests())) == len(tiles)
    assert not list(cache_dir.rglob("*.tmp"))
    with rasterio.open(out) as ds:
        assert np.array_equal(np.moveaxis(ds.read(), 0, -1), expected_pixels(rgba, tuple(ds.bounds))[0])


def test_requests_respect_the_rate_limit(source, tmp_path):
    _, tiles, block = source
    rate_per_s = 20.0
    with TileServer(tiles) as server:
        report = fetch_tiles(block.tiles(), lambda t: tile_url(server.template, t),
                             TileCache(tmp_path / "cache", server.template), FetchConfig(UA, rate_per_s=rate_per_s))
        times = np.array([t for _, _, t in server.log])
    assert report.fetched == len(tiles) == len(times)
    assert times.max() - times.min() >= 0.9 * (len(times) - 1) / rate_per_s
    in_half_a_second = max(np.sum((times >= t) & (times < t + 0.5)) for t in times)
    assert in_half_a_second <= 0.5 * rate_per_s + 2


def test_too_many_tiles_are_refused_without_yes(source, tmp_path):
    _, tiles, _ = source
    with TileServer(tiles) as server:
        args = fetch_args(server, tmp_path / "map.tif")
        args[args.index("--bbox") + 1] = "22.0,60.0,23.0,60.6"
        code, _, stderr = run_gdn(*args)
        assert code == 2 and "--yes" in stderr and "MB" in stderr, stderr
        count = int(re.search(r"(\d+) tiles at zoom 17", stderr).group(1))
        assert count > 2000
        assert server.tile_requests() == []


@pytest.mark.parametrize("bbox, words", [("179.5,10,-179.5,11", "antimeridian"),
                                         ("10,84,11,86", "web-mercator"), ("10,-89,11,-80", "web-mercator")])
def test_bad_areas_are_refused_before_any_request(source, tmp_path, bbox, words):
    with TileServer(source[1]) as server:
        args = fetch_args(server, tmp_path / "map.tif")
        args[args.index("--bbox") + 1] = bbox
        code, _, stderr = run_gdn(*args)
        assert code == 2 and words in stderr, stderr
        assert server.log == []


def test_provision_accepts_the_fetched_map(faulty_fetch, tmp_path):
    from gps_denied_nav.core.corpus_build import ProvisionConfig, provision
    from gps_denied_nav.core.netvlad import NetVLADConfig

    out = faulty_fetch[0]
    config = ProvisionConfig(tile_size_m=150.0, stride_m=75.0, tile_px=128, sift_features_per_tile=300,
                             init_sample_size=1000, device="cpu", model=NetVLADConfig(num_clusters=16),
                             ground_alt_m=20.0, min_valid_fraction=0.5)
    manifest = provision(out, tmp_path / "corpus", config)
    assert manifest.num_tiles >= 4 and manifest.num_features > 0
    assert (tmp_path / "corpus" / "manifest.json").exists()
