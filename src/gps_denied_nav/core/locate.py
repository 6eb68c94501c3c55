"""Geolocate one photo against a corpus without an IMU: metadata for the camera, the map for the position.

The photo's metadata gives the intrinsics, the height above the take-off ground and the attitude; its GPS
is never used (it is what the result is scored against). The photo is shrunk to the map's resolution,
rectified north-up and described for each heading hypothesis (the metadata yaw and 90/180/270 deg off it:
real metadata can be 180 deg wrong and a NetVLAD descriptor is not rotation invariant), and the best tiles
of all hypotheses are searched globally. Each candidate is matched as a window of the map around its tile,
wide enough to hold the whole footprint (SIFT and the homography need no heading), with every keypoint on
the corpus terrain. The fix must pass the gates (``fix_gates``): above all the height above ground against
the metadata's, where a wrong match shows; the heading is reported against the metadata, not gated by it.
Its covariance carries the map's registration and terrain sigmas from the corpus manifest.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import cv2
import numpy as np

from gps_denied_nav.core.camera import R_BODY_CAM_NADIR, CameraIntrinsics
from gps_denied_nav.core.corpus import Corpus
from gps_denied_nav.core.descriptor import DescriptorExtractor
from gps_denied_nav.core.fix_gates import PosePrior
from gps_denied_nav.core.matching import MatchingConfig, TileFeatures, match_frame
from gps_denied_nav.core.photo_metadata import PhotoMetadata
from gps_denied_nav.core.photo_pose import camera_rotation, wrap_deg
from gps_denied_nav.core.rectify import query_footprint_m, rectify_to_north_up
from gps_denied_nav.core.retrieval import search


@dataclass(frozen=True)
class LocateConfig:
    heading_hypotheses_deg: tuple = (0.0, 90.0, 180.0, 270.0)  # added to the metadata yaw for retrieval
    candidates: int = 4  # best distinct tiles (over all hypotheses) matched
    max_features: int = 8000  # SIFT on the shrunk photo (a 69 x 38 m footprint at 5 cm: ~1.3 Mpx, 3 per m²)
    # Measured on the Brighton Beach photos (map from one leg, photos of the other, both ways; see
    # benchmarks/eval_brighton.py). The gimbal's tilt is known, so inliers come from a similarity (a
    # homography fitted canopy and ground as one plane tilted 10 deg); the orthophoto's seams are up to ~0.5 m
    # off (each photo placed by its own GPS), hence 10 px at 5 cm; grass and roads repeat, so the mutual check
    # and a 0.8 ratio lost most true matches, and 8000 features beat 4000; a 4-DoF fit with the tilt known is
    # held by a strip of road, so 4 % of the image suffices where a free homography needs 8 %. Homography, 3 px,
    # 0.8, mutual, 8 % and 4000 features fixed 3 of the 7 photos with map under them; these defaults fix all 7.
    matching: MatchingConfig = MatchingConfig(ransac_threshold_px=10.0, ratio=0.9, mutual_check=False,
                                              geometry_model="similarity", min_inlier_spread=0.04)


@dataclass(frozen=True)
class PhotoFix:
    """One photo's outcome; position fields are None when it was not fixed."""

    photo: str
    accepted: bool
    reason: str  # "accepted", or why not ("<category>: <detail>")
    lat_deg: float | None = None
    lon_deg: float | None = None
    alt_m: float | None = None
    cov_enu_m2: tuple | None = None  # 3x3 row-major, m^2 (matcher + map registration + terrain)
    heading_cw_deg: float | None = None  # image top, clockwise from true north, from the match
    heading_vs_metadata_deg: float | None = None  # heading_cw_deg - the metadata's camera yaw
    agl_m: float | None = None  # solved height above the ground under the camera
    agl_metadata_m: float | None = None  # the metadata's (DJI relative altitude)
    inliers: int = 0
    tile_id: str | None = None
    seconds: float = 0.0


