"""Where a fetched map came from: ``MAP.tif.source.json`` beside it, and the same facts as GeoTIFF tags.

Imagery and terrain tiles carry licences that ask for attribution, and a corpus is only as good as the map
it was cut from, so the source URL, zoom, area, date, user agent and attribution travel with the file (tags
survive copies of the GeoTIFF alone) and in a sidecar that ``gdn provision`` can copy into its manifest.
"""
from __future__ import annotations

import datetime
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

SIDECAR_SUFFIX = ".source.json"


@dataclass(frozen=True)
class MapSource:
    kind: str  # "imagery" or "dem"
    source: str  # the URL template, or "WMTS <capabilities URL> layer <L>"
    tile_url_example: str  # the first tile's URL, as requested
    zoom: int
    bbox_deg: list[float]  # [west, south, east, north] as asked for
    bounds_epsg3857_m: list[float]  # [left, bottom, right, top] of the written raster
    tile_count: int  # tiles of the block covering the bbox
    tiles_missing: list[list[int]]  # [z, x, y] the server had no tile for (left as nodata)
    fetched_utc: str  # ISO 8601, when the fetch finished
    user_agent: str
    attribution: str
    extra: dict = field(default_factory=dict)  # DEM: encoding, vertical datum

    def tags(self) -> dict[str, str]:
        """GeoTIFF metadata: TIFFTAG_COPYRIGHT is the standard home of an attribution; the rest GDN_*."""
        tags = {"TIFFTAG_COPYRIGHT": self.attribution, "ATTRIBUTION": self.attribution,
                "GDN_SOURCE": self.source, "GDN_ZOOM": str(self.zoom), "GDN_BBOX_DEG": json.dumps(self.bbox_deg),
                "GDN_FETCHED_UTC": self.fetched_utc, "GDN_USER_AGENT": self.user_agent,
                "GDN_TILE_COUNT": str(self.tile_count), "GDN_TILES_MISSING": str(len(self.tiles_missing))}
        tags.update({k.upper(): str(v) for k, v in self.extra.items()})
        return tags


def utc_now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def sidecar_path(map_path) -> Path:
    return Path(str(map_path) + SIDECAR_SUFFIX)


def write_sidecar(map_path, source: MapSource) -> Path:
    path = sidecar_path(map_path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(source), indent=1) + "\n")
    os.replace(tmp, path)
    return path


def read_sidecar(map_path) -> dict | None:
    """The sidecar of ``map_path`` as a dict (for a corpus manifest), None when the map has none."""
    path = sidecar_path(map_path)
    return json.loads(path.read_text()) if path.is_file() else None
