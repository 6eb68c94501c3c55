"""Provisioning: cut a georeferenced map into a retrieval corpus (the layout `core.corpus` reads).

Steps: load the map onto an ENU grid, cut square north-up tiles on a regular grid (skipping tiles that
are mostly nodata), adapt the untrained NetVLAD head to this map (PCA of backbone features for the
reduction conv, k-means for the centroids; a trained VGG16-NetVLAD is used as it is), describe every
tile with the same `DescriptorExtractor` the query side uses, build its FAISS index (flat, or IVF-Flat for
a large corpus: `core.tile_index`),
detect SIFT once per grid cell of `stride_m` (with a context margin, keeping only keypoints inside the
cell, so tiles share cells and no keypoint is stored twice), write a map preview, and finally a manifest
with checksums of every file (`core.corpus_write`, shared with the Ray cluster's `core.provision_ray`).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .corpus import Manifest
from .corpus_write import write_corpus
from .descriptor import DescriptorExtractor
from .local_features import detect_features
from .map_raster import MapRaster, load_geotiff
from .netvlad import NetVLADConfig, NetVLADModel, build_model, initialize_from_local_features, save_checkpoint
from .rectify import FILL_VALUE
from .terrain import TerrainGrid, flat_terrain, terrain_from_dem
from .tile_index import IndexConfig

ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ProvisionConfig:
    tile_size_m: float = 150.0  # side of a square tile; a whole multiple of stride_m
    stride_m: float = 50.0  # tile grid step, also the side of a SIFT storage cell
    tile_px: int = 320  # tile image side given to the descriptor (multiple of 32)
    min_valid_fraction: float = 0.5  # tiles with less valid map than this are skipped
    map_gsd_m: float | None = None  # resample the GeoTIFF on load (None: its native GSD)
    sift_features_per_tile: int = 2000  # SIFT budget for a tile's area, shared by its cells
    sift_margin_px: int = 32  # context around a cell for detection; keypoints are kept inside the cell
    root_sift: bool = True  # descriptor flavour; the matcher's MatchingConfig.root_sift must agree
    init_sample_size: int = 50000  # backbone feature vectors sampled for PCA and k-means
    kmeans_iterations: int = 25  # Lloyd iterations of the centroid k-means
    preview_max_px: int = 2048  # longest side of map.png
    # The terrain, exactly one of: a DEM (any CRS, band 1 in metres), one height for flat ground, or the
    # statement that the ground is at the ellipsoid. Heights are WGS84 ellipsoidal (NavSatFix.altitude).
    dem_path: str | None = None
    ground_alt_m: float | None = None
    assume_sea_level: bool = False
    geoid_offset_m: float = 0.0  # added to the DEM: N = h - H for a DEM in geoid (orthometric) heights
    terrain_step_m: float = 10.0  # spacing of the stored terrain grid (the matcher reads a height per keypoint)
    # Vertical 1-sigma of those heights against the real ground, added to every fix's vertical variance.
    # None: 3 m for a DEM (global 1-arc-second DEMs; a lidar DTM is ~0.2 m: say so), 2 m for one flat height.
    terrain_sigma_m: float | None = None
    # Horizontal 1-sigma of the map's georegistration, added to every fix: a bias all keypoints share, which
    # no number of inliers averages out. None: max(1 m, 4 source pixels); use the map's stated accuracy.
    map_registration_sigma_m: float | None = None
    device: str = "auto"  # inference device for provisioning (see core.descriptor)
    batch_size: int = 8  # images per forward pass
    seed: int = 0  # sampling and k-means seed: the same map and config give the same corpus
    model: NetVLADConfig = field(default_factory=NetVLADConfig)  # architecture of the descriptor
    index: IndexConfig = field(default_factory=IndexConfig)  # flat up to 50k tiles, IVF-Flat above (tile_index)
    # DESCRIPTOR_MODELS[0]: the EfficientNet-Lite0 NetVLAD of ``model``, fitted to this map (adapt_model);
    # "vgg16-netvlad": trained weights used as they are, from ``model_checkpoint`` (gdn convert-netvlad).
    descriptor_model: str = "efficientnet-lite0-netvlad"
    model_checkpoint: str | None = None


def tile_grid(raster: MapRaster, config: ProvisionConfig) -> list[dict]:
    """Tiles of the grid anchored at the map's north-west corner with enough valid data (no images)."""
    cells_per_tile = config.tile_size_m / config.stride_m
    if abs(cells_per_tile - round(cells_per_tile)) > 1e-9 or cells_per_tile < 1:
        raise ValueError("tile_size_m must be a whole multiple of stride_m")
    height_px, width_px = raster.valid.shape
    width_m, height_m = width_px * raster.gsd_m, height_px * raster.gsd_m
    n_cols = int(math.floor((width_m - config.tile_size_m) / config.stride_m + 1e-9)) + 1
    n_rows = int(math.floor((height_m - config.tile_size_m) / config.stride_m + 1e-9)) + 1
    tiles = []
    for row in range(max(n_rows, 0)):
        for col in range(max(n_cols, 0)):
            c0, r0 = round(col * config.stride_m / raster.gsd_m), round(row * config.stride_m / raster.gsd_m)
            c1 = round((col * config.stride_m + config.tile_size_m) / raster.gsd_m)
            r1 = round((row * config.stride_m + config.tile_size_m) / raster.gsd_m)
            valid_fraction = float(raster.valid[r0:r1, c0:c1].mean())
            if valid_fraction < config.min_valid_fraction:
                continue
            east_min = raster.east_min_m + col * config.stride_m
            north_max = raster.north_max_m - row * config.stride_m
            tiles.append({"tile_id": f"r{row:03d}c{col:03d}", "row": row, "col": col, "pixels": (r0, r1, c0, c1),
                          "east_min_m": east_min, "north_min_m": north_max - config.tile_size_m,
                          "east_max_m": east_min + config.tile_size_m, "north_max_m": north_max,
                          "valid_fraction": valid_fraction})
    return tiles


