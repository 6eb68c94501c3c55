"""Web-mercator XYZ tiles of an area: the bounding box and its checks, the block of tiles covering it, a
tile's URL from the user's template, and the block's exact EPSG:3857 pixel grid.

A fetched map must land on the ground exactly where the tiles say, so the GeoTIFF's geotransform is the
tile grid's own (origin ±pi*6378137 m, 2^z tiles a side), never one refitted from corner coordinates. The
tile count is computed from the two corner tiles, not by listing them, so a zoom that would mean billions
of tiles is refused at once rather than enumerated.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import mercantile
from rasterio.transform import Affine

WORLD_HALF_M = math.pi * 6378137.0  # EPSG:3857's x (and y) at the antimeridian (20037508.34 m)
MAX_LAT_DEG = 85.0511287798066  # web mercator's square world ends here: no tile reaches a higher latitude
MAX_ZOOM = 24
XYZ_FIELDS = ("z", "x", "y", "-y", "s")  # {-y}: TMS row order (y counted from the south); {s}: subdomain


@dataclass(frozen=True)
class BBox:
    """An area in WGS84 degrees, west < east (no antimeridian crossing), inside web-mercator latitudes."""

    west_deg: float
    south_deg: float
    east_deg: float
    north_deg: float

    def as_list(self) -> list[float]:
        return [self.west_deg, self.south_deg, self.east_deg, self.north_deg]


def check_bbox(bbox: BBox) -> BBox:
    """ValueError, with the numbers, for a box that web-mercator tiles cannot cover as one raster."""
    w, s, e, n = bbox.as_list()
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        raise ValueError(f"bbox {bbox.as_list()}: not finite numbers")
    if not (-180.0 <= w <= 180.0 and -180.0 <= e <= 180.0):
        raise ValueError(f"bbox longitudes {w}, {e}: outside -180..180 degrees")
    if w > e:
        # One GeoTIFF on the 3857 grid cannot wrap around; two maps (one per side) are what provision takes.
        raise ValueError(f"bbox west {w} > east {e}: it crosses the antimeridian; fetch the two sides as two "
                         f"maps: --bbox {w},{s},180,{n} and --bbox -180,{s},{e},{n}")
    if s >= n or w == e:
        raise ValueError(f"bbox {bbox.as_list()}: empty (want W,S,E,N with W < E and S < N)")
    if s < -MAX_LAT_DEG or n > MAX_LAT_DEG:
        raise ValueError(f"bbox latitudes {s}..{n}: outside web-mercator's -{MAX_LAT_DEG:.4f}..{MAX_LAT_DEG:.4f} "
                         "degrees (no XYZ tile covers the poles)")
    return bbox


def parse_bbox(text: str) -> BBox:
    """``"W,S,E,N"`` in degrees -> checked BBox."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4:
        raise ValueError(f"--bbox {text!r}: want four numbers W,S,E,N in degrees")
    return check_bbox(BBox(*values))


def bbox_from_geojson(path) -> BBox:
    """Bounds of every coordinate in a GeoJSON file (its ``bbox`` member when it has one), checked."""
    data = json.loads(Path(path).read_text())
    if isinstance(data.get("bbox"), list) and len(data["bbox"]) in (4, 6):
        b = data["bbox"]
        w, s, e, n = (b[0], b[1], b[2], b[3]) if len(b) == 4 else (b[0], b[1], b[3], b[4])
        return check_bbox(BBox(float(w), float(s), float(e), float(n)))
    lons, lats = [], []

    def walk(node) -> None:
        if isinstance(node, dict):
            for key in ("features", "geometry", "geometries", "coordinates"):
                if key in node:
                    walk(node[key])
        elif isinstance(node, list):
            if len(node) >= 2 and all(isinstance(v, (int, float)) for v in node[:2]):
                lons.append(float(node[0]))
                lats.append(float(node[1]))
            else:
                for child in node:
                    walk(child)

    walk(data)
    if not lons:
        raise ValueError(f"{path}: no coordinates in this GeoJSON")
    return check_bbox(BBox(min(lons), min(lats), max(lons), max(lats)))


