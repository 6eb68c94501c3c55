"""Splitting a large map into mission-area corpora, each with its own ENU origin.

One corpus per country is neither loadable on board nor geometrically sound: the corpus frame is a local
tangent plane, and ENU distances drift from the ground ones away from its origin (curvature: ~3 cm at 20 km,
metres at 200 km, and the map's north-up grid rotates against true north by the meridian convergence). A
map wider than ``area_size_m`` is therefore cut into a grid of areas of at most that size, overlapping by
``overlap_m`` so that a tile on a seam is whole in one of them; each is read from the GeoTIFF window it
needs (memory bounded by one area, not the map), put on a tangent plane at its own centre, provisioned
(`corpus_build.provision`, or on Ray) into ``OUT/area_<i>_<j>/`` and listed in ``OUT/areas.json`` with its
bounds, so mission planning picks the area (or, with `corpus_add`, the neighbours) a flight needs.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pyproj
import rasterio
from rasterio.io import MemoryFile
from rasterio.transform import Affine
from rasterio.windows import Window

from .corpus_build import ProgressCallback, ProvisionConfig, provision
from .geodesy import LocalTangentPlane
from .map_raster import MapRaster, load_geotiff
from ..maps.record import read_sidecar

AREAS_FILE = "areas.json"


@dataclasses.dataclass(frozen=True)
class Area:
    name: str  # "area_<i>_<j>": i counts rows north to south, j columns west to east
    frame: LocalTangentPlane  # at the area's centre
    box_enu_m: tuple[float, float, float, float]  # east_min, north_min, east_max, north_max in its own frame
    corners_deg: list  # [[lat, lon] x 4]: NW, NE, SE, SW


def plan_areas(map_path, area_size_m: float, overlap_m: float) -> list[Area]:
    """The areas covering the GeoTIFF: a grid of equal areas no wider than ``area_size_m``."""
    if not 0.0 <= overlap_m < area_size_m:
        raise ValueError(f"overlap {overlap_m} m must be >= 0 and below the area size {area_size_m} m")
    with rasterio.open(map_path) as ds:
        if ds.crs is None or ds.transform.is_identity:
            raise ValueError(f"{map_path}: splitting needs a geotransform and a CRS")
        s = np.linspace(0.0, 1.0, 33)
        cols = np.concatenate([s * ds.width, np.full_like(s, ds.width), s * ds.width, np.zeros_like(s)])
        rows = np.concatenate([np.zeros_like(s), s * ds.height, np.full_like(s, ds.height), s * ds.height])
        x, y = ds.transform @ (cols, rows)
        lon, lat = pyproj.Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform(x, y)
        lon_c, lat_c = pyproj.Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform(
            *(ds.transform @ (0.5 * ds.width, 0.5 * ds.height)))
    centre = LocalTangentPlane(float(lat_c), float(lon_c), 0.0)
    enu = centre.to_enu(np.asarray(lat), np.asarray(lon), 0.0)
    east_min, east_max, north_min, north_max = enu[:, 0].min(), enu[:, 0].max(), enu[:, 1].min(), enu[:, 1].max()
    core_m = area_size_m - overlap_m  # what each area adds beyond its neighbour
    n_east = max(1, math.ceil((east_max - east_min - overlap_m) / core_m - 1e-9))
    n_north = max(1, math.ceil((north_max - north_min - overlap_m) / core_m - 1e-9))
    step_e = (east_max - east_min - overlap_m) / n_east
    step_n = (north_max - north_min - overlap_m) / n_north
    areas = []
    for i in range(n_north):
        for j in range(n_east):
            e0, n1 = east_min + j * step_e, north_max - i * step_n
            e1, n0 = e0 + step_e + overlap_m, n1 - step_n - overlap_m
            lat0, lon0, _ = centre.to_geodetic(np.array([0.5 * (e0 + e1), 0.5 * (n0 + n1), 0.0]))
            frame = LocalTangentPlane(float(lat0), float(lon0), 0.0)
            half_e, half_n = float(0.5 * (e1 - e0)), float(0.5 * (n1 - n0))
            corners = np.array([[e0, n1, 0.0], [e1, n1, 0.0], [e1, n0, 0.0], [e0, n0, 0.0]])
            lat_k, lon_k, _ = centre.to_geodetic(corners)
            areas.append(Area(f"area_{i}_{j}", frame, (-half_e, -half_n, half_e, half_n),
                              [[float(a), float(b)] for a, b in zip(lat_k, lon_k)]))
    return areas


def load_area(map_path, area: Area, gsd_m: float | None = None, margin_m: float = 100.0) -> MapRaster:
    """The area's part of the GeoTIFF on the area's own ENU grid, reading only the source window it needs."""
    e0, n0, e1, n1 = area.box_enu_m
    s = np.linspace(0.0, 1.0, 17)
    east = np.concatenate([e0 - margin_m + s * (e1 - e0 + 2 * margin_m), np.full_like(s, e1 + margin_m),
                           e0 - margin_m + s * (e1 - e0 + 2 * margin_m), np.full_like(s, e0 - margin_m)])
    north = np.concatenate([np.full_like(s, n1 + margin_m), n0 - margin_m + s * (n1 - n0 + 2 * margin_m),
                            np.full_like(s, n0 - margin_m), n0 - margin_m + s * (n1 - n0 + 2 * margin_m)])
    lat, lon, _ = area.frame.to_geodetic(np.stack([east, north, np.zeros_like(east)], axis=1))
    with rasterio.open(map_path) as ds:
        x, y = pyproj.Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True).transform(lon, lat)
        cols, rows = ~ds.transform @ (np.asarray(x), np.asarray(y))
        c0, r0 = max(int(math.floor(np.min(cols))), 0), max(int(math.floor(np.min(rows))), 0)
        c1, r1 = min(int(math.ceil(np.max(cols))), ds.width), min(int(math.ceil(np.max(rows))), ds.height)
        if c1 <= c0 or r1 <= r0:
            raise ValueError(f"{area.name} lies outside {map_path}")
        window = Window(c0, r0, c1 - c0, r1 - r0)
        profile = dict(ds.profile, driver="GTiff", width=window.width, height=window.height,
                       transform=ds.transform @ Affine.translation(c0, r0), tiled=False, compress=None)
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        data, mask = ds.read(window=window), ds.dataset_mask(window=window)
        colormap = ds.colormap(1) if ds.count < 3 and ds.colorinterp and ds.colorinterp[0].name == "palette" else None
        # The window as a GeoTIFF in memory, so the one map loader (with its exact geodesy) reads it.
        with MemoryFile() as memory:
            with memory.open(**profile) as window_ds:
                window_ds.write(data)
                window_ds.write_mask(mask)
                if colormap:
                    window_ds.write_colormap(1, colormap)
            raster = load_geotiff(memory.name, gsd_m=gsd_m, frame=area.frame)
    return dataclasses.replace(raster.crop_enu(*area.box_enu_m), source=f"{map_path}#{area.name}")


def provision_areas(map_path, out_dir, config: ProvisionConfig = ProvisionConfig(), area_size_m: float = 20000.0,
                    overlap_m: float | None = None, provision_fn=provision,
                    progress: ProgressCallback | None = None) -> dict:
    """One corpus per area in ``out_dir/area_<i>_<j>/`` and ``out_dir/areas.json``; returns that index.

    overlap_m: None = one tile and one stride (a tile on a seam is whole in one area); provision_fn: what
    provisions one area raster (``corpus_build.provision``, or `provision_ray.provision_ray` bound to a cluster).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / AREAS_FILE).unlink(missing_ok=True)  # written last, like a corpus manifest
    overlap_m = config.tile_size_m + config.stride_m if overlap_m is None else overlap_m
    records = []
    for area in plan_areas(map_path, area_size_m, overlap_m):
        raster = load_area(map_path, area, config.map_gsd_m)
        record = {"name": area.name, "origin_lat_deg": area.frame.origin_lat_deg,
                  "origin_lon_deg": area.frame.origin_lon_deg, "box_enu_m": list(area.box_enu_m),
                  "corners_lat_lon_deg": area.corners_deg}
        if raster.valid.mean() == 0.0:
            records.append({**record, "skipped": "no map data in the area"})
            continue
        stage = (lambda name: (lambda s, done, total: progress(f"{name} {s}", done, total)))(area.name) if progress \
            else None
        try:
            result = provision_fn(raster, out_dir / area.name, config, progress=stage)
        except ValueError as exc:  # e.g. no tile with enough valid data: the area has nothing to offer
            records.append({**record, "skipped": str(exc)})
            continue
        manifest = getattr(result, "manifest", result)
        records.append({**record, "dir": area.name, "num_tiles": manifest.num_tiles, "model_id": manifest.model_id})
    index = {"source": str(map_path), "map_source": read_sidecar(map_path), "area_size_m": area_size_m,
             "overlap_m": overlap_m, "areas": records}
    (out_dir / AREAS_FILE).write_text(json.dumps(index, indent=1))
    return index