def tile_image(raster: MapRaster, pixels: tuple[int, int, int, int], tile_px: int) -> np.ndarray:
    """Map crop [r0:r1, c0:c1] -> [tile_px x tile_px x 3] uint8, nodata filled like rectified queries."""
    r0, r1, c0, c1 = pixels
    crop = raster.image_rgb[r0:r1, c0:c1].copy()
    crop[~raster.valid[r0:r1, c0:c1]] = FILL_VALUE
    return cv2.resize(crop, (tile_px, tile_px), interpolation=cv2.INTER_AREA)


def detect_cell_features(raster: MapRaster, cell_pixels: tuple[int, int, int, int], max_features: int, margin_px: int,
                         root_sift: bool) -> tuple[np.ndarray, np.ndarray]:
    """SIFT keypoints inside one cell [r0:r1, c0:c1] -> (kp_enu_m [M x 2] float32, desc [M x 128] float32)."""
    r0, r1, c0, c1 = cell_pixels
    height_px, width_px = raster.valid.shape
    pr0, pr1 = max(r0 - margin_px, 0), min(r1 + margin_px, height_px)
    pc0, pc1 = max(c0 - margin_px, 0), min(c1 + margin_px, width_px)
    # Nodata borders make strong false corners: erode the valid mask before detecting.
    valid = cv2.erode(raster.valid[pr0:pr1, pc0:pc1].astype(np.uint8), np.ones((7, 7), np.uint8))
    # OpenCV SIFT keeps its n strongest before the mask/cell filter, so ask in proportion to the area.
    budget = int(math.ceil(max_features * (pr1 - pr0) * (pc1 - pc0) / max((r1 - r0) * (c1 - c0), 1)))
    kp_px, desc = detect_features(raster.image_rgb[pr0:pr1, pc0:pc1], budget, mask=valid, root_sift=root_sift)
    cols, rows = kp_px[:, 0] + pc0, kp_px[:, 1] + pr0
    inside = np.flatnonzero((cols >= c0 - 0.5) & (cols < c1 - 0.5) & (rows >= r0 - 0.5) & (rows < r1 - 0.5))
    inside = inside[:max_features]  # detect_features sorts by response: these are the strongest
    east = raster.east_min_m + (cols[inside] + 0.5) * raster.gsd_m
    north = raster.north_max_m - (rows[inside] + 0.5) * raster.gsd_m
    return np.column_stack([east, north]).astype(np.float32), desc[inside].astype(np.float32)


