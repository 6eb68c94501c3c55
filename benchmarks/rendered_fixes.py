"""Every frame of a rendered flight through the graph's visual stages, as the nodes run them, without ROS.

Per frame: rectify north-up with the prior attitude at the height above the terrain under the prior position
(inference_node), describe it (NetVLAD) and search the corpus within the prior radius (retrieval_node), match
the top tiles with each keypoint on the corpus terrain (matching_node) - or, without a descriptor model, match
the provisioned features within that radius directly (the case of a retrieval that found the right area, at
a third of the cost). The priors are the truth perturbed by the filter's typical errors in flight (the graph
takes them from the filter). Shared by the rendered-flight Monte Carlo evaluations, which cache the result.
"""
from __future__ import annotations

import numpy as np

from gps_denied_nav.core.corpus import Corpus
from gps_denied_nav.core.descriptor import DescriptorExtractor
from gps_denied_nav.core.matching import MatchingConfig, PosePrior, TileFeatures, match_frame
from gps_denied_nav.core.rectify import query_footprint_m, rectify_to_north_up
from gps_denied_nav.core.retrieval import search
from gps_denied_nav.core.rotations import quat_from_rotvec, quat_multiply, quat_to_rotmat
from gps_denied_nav.sim.flight import FlightData

PRIOR_POS_SIGMA_M, PRIOR_ATT_SIGMA_RAD = 2.0, np.radians(0.5)  # the filter's typical errors in flight
PRIOR_SIGMA_SCALE, TOP_K, CANDIDATES = 3.0, 5, 3  # retrieval_node / matching_node defaults
# Columns of a fix table: exposure stamp, camera position (3, corpus ENU m), its covariance (9, row-major),
# heading (rad, ENU), heading variance, inliers.
COLUMNS = ("stamp_s", "east_m", "north_m", "up_m", *(f"cov{i}{j}" for i in range(3) for j in range(3)),
           "yaw_rad", "yaw_var_rad2", "inliers")


def prior_radius_m(corpus: Corpus, footprint_m: float) -> float:
    """retrieval_node's search radius for a prior of PRIOR_POS_SIGMA_M per axis."""
    return PRIOR_SIGMA_SCALE * np.sqrt(2.0) * PRIOR_POS_SIGMA_M + 0.5 * (corpus.tile_size_m + footprint_m)


def frame_fixes(flight: FlightData, corpus: Corpus, extractor: DescriptorExtractor | None,
                rng: np.random.Generator, config: MatchingConfig = MatchingConfig()) -> tuple[np.ndarray, int]:
    """Accepted fixes [M x len(COLUMNS)] of the flight's frames, and the number of frames."""
    truth, cam = flight.truth_camera, flight.camera
    query_gsd_m = corpus.tile_size_m / corpus.tile_px
    rows = []
    for i, stamp in enumerate(flight.image_stamps_s):
        q_prior = quat_multiply(truth.q_world_body[i], quat_from_rotvec(rng.normal(size=3) * PRIOR_ATT_SIGMA_RAD))
        pos_prior = truth.pos_enu_m[i, :2] + rng.normal(size=2) * PRIOR_POS_SIGMA_M
        R_world_body = quat_to_rotmat(q_prior)
        agl_m = truth.pos_enu_m[i, 2] - corpus.ground_up_at(*pos_prior)
        footprint_m = query_footprint_m(cam.K, cam.width_px, cam.height_px, agl_m, 1.0, corpus.tile_size_m)
        radius_m = prior_radius_m(corpus, footprint_m)
        if extractor is None:
            candidates = [TileFeatures("window", *corpus.features_in_window(pos_prior, radius_m), 1.0)]
        else:
            size_px = max(32, int(round(footprint_m / query_gsd_m)))
            query, _valid, _offset = rectify_to_north_up(flight.images_rgb[i], cam.K, R_world_body @ flight.R_body_cam,
                                                         agl_m, query_gsd_m, size_px)
            found = search(corpus.index, extractor.describe(query[None])[0], TOP_K, corpus.tile_centres_enu_m,
                           pos_prior, radius_m)
            candidates = [TileFeatures(corpus.tiles[j].tile_id, *corpus.tile_features(int(j)), float(s))
                          for j, s in zip(found.indices[:CANDIDATES], found.scores[:CANDIDATES])]
        result = match_frame(flight.images_rgb[i], cam.K, candidates, config, terrain_up_m=corpus.terrain_up_m,
                             prior=PosePrior(R_world_body=R_world_body), R_body_cam=flight.R_body_cam)
        if result.accepted:
            rows.append([stamp, *result.cam_pos_enu_m, *np.ravel(result.cov_pos_enu_m2), result.heading_rad,
                         result.heading_var_rad2, result.inliers])
    return np.array(rows, float).reshape(-1, len(COLUMNS)), len(flight.image_stamps_s)
