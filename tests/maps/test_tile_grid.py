"""Tile maths and inputs without a server: areas, the tile block and its exact grid, URL templates, the
rate limiter, the cache's guard against mixing sources."""
from __future__ import annotations

import json
import time

import mercantile
import pytest

from gps_denied_nav.maps.fetch import TileCache, TokenBucket, _retry_after_s
from gps_denied_nav.maps.xyz import (BBox, bbox_from_geojson, check_template, parse_bbox, tile_block, tile_url)


def test_bbox_parsing_and_its_refusals():
    assert parse_bbox("22.46, 60.40,22.47,60.41") == BBox(22.46, 60.40, 22.47, 60.41)
    for text, words in [("1,2,3", "four numbers"), ("a,b,c,d", "four numbers"), ("170,0,-170,1", "antimeridian"),
                        ("0,-86,1,0", "web-mercator"), ("0,10,1,90", "web-mercator"), ("0,1,1,1", "empty"),
                        ("-190,0,1,1", "-180..180")]:
        with pytest.raises(ValueError, match=words):
            parse_bbox(text)


def test_geojson_area_is_the_bounds_of_its_geometries(tmp_path):
    polygon = {"type": "Polygon", "coordinates": [[[22.46, 60.40], [22.48, 60.40], [22.47, 60.42], [22.46, 60.40]]]}
    collection = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": polygon},
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [22.45, 60.41, 12.0]}}]}
    path = tmp_path / "area.geojson"
    path.write_text(json.dumps(collection))
    assert bbox_from_geojson(path) == BBox(22.45, 60.40, 22.48, 60.42)
    path.write_text(json.dumps({**collection, "bbox": [179.0, -17.0, -179.0, -16.0]}))
    with pytest.raises(ValueError, match="antimeridian"):
        bbox_from_geojson(path)


def test_the_block_grid_is_the_tiles_own():
    bbox = BBox(22.4603, 60.4004, 22.4668, 60.4033)
    block = tile_block(bbox, 17)
    assert block.tiles() == sorted(mercantile.tiles(*bbox.as_list(), 17), key=lambda t: (t.y, t.x))
    transform = block.transform(256)
    north_west = mercantile.xy_bounds(mercantile.Tile(block.x_min, block.y_min, 17))
    south_east = mercantile.xy_bounds(mercantile.Tile(block.x_max, block.y_max, 17))
    assert transform.c == pytest.approx(north_west.left, abs=1e-6)
    assert transform.f == pytest.approx(north_west.top, abs=1e-6)
    cols, rows = (block.x_max - block.x_min + 1) * 256, (block.y_max - block.y_min + 1) * 256
    assert transform @ (cols, rows) == pytest.approx((south_east.right, south_east.bottom), abs=1e-6)


def test_a_bbox_on_tile_edges_takes_exactly_those_tiles():
    tile = mercantile.Tile(73713, 37767, 17)
    edges = mercantile.bounds(tile)
    bbox = BBox(edges.west, edges.south, edges.east, edges.north)
    block = tile_block(bbox, 17)
    assert block.count == 1 and (block.x_min, block.y_min) == (tile.x, tile.y)
    assert block.crop_window(bbox, 256) == (0, 0, 256, 256)


def test_a_huge_request_is_counted_without_listing_it():
    t0 = time.monotonic()
    block = tile_block(BBox(-170.0, -80.0, 170.0, 80.0), 24)
    assert block.count > 10 ** 13 and time.monotonic() - t0 < 1.0
    with pytest.raises(ValueError, match="zoom"):
        tile_block(BBox(0, 0, 1, 1), 31)


def test_url_templates():
    tile = mercantile.Tile(5, 3, 4)
    assert tile_url("https://{s}.t.org/{z}/{x}/{y}.png", tile, "abc") == "https://c.t.org/4/5/3.png"
    assert tile_url("https://t.org/tms/{z}/{x}/{-y}.png", tile) == "https://t.org/tms/4/5/12.png"
    for template, words in [("t.org/{z}/{x}/{y}", "http"), ("https://t.org/{z}/{x}/{y}{r}.png", "unknown"),
                            ("https://t.org/{z}/{x}.png", "needs")]:
        with pytest.raises(ValueError, match=words):
            check_template(template)


def test_the_token_bucket_spaces_requests():
    bucket = TokenBucket(50.0)
    t0 = time.monotonic()
    for _ in range(11):
        bucket.take()
    assert time.monotonic() - t0 >= 10 / 50.0 * 0.95


def test_retry_after_seconds_or_http_date():
    assert _retry_after_s({"Retry-After": "7"}) == 7.0
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25.0 < _retry_after_s({"Retry-After": future}) <= 30.0
    assert _retry_after_s({}) is None and _retry_after_s({"Retry-After": "soon"}) is None


def test_a_cache_refuses_tiles_of_another_source(tmp_path):
    TileCache(tmp_path, "https://a.org/{z}/{x}/{y}.png")
    TileCache(tmp_path, "https://a.org/{z}/{x}/{y}.png")
    with pytest.raises(ValueError, match="another --cache"):
        TileCache(tmp_path, "https://b.org/{z}/{x}/{y}.png")