@dataclass(frozen=True)
class TileBlock:
    """The tiles x_min..x_max, y_min..y_max (inclusive, XYZ rows counted from the north) at ``zoom``."""

    zoom: int
    x_min: int
    y_min: int
    x_max: int
    y_max: int

    @property
    def count(self) -> int:
        return (self.x_max - self.x_min + 1) * (self.y_max - self.y_min + 1)

    def tiles(self) -> list[mercantile.Tile]:
        """Row by row from the north-west: the order the mosaic is written in."""
        return [mercantile.Tile(x, y, self.zoom) for y in range(self.y_min, self.y_max + 1)
                for x in range(self.x_min, self.x_max + 1)]

    def pixel_size_m(self, tile_px: int) -> float:
        """EPSG:3857 metres per pixel (equal to ground metres only at the equator)."""
        return 2.0 * WORLD_HALF_M / (tile_px * 2 ** self.zoom)

    def transform(self, tile_px: int) -> Affine:
        """EPSG:3857 geotransform of the whole block's pixel grid (north-west corner of tile x_min, y_min)."""
        res_m = self.pixel_size_m(tile_px)
        return Affine(res_m, 0.0, -WORLD_HALF_M + self.x_min * tile_px * res_m,
                      0.0, -res_m, WORLD_HALF_M - self.y_min * tile_px * res_m)

    def crop_window(self, bbox: BBox, tile_px: int) -> tuple[int, int, int, int]:
        """(col_off, row_off, width, height) in block pixels: the whole pixels the bbox touches."""
        to_px = ~self.transform(tile_px)
        (x_w, y_n), (x_e, y_s) = mercantile.xy(bbox.west_deg, bbox.north_deg), mercantile.xy(bbox.east_deg, bbox.south_deg)
        col0, row0 = to_px @ (x_w, y_n)
        col1, row1 = to_px @ (x_e, y_s)
        # A hair of tolerance: a bbox edge on a pixel edge must not pull in the neighbouring pixel.
        c0, r0 = max(0, math.floor(col0 + 1e-6)), max(0, math.floor(row0 + 1e-6))
        c1 = min((self.x_max - self.x_min + 1) * tile_px, math.ceil(col1 - 1e-6))
        r1 = min((self.y_max - self.y_min + 1) * tile_px, math.ceil(row1 - 1e-6))
        return c0, r0, max(1, c1 - c0), max(1, r1 - r0)


def tile_block(bbox: BBox, zoom: int) -> TileBlock:
    """The block of tiles at ``zoom`` that covers ``bbox`` (a bbox edge on a tile edge adds no tile)."""
    if not 0 <= zoom <= MAX_ZOOM:
        raise ValueError(f"--zoom {zoom}: want 0..{MAX_ZOOM}")
    north_west = mercantile.tile(bbox.west_deg, bbox.north_deg, zoom)
    south_east = mercantile.tile(bbox.east_deg - mercantile.LL_EPSILON, bbox.south_deg + mercantile.LL_EPSILON, zoom)
    return TileBlock(zoom, north_west.x, north_west.y, south_east.x, south_east.y)


def check_template(template: str) -> str:
    """ValueError unless ``template`` is an http(s) URL with {z}, {x} and {y} or {-y}, and nothing unknown."""
    if not re.match(r"^https?://", template):
        raise ValueError(f"--source {template!r}: want an http:// or https:// URL template")
    fields = re.findall(r"\{([^{}]*)\}", template)
    unknown = sorted(set(fields) - set(XYZ_FIELDS))
    if unknown:
        raise ValueError(f"--source {template!r}: unknown placeholder(s) {unknown}; known: "
                         + ", ".join("{" + f + "}" for f in XYZ_FIELDS))
    if "z" not in fields or "x" not in fields or not ({"y", "-y"} & set(fields)):
        raise ValueError(f"--source {template!r}: needs {{z}}, {{x}} and {{y}} (or {{-y}} for TMS rows)")
    return template


def tile_url(template: str, tile: mercantile.Tile, subdomains: str = "abc") -> str:
    """The URL of ``tile``; {s} cycles through ``subdomains`` with x + y, so a tile always maps to one host
    (and one cache entry upstream)."""
    subdomain = subdomains[(tile.x + tile.y) % len(subdomains)] if subdomains else ""
    return (template.replace("{z}", str(tile.z)).replace("{x}", str(tile.x))
            .replace("{-y}", str(2 ** tile.z - 1 - tile.y)).replace("{y}", str(tile.y)).replace("{s}", subdomain))