def _shrunk(meta: PhotoMetadata, map_gsd_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image at about the map's ground resolution, its K)."""
    image = cv2.imread(str(meta.path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{meta.path}: cannot decode the image")
    K = np.asarray(meta.K, float)
    scale = min(1.0, (meta.relative_alt_m / K[0, 0]) / map_gsd_m)
    intrinsics = CameraIntrinsics.from_K(K, meta.width_px, meta.height_px)
    if scale < 0.95:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        intrinsics = intrinsics.scaled(scale)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), intrinsics.K


def _candidate_tiles(rgb, K, meta: PhotoMetadata, corpus: Corpus, extractor: DescriptorExtractor,
                     config: LocateConfig, tilt) -> list[tuple[int, float]]:
    """(tile index, best score over the heading hypotheses), best first."""
    agl_m = float(meta.relative_alt_m)
    gsd_m = corpus.tile_size_m / corpus.tile_px
    footprint_m = query_footprint_m(K, rgb.shape[1], rgb.shape[0], agl_m, 1.0, corpus.tile_size_m)
    best: dict[int, float] = {}
    for offset_deg in config.heading_hypotheses_deg:
        R = camera_rotation(meta.camera_yaw_deg + offset_deg, *tilt)
        query, _valid, _offset = rectify_to_north_up(rgb, K, R, agl_m, gsd_m, max(32, round(footprint_m / gsd_m)))
        found = search(corpus.index, extractor.describe(query[None])[0], config.candidates)
        for index, score in zip(found.indices, found.scores):
            best[int(index)] = max(best.get(int(index), -np.inf), float(score))
    return sorted(best.items(), key=lambda item: -item[1])[:config.candidates]


def locate_photo(meta: PhotoMetadata, corpus: Corpus, extractor: DescriptorExtractor,
                 config: LocateConfig = LocateConfig()) -> PhotoFix:
    """Fix one photo; never raises for a photo that merely cannot be fixed (the reason says why)."""
    t0 = time.perf_counter()
    cv2.setRNGSeed(0)  # USAC samples from OpenCV's global RNG: a photo's result must not depend on what ran before
    name = str(meta.path)
    missing = [p for p in ("focal length", "height above ground", "camera yaw") if
               (p == "focal length" and meta.K is None) or (p == "height above ground" and not (
                   meta.relative_alt_m or 0.0) > 2.0) or (p == "camera yaw" and meta.camera_yaw_deg is None)]
    if missing:
        return PhotoFix(name, False, "metadata missing: " + ", ".join(missing), seconds=time.perf_counter() - t0)
    rgb, K = _shrunk(meta, corpus.manifest.map_geometry.gsd_m)
    tilt = ((meta.gimbal_rpy_deg[0], meta.gimbal_rpy_deg[1] + 90.0) if meta.gimbal_rpy_deg else (0.0, 0.0))
    candidates = []
    half_width_m = 0.5 * corpus.tile_size_m + query_footprint_m(K, rgb.shape[1], rgb.shape[0],
                                                                meta.relative_alt_m, 1.0, math.inf)
    for index, score in _candidate_tiles(rgb, K, meta, corpus, extractor, config, tilt):
        kp, desc = corpus.features_in_window(corpus.tile_centres_enu_m[index], half_width_m)
        candidates.append(TileFeatures(corpus.tiles[index].tile_id, kp, desc, score))
    matching = dataclasses.replace(config.matching, max_features=config.max_features,
                                   map_registration_sigma_m=corpus.manifest.map_registration_sigma_m,
                                   terrain_sigma_m=corpus.manifest.terrain_sigma_m)
    # The tilt is trusted (a gimbal), the heading is not: it is any of the hypotheses.
    prior = PosePrior(R_world_body=camera_rotation(0.0, *tilt) @ R_BODY_CAM_NADIR.T, agl_m=float(meta.relative_alt_m))
    result = match_frame(rgb, K, candidates, matching, prior=prior, terrain_up_m=corpus.terrain_up_m)
    seconds = time.perf_counter() - t0
    if not result.accepted:
        return PhotoFix(name, False, result.reason, inliers=result.inliers, tile_id=None if result.tile_id is None
                        else str(result.tile_id), agl_metadata_m=meta.relative_alt_m, seconds=seconds)
    lat, lon, alt = corpus.frame.to_geodetic(result.cam_pos_enu_m)
    heading_cw_deg = float(wrap_deg(90.0 - math.degrees(result.heading_rad)))
    ground_m = float(corpus.terrain_up_m(result.cam_pos_enu_m[:1], result.cam_pos_enu_m[1:2])[0])
    return PhotoFix(name, True, "accepted", float(lat), float(lon), float(alt),
                    tuple(float(v) for v in np.ravel(result.cov_pos_enu_m2)), heading_cw_deg,
                    float(wrap_deg(heading_cw_deg - meta.camera_yaw_deg)), float(result.cam_pos_enu_m[2]) - ground_m,
                    float(meta.relative_alt_m), int(result.inliers), str(result.tile_id), seconds)
