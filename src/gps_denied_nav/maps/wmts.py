"""WMTS as a tile source: read a GetCapabilities document, find the layer's web-mercator tile matrix set,
and give the URL of an XYZ tile (RESTful ResourceURL template, else KVP GetTile).

Only GoogleMapsCompatible-like sets are taken (EPSG:3857, top-left at (-pi*R, pi*R), scale denominator
559082264.03 / 2^z, 2^z tiles a side): their TileMatrix k is XYZ zoom z with the same rows and columns, so
the rest of the pipeline (cache, mosaic, exact geotransform) is the XYZ one. A few dozen lines of
ElementTree rather than OWSLib, which would add requests, lxml and python-dateutil for this one read.
"""
from __future__ import annotations

import math
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from gps_denied_nav.maps.xyz import WORLD_HALF_M

NS = {"wmts": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1",
      "xlink": "http://www.w3.org/1999/xlink"}
SCALE_DENOMINATOR_Z0 = 559082264.0287178  # GoogleMapsCompatible zoom 0: 156543.03 m/px at 0.28 mm a pixel
PREFERRED_FORMATS = ("image/png", "image/jpeg", "image/webp")


@dataclass(frozen=True)
class WmtsLayer:
    layer: str
    style: str
    image_format: str
    matrix_set: str
    matrix_for_zoom: dict  # XYZ zoom -> TileMatrix identifier
    resource_template: str | None  # RESTful ResourceURL template, when the server offers one
    get_tile_url: str | None  # KVP GetTile endpoint, when it offers that
    dimensions: dict  # {Dimension identifier: default value}, substituted into the template

    def url_for(self, zoom: int):
        """tile -> URL for tiles at ``zoom``; ValueError when the set has no matrix for that zoom."""
        if zoom not in self.matrix_for_zoom:
            raise ValueError(f"WMTS layer {self.layer}: tile matrix set {self.matrix_set} has no matrix for "
                             f"zoom {zoom} (has {sorted(self.matrix_for_zoom)})")
        matrix = self.matrix_for_zoom[zoom]
        if self.resource_template:
            fields = {"TileMatrixSet": self.matrix_set, "TileMatrix": matrix, "Style": self.style, **self.dimensions}

            def rest(tile) -> str:
                url = self.resource_template
                for key, value in {**fields, "TileRow": tile.y, "TileCol": tile.x}.items():
                    url = url.replace("{" + key + "}", str(value))
                return url
            return rest
        base = self.get_tile_url.rstrip("?&")
        joiner = "&" if "?" in base else "?"

        def kvp(tile) -> str:
            query = {"SERVICE": "WMTS", "REQUEST": "GetTile", "VERSION": "1.0.0", "LAYER": self.layer,
                     "STYLE": self.style, "FORMAT": self.image_format, "TILEMATRIXSET": self.matrix_set,
                     "TILEMATRIX": matrix, "TILEROW": tile.y, "TILECOL": tile.x}
            return base + joiner + urllib.parse.urlencode(query)
        return kvp


def read_capabilities(url: str, user_agent: str, timeout_s: float = 30.0) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": user_agent})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.read()
    except OSError as exc:  # URLError/HTTPError/timeouts all derive from it
        raise RuntimeError(f"{url}: cannot read the WMTS capabilities ({exc})") from exc


def _is_web_mercator(matrix_set) -> dict:
    """{zoom: TileMatrix id} of a GoogleMapsCompatible-like set, {} for any other."""
    crs = (matrix_set.findtext("ows:SupportedCRS", "", NS) or "").replace("::", ":")
    if not any(code in crs for code in ("3857", "900913")):
        return {}
    zooms = {}
    for matrix in matrix_set.findall("wmts:TileMatrix", NS):
        scale = float(matrix.findtext("wmts:ScaleDenominator", "nan", NS))
        zoom = round(math.log2(SCALE_DENOMINATOR_Z0 / scale)) if scale > 0 else -1
        x, y = (float(v) for v in matrix.findtext("wmts:TopLeftCorner", "nan nan", NS).split()[:2])
        width = int(matrix.findtext("wmts:MatrixWidth", "0", NS))
        if (zoom >= 0 and abs(scale * 2 ** zoom / SCALE_DENOMINATOR_Z0 - 1.0) < 1e-6 and width == 2 ** zoom
                and abs(x + WORLD_HALF_M) < 1.0 and abs(y - WORLD_HALF_M) < 1.0):
            zooms[zoom] = matrix.findtext("ows:Identifier", "", NS)
    return zooms


def parse_capabilities(xml_bytes: bytes, layer: str) -> WmtsLayer:
    """The layer's web-mercator access; ValueError naming what the document offers instead."""
    root = ET.fromstring(xml_bytes)
    contents = root.find("wmts:Contents", NS)
    layers = {el.findtext("ows:Identifier", "", NS): el for el in (contents.findall("wmts:Layer", NS) if contents is not None else [])}
    if layer not in layers:
        raise ValueError(f"WMTS has no layer {layer!r}; layers: {sorted(layers)}")
    el = layers[layer]
    styles = el.findall("wmts:Style", NS)
    default = next((s for s in styles if s.get("isDefault") == "true"), styles[0] if styles else None)
    style = default.findtext("ows:Identifier", "default", NS) if default is not None else "default"
    formats = [f.text for f in el.findall("wmts:Format", NS)]
    image_format = next((f for f in PREFERRED_FORMATS if f in formats), formats[0] if formats else "image/png")
    sets = {s.findtext("ows:Identifier", "", NS): s for s in contents.findall("wmts:TileMatrixSet", NS)}
    linked = [link.findtext("wmts:TileMatrixSet", "", NS) for link in el.findall("wmts:TileMatrixSetLink", NS)]
    matrix_set, zooms = next(((name, z) for name in linked if name in sets and (z := _is_web_mercator(sets[name]))),
                             (None, {}))
    if matrix_set is None:
        raise ValueError(f"WMTS layer {layer!r} offers no web-mercator (GoogleMapsCompatible) tile matrix set; "
                         f"its sets: {linked}")
    template = next((r.get("template") for r in el.findall("wmts:ResourceURL", NS)
                     if r.get("resourceType") == "tile" and r.get("format") == image_format), None)
    get_tile = None
    for op in root.findall("ows:OperationsMetadata/ows:Operation", NS):
        if op.get("name") == "GetTile":
            get_tile = next((g.get(f"{{{NS['xlink']}}}href") for g in op.findall("ows:DCP/ows:HTTP/ows:Get", NS)), None)
    if template is None and get_tile is None:
        raise ValueError(f"WMTS layer {layer!r}: neither a tile ResourceURL nor a GetTile endpoint")
    dimensions = {d.findtext("ows:Identifier", "", NS): d.findtext("wmts:Default", "", NS)
                  for d in el.findall("wmts:Dimension", NS)}
    return WmtsLayer(layer, style, image_format, matrix_set, zooms, template, get_tile, dimensions)