DESCRIPTOR_MODELS = ("efficientnet-lite0-netvlad", "vgg16-netvlad")


def pretrained_model(config: ProvisionConfig):
    """The converted VGG16-NetVLAD of ``model_checkpoint``, or None for the default that adapt_model fits."""
    if config.descriptor_model not in DESCRIPTOR_MODELS:
        raise ValueError(f"descriptor model must be one of {DESCRIPTOR_MODELS}, got {config.descriptor_model!r}")
    if config.descriptor_model == DESCRIPTOR_MODELS[0]:
        if config.model_checkpoint:
            raise ValueError("a model checkpoint is only read for --model vgg16-netvlad; the default model is "
                             "fitted to the map")
        return None
    if not config.model_checkpoint:
        raise ValueError("--model vgg16-netvlad needs its trained weights: --checkpoint MODEL.pt, converted from "
                         "a pytorch-NetVlad or seed-system checkpoint with 'gdn convert-netvlad CHECKPOINT --out "
                         "MODEL.pt' (no VGG16 weights ship with this package)")
    from .netvlad_vgg16 import load_vgg16_netvlad

    return load_vgg16_netvlad(config.model_checkpoint)


def adapt_model(images: list[np.ndarray], config: ProvisionConfig, rng: np.random.Generator,
                report: ProgressCallback) -> tuple[NetVLADModel, float]:
    """ImageNet backbone + NetVLAD head initialised on backbone features of (a sample of) the tiles.

    images: tile images [tile_px x tile_px x 3] uint8. Returns (model, alpha of the soft assignment).
    """
    model = build_model(config.model)
    backbone = DescriptorExtractor(model, config.device, config.tile_px, config.batch_size)
    locations_per_tile = (config.tile_px // 32) ** 2
    n_init_tiles = min(len(images), max(1, math.ceil(config.init_sample_size / locations_per_tile)))
    init_tiles = np.sort(rng.choice(len(images), n_init_tiles, replace=False))
    local = []
    for start in range(0, n_init_tiles, config.batch_size):
        feats = backbone.local_features([images[i] for i in init_tiles[start:start + config.batch_size]])
        local.append(feats.transpose(0, 2, 3, 1).reshape(-1, feats.shape[1]))  # [B*h*w x 1280]
        report("init", min(start + config.batch_size, n_init_tiles), n_init_tiles)
    local = np.concatenate(local)
    if len(local) > config.init_sample_size:
        local = local[rng.choice(len(local), config.init_sample_size, replace=False)]
    alpha = initialize_from_local_features(model, local, seed=config.seed, kmeans_iterations=config.kmeans_iterations)
    return model, alpha


def terrain_for(raster: MapRaster, config: ProvisionConfig) -> TerrainGrid:
    """The ground heights under ``raster`` on the stride grid, from the one terrain source the config names."""
    given = [config.dem_path is not None, config.ground_alt_m is not None, config.assume_sea_level]
    if sum(given) != 1:
        raise ValueError("provisioning needs the ground height, from exactly one of: --dem DEM.tif (a DEM of "
                         "the area), --ground-alt-m H (flat ground at H m, WGS84 ellipsoidal) or "
                         "--assume-sea-level (the ground is at the ellipsoid: 0 m); "
                         f"got {sum(given)} of them")
    box = (raster.east_min_m, raster.north_max_m, raster.width_m, raster.height_m)
    if config.dem_path is not None:
        from gps_denied_nav.maps.dem import check_vertical_datum

        check_vertical_datum(config.dem_path, config.geoid_offset_m)  # a geoid DEM without its N: refused
        return terrain_from_dem(config.dem_path, raster.frame, *box, config.terrain_step_m, config.geoid_offset_m)
    return flat_terrain(*box, 0.0 if config.assume_sea_level else float(config.ground_alt_m), config.terrain_step_m)


def error_sigmas_m(raster: MapRaster, config: ProvisionConfig) -> tuple[float, float]:
    """(terrain_sigma_m, map_registration_sigma_m): the config's, or the defaults for this source."""
    terrain = config.terrain_sigma_m if config.terrain_sigma_m is not None else (
        3.0 if config.dem_path is not None else 2.0)
    registration = config.map_registration_sigma_m if config.map_registration_sigma_m is not None else \
        max(1.0, 4.0 * raster.gsd_m)
    for name, value in (("terrain_sigma_m", terrain), ("map_registration_sigma_m", registration)):
        if not 0.0 <= value < 1.0e3:
            raise ValueError(f"{name} {value} must be a finite number of metres >= 0")
    return float(terrain), float(registration)


def provision(map_source: str | Path | MapRaster, out_dir, config: ProvisionConfig = ProvisionConfig(),
              progress: ProgressCallback | None = None) -> Manifest:
    """Write a corpus for a GeoTIFF path (read with `core.map_raster.load_geotiff`) or a MapRaster.

    progress(stage, done, total) is called as work advances; stages: tiles, init, descriptors, sift, write.
    """
    report = progress or (lambda stage, done, total: None)
    pretrained = pretrained_model(config)  # before the map: a missing or foreign checkpoint fails at once
    raster = map_source if isinstance(map_source, MapRaster) else load_geotiff(map_source, gsd_m=config.map_gsd_m)
    out_dir = start_corpus(out_dir)
    rng = np.random.default_rng(config.seed)

    terrain = terrain_for(raster, config)  # first: a missing or bad DEM fails before minutes of work
    sigmas_m = error_sigmas_m(raster, config)
    tiles = corpus_tiles(raster, config)
    images = []
    for i, tile in enumerate(tiles):
        images.append(tile_image(raster, tile["pixels"], config.tile_px))
        report("tiles", i + 1, len(tiles))

    model, alpha = (pretrained, None) if pretrained is not None else adapt_model(images, config, rng, report)
    model_id = save_checkpoint(model, out_dir / "model.pt", model.config)

    runtime = DescriptorExtractor(model, config.device, config.tile_px, config.batch_size)
    descriptors = np.zeros((len(tiles), model.config.descriptor_dim), np.float32)
    for start in range(0, len(tiles), config.batch_size):
        descriptors[start:start + config.batch_size] = runtime.describe(images[start:start + config.batch_size])
        report("descriptors", min(start + config.batch_size, len(tiles)), len(tiles))

    cells, per_cell = feature_cells(tiles, config), features_per_cell(config)
    found = []
    for i, cell in enumerate(cells):
        found.append(detect_cell_features(raster, cell_pixels(raster, cell, config), per_cell, config.sift_margin_px,
                                          config.root_sift))
        report("sift", i + 1, len(cells))
    return write_corpus(out_dir, raster, map_source, config, tiles, model_id, alpha, descriptors, cells, found,
                        terrain, sigmas_m, report)


def start_corpus(out_dir) -> Path:
    """Create ``out_dir`` and remove any manifest in it (the manifest is written last, so an interrupted run
    never leaves a directory that looks like a valid corpus)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)
    return out_dir


def corpus_tiles(raster: MapRaster, config: ProvisionConfig) -> list[dict]:
    """``tile_grid``, refusing a map on which no tile fits."""
    tiles = tile_grid(raster, config)
    if not tiles:
        raise ValueError(f"no tile of {config.tile_size_m} m with >= {config.min_valid_fraction:.0%} valid data "
                         "fits the map")
    return tiles


def feature_cells(tiles: list[dict], config: ProvisionConfig) -> list[tuple[int, int]]:
    """The stride cells (row, col) that some tile covers, sorted: the order of features.npz."""
    m = round(config.tile_size_m / config.stride_m)
    return sorted({(t["row"] + dr, t["col"] + dc) for t in tiles for dr in range(m) for dc in range(m)})


def features_per_cell(config: ProvisionConfig) -> int:
    """A tile's SIFT budget shared by its cells."""
    m = round(config.tile_size_m / config.stride_m)
    return int(math.ceil(config.sift_features_per_tile / (m * m)))


def cell_pixels(raster: MapRaster, cell: tuple[int, int], config: ProvisionConfig) -> tuple[int, int, int, int]:
    """Pixel box (r0, r1, c0, c1) of stride cell (row, col) of the grid anchored at the raster's north-west corner."""
    row, col = cell
    r0, r1 = round(row * config.stride_m / raster.gsd_m), round((row + 1) * config.stride_m / raster.gsd_m)
    c0, c1 = round(col * config.stride_m / raster.gsd_m), round((col + 1) * config.stride_m / raster.gsd_m)
    return r0, r1, c0, c1
