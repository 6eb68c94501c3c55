"""WMTS sources: the layer's web-mercator tile matrix set is found among others, tiles are asked for with
its own matrix identifiers (KVP or RESTful), and a WMTS fetch gives the same map as the XYZ one."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio

from gdn_maps import run_gdn, textured_rgba
from tile_server import TileServer, png_tiles

from gps_denied_nav.maps.wmts import SCALE_DENOMINATOR_Z0, parse_capabilities
from gps_denied_nav.maps.xyz import WORLD_HALF_M, BBox, tile_block

ZOOM = 17
BBOX = (22.4603, 60.4004, 22.4640, 60.4020)


def capabilities(base: str, rest: bool = False) -> str:
    """A GetCapabilities document: layer "ortho" linked to a national grid first, then to "WebMercatorQuad"
    (identifiers z0..z19); KVP GetTile at BASE/wmts, or a RESTful template."""
    matrices = "".join(
        f"<TileMatrix><ows:Identifier>z{z}</ows:Identifier><ScaleDenominator>{SCALE_DENOMINATOR_Z0 / 2 ** z!r}"
        f"</ScaleDenominator><TopLeftCorner>{-WORLD_HALF_M!r} {WORLD_HALF_M!r}</TopLeftCorner><TileWidth>256"
        f"</TileWidth><TileHeight>256</TileHeight><MatrixWidth>{2 ** z}</MatrixWidth><MatrixHeight>{2 ** z}"
        "</MatrixHeight></TileMatrix>" for z in range(20))
    resource = (f'<ResourceURL format="image/png" resourceType="tile" template="{base}/rest/ortho/{{Style}}/'
                '{TileMatrixSet}/{TileMatrix}/{TileRow}/{TileCol}.png"/>' if rest else "")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Capabilities xmlns="http://www.opengis.net/wmts/1.0" xmlns:ows="http://www.opengis.net/ows/1.1"
    xmlns:xlink="http://www.w3.org/1999/xlink" version="1.0.0">
  <ows:OperationsMetadata><ows:Operation name="GetTile"><ows:DCP><ows:HTTP>
    <ows:Get xlink:href="{base}/wmts?"/></ows:HTTP></ows:DCP></ows:Operation></ows:OperationsMetadata>
  <Contents>
    <Layer><ows:Identifier>ortho</ows:Identifier>
      <Style isDefault="true"><ows:Identifier>default</ows:Identifier></Style>
      <Format>image/jpeg</Format><Format>image/png</Format>
      <TileMatrixSetLink><TileMatrixSet>ETRS-TM35FIN</TileMatrixSet></TileMatrixSetLink>
      <TileMatrixSetLink><TileMatrixSet>WebMercatorQuad</TileMatrixSet></TileMatrixSetLink>
      {resource}
    </Layer>
    <TileMatrixSet><ows:Identifier>ETRS-TM35FIN</ows:Identifier>
      <ows:SupportedCRS>urn:ogc:def:crs:EPSG::3067</ows:SupportedCRS>
      <TileMatrix><ows:Identifier>0</ows:Identifier><ScaleDenominator>29257142.85</ScaleDenominator>
      <TopLeftCorner>-548576 8388608</TopLeftCorner><TileWidth>256</TileWidth><TileHeight>256</TileHeight>
      <MatrixWidth>1</MatrixWidth><MatrixHeight>1</MatrixHeight></TileMatrix></TileMatrixSet>
    <TileMatrixSet><ows:Identifier>WebMercatorQuad</ows:Identifier>
      <ows:SupportedCRS>urn:ogc:def:crs:EPSG::3857</ows:SupportedCRS>{matrices}</TileMatrixSet>
  </Contents>
</Capabilities>"""


def test_the_web_mercator_set_is_chosen_and_rest_urls_use_its_identifiers():
    layer = parse_capabilities(capabilities("http://h", rest=True).encode(), "ortho")
    assert layer.matrix_set == "WebMercatorQuad" and layer.image_format == "image/png"
    assert layer.matrix_for_zoom[17] == "z17" and len(layer.matrix_for_zoom) == 20
    import mercantile

    url = layer.url_for(17)(mercantile.Tile(73713, 37767, 17))
    assert url == "http://h/rest/ortho/default/WebMercatorQuad/z17/37767/73713.png"
    with pytest.raises(ValueError, match="layers"):
        parse_capabilities(capabilities("http://h").encode(), "satellite")
    with pytest.raises(ValueError, match="zoom 21"):
        layer.url_for(21)


def test_a_layer_without_a_web_mercator_set_is_refused():
    xml = capabilities("http://h").replace(
        "<TileMatrixSetLink><TileMatrixSet>WebMercatorQuad</TileMatrixSet></TileMatrixSetLink>", "")
    with pytest.raises(ValueError, match="no web-mercator"):
        parse_capabilities(xml.encode(), "ortho")


def test_a_kvp_wmts_fetch_equals_the_xyz_fetch(tmp_path):
    block = tile_block(BBox(*BBOX), ZOOM)
    rgba = textured_rgba((block.y_max - block.y_min + 1) * 256, (block.x_max - block.x_min + 1) * 256, seed=5)
    tiles = png_tiles(rgba, ZOOM, block.x_min, block.y_min)
    common = ["--bbox", ",".join(map(str, BBOX)), "--zoom", str(ZOOM), "--user-agent", "gdn-tests",
              "--rate-per-s", "200"]
    with TileServer(tiles) as server:
        server.capabilities = capabilities(server.base)
        code, _, stderr = run_gdn("fetch-map", "--wmts", server.base + "/wmts/caps.xml", "--layer", "ortho",
                                  "--out", str(tmp_path / "wmts.tif"), *common)
        assert code == 0, stderr
        wmts_requests = server.tile_requests()
        code, _, stderr = run_gdn("fetch-map", "--source", server.template, "--out", str(tmp_path / "xyz.tif"), *common)
        assert code == 0, stderr
    assert all("REQUEST=GetTile" in path and "TILEMATRIX=z17" in path and "LAYER=ortho" in path
               for path in wmts_requests) and len(wmts_requests) == len(tiles)
    with rasterio.open(tmp_path / "wmts.tif") as a, rasterio.open(tmp_path / "xyz.tif") as b:
        assert a.bounds == b.bounds and a.crs == b.crs
        assert np.array_equal(a.read(), b.read())
        assert "WMTS" in a.tags()["GDN_SOURCE"]
