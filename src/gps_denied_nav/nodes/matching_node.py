"""Matching node: camera frame + retrieval candidates -> absolute visual fix with covariance.

Query SIFT features are matched against the candidate tiles' features, precomputed at provisioning;
a USAC homography and a planar PnP give the camera pose in the corpus frame, and its covariance comes
from the reprojection Jacobian (core.matching). The query's SIFT needs no candidates, so a worker of its
own computes it as soon as the frame arrives, beside the descriptor's forward pass in inference_node:
the frame's latency loses the SIFT time (~120 ms here). Frames and their features are looked up by the
candidates' stamp in a short cache, so retrieval and matching need no message synchroniser.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, NavSatFix, NavSatStatus

from gps_denied_nav.core.camera import camera_mount_rotation
from gps_denied_nav.core.corpus import Corpus
from gps_denied_nav.core.input_checks import geodetic_problem
from gps_denied_nav.core.matching import (MatchingConfig, PosePrior, QueryFeatures, TileFeatures, describe_query,
                                           map_query_scale, match_frame)
from gps_denied_nav.core.rotations import quat_to_rotmat
from gps_denied_nav.core.stage_timing import FrameTimer
from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.conversions import image_to_rgb, stamp_to_s
from gps_denied_nav.nodes.node_main import run_node
from gps_denied_nav.core.threads import ThreadBudget
from gps_denied_nav.nodes.extrinsics import Extrinsics
from gps_denied_nav.nodes.stage_node import StageNode, StageParams, require_corpus_dir
from gps_denied_nav.nodes.worker import LatestWorker
from gps_denied_nav_interfaces.msg import RetrievalCandidates, VisualFix


_MATCH = MatchingConfig()


@dataclass(frozen=True)
class MatchingParams(StageParams):
    corpus_dir: str = ""  # provisioned tile corpus with precomputed tile features
    candidates_to_match: int = 3  # best retrieval candidates tried per frame
    global_candidates_to_match: int = 20  # ... after a global search (lost): verify retrieval's global_top_k
    candidate_window_tiles: float = 1.0  # match a candidate's features within this many tile sides around it
    level_camera: bool = False  # a gimbal holds the camera level: assume so before the filter has an attitude
    max_features: int = _MATCH.max_features  # SIFT features detected on the query
    # SIFT on the frame resized by this factor (<= 1); 0: to the map's ground sampling at the fused height (never
    # up), as gdn locate does with photos -- finer detail than the map has costs time and matches nothing.
    query_scale: float = 0.0
    ratio_test: float = _MATCH.ratio  # Lowe's ratio
    ransac_threshold_px: float = _MATCH.ransac_threshold_px  # USAC MAGSAC inlier threshold
    min_inliers: int = _MATCH.min_inliers  # fewer inliers: no fix
    min_inlier_spread: float = _MATCH.min_inlier_spread  # inlier hull / image area; below: clustered
    covariance_inflation: float = _MATCH.covariance_inflation  # variance factor for unmodelled error
    map_registration_sigma_m: float = float("nan")  # the orthophoto's absolute accuracy; NaN: the corpus's
    max_tilt_deg: float = _MATCH.max_tilt_deg  # implausible attitude beyond this
    mutual_check: bool = _MATCH.mutual_check  # keep a match only if it is also the tile keypoint's nearest
    geometry_model: str = _MATCH.geometry_model  # homography | similarity (tilt from the filter, see core.matching)
    image_cache_size: int = 20  # frames kept while their candidates are on the way
    max_prior_age_s: float = 1.0  # a fused fix further from the frame's stamp is no height prior
    camera_mount_rpy_deg: tuple = (0.0, 0.0, 0.0)  # camera mount relative to straight-down, top to the nose,
    # used unless TF has base_frame -> the image's frame_id (its optical frame, REP-103)
    base_frame: str = "base_link"
    opencv_threads: int = 1  # SIFT, FLANN, USAC (process-wide, shared with inference_node when composed)


class MatchingNode(StageNode):
    params_cls = MatchingParams

    def __init__(self, **kwargs):
        super().__init__(names.MATCHING_NODE, **kwargs)

    def configure_stage(self) -> None:
        p = self.params
        self.corpus = Corpus.load(require_corpus_dir(p.corpus_dir))
        registration_sigma_m = p.map_registration_sigma_m if math.isfinite(p.map_registration_sigma_m) \
            else self.corpus.manifest.map_registration_sigma_m
        if not 0.0 <= p.query_scale <= 1.0:
            raise ValueError(f"query_scale must be in [0, 1] (0: the map's ground sampling), got {p.query_scale}")
        self.config = MatchingConfig(max_features=p.max_features, query_scale=p.query_scale or 1.0, ratio=p.ratio_test,
                                     ransac_threshold_px=p.ransac_threshold_px, min_inliers=p.min_inliers,
                                     min_inlier_spread=p.min_inlier_spread,
                                     covariance_inflation=p.covariance_inflation,
                                     map_registration_sigma_m=registration_sigma_m,
                                     terrain_sigma_m=self.corpus.manifest.terrain_sigma_m, max_tilt_deg=p.max_tilt_deg,
                                     mutual_check=p.mutual_check, geometry_model=p.geometry_model)
        self.R_body_cam = camera_mount_rotation(tuple(p.camera_mount_rpy_deg))
        self.extrinsics = Extrinsics(self, p.base_frame, self.status)
        self.camera_frame_id = ""  # the images' frame_id (their optical frame), for the mount lookup
        self.images: OrderedDict[float, np.ndarray] = OrderedDict()
        self.query_features: OrderedDict[float, Future] = OrderedDict()  # SIFT of cached frames, when done
        self.pub = self.publisher(VisualFix, names.VISUAL_FIX)
        self.enable_timing("matching")
        self.worker = LatestWorker("matching", self._match, self._on_skip, self._on_error)
        # A skipped or failed frame leaves its future empty: the matcher then computes the features itself.
        self.feature_worker = LatestWorker("query_features", self._describe_query,
                                           lambda item: item[2].set_result(None),
                                           lambda item, exc: item[2].set_result(None))
        self.subscribe_sensor(Image, names.IMAGE, self._on_image)
        self.subscribe_sensor(CameraInfo, names.CAMERA_INFO, self.on_camera_info)
        self.subscribe(RetrievalCandidates, names.CANDIDATES, self._on_candidates)
        self.track_attitude()  # a pose whose tilt disagrees with the filter's is a wrong match
        # ... and one whose height above the ground disagrees with the fused altitude's (a wrong scale)
        self.fused_agl: tuple[float, float] | None = None  # (stamp_s, m above the corpus terrain)
        self.subscribe(NavSatFix, names.FIX, self._on_fix)

    def thread_budget(self) -> ThreadBudget:
        return ThreadBudget(opencv=self.params.opencv_threads, blas=self.params.blas_threads)

    def release_stage(self) -> None:
        for worker in ("worker", "feature_worker"):
            if hasattr(self, worker):
                getattr(self, worker).stop()
                delattr(self, worker)
        self.__dict__.pop("corpus", None)

    def _on_fix(self, msg: NavSatFix) -> None:
        if msg.status.status == NavSatStatus.STATUS_NO_FIX or geodetic_problem(msg.latitude, msg.longitude,
                                                                                msg.altitude):
            self.fused_agl = None  # lost (or absurd): no prior to hold a fix against
            return
        east, north, up = self.corpus.frame.to_enu(msg.latitude, msg.longitude, msg.altitude)
        self.fused_agl = (stamp_to_s(msg.header.stamp), float(up - self.corpus.ground_up_at(east, north)))

    def _on_image(self, msg: Image) -> None:
        if not self.active:
            return
        try:
            rgb = image_to_rgb(msg)
        except ValueError as exc:
            self.status.drop("bad_image", exc)
            return
        stamp_s = stamp_to_s(msg.header.stamp)
        self.images[stamp_s] = rgb
        self.camera_frame_id = msg.header.frame_id
        while len(self.images) > self.params.image_cache_size:
            self.images.popitem(last=False)
        if self.intrinsics is not None:
            future = Future()
            self.query_features[stamp_s] = future
            while len(self.query_features) > self.params.image_cache_size:
                self.query_features.popitem(last=False)
            self.feature_worker.submit((rgb, self.intrinsics, future))

    def _describe_query(self, item) -> None:
        rgb, intrinsics, future = item
        future.set_result(describe_query(rgb, intrinsics.K, self._sift_config(intrinsics), intrinsics.distortion))

    def _sift_config(self, intrinsics) -> MatchingConfig:
        """The matcher's config with the SIFT scale in force: the parameter's, or with query_scale 0 the frame
        brought to the map's ground sampling at the latest fused height."""
        if self.params.query_scale:
            return self.config
        agl = self.fused_agl
        return replace(self.config, query_scale=map_query_scale(
            None if agl is None else agl[1], float(intrinsics.K[0, 0]), self.corpus.manifest.map_geometry.gsd_m,
            self.config.min_altitude_agl_m))

    def _features_of(self, stamp_s: float, timeout_s: float = 2.0) -> QueryFeatures | None:
        """The frame's SIFT from the feature worker (waiting while it runs), or None to compute it here."""
        future = self.query_features.get(stamp_s)
        try:
            return None if future is None else future.result(timeout=timeout_s)
        except FutureTimeout:
            return None

    def _on_candidates(self, msg: RetrievalCandidates) -> None:
        if not self.active:
            return
        timer = FrameTimer()
        self.status.count("candidates_received")
        rgb = self.images.get(stamp_to_s(msg.header.stamp))
        if rgb is None:
            self.status.drop("no_frame_for_candidates", "frame left the cache before its candidates arrived")
            self.finish_frame(msg.header, timer, "no_frame_for_candidates", forwarded=False)
            return
        if self.intrinsics is None:
            self.status.count("waiting_for_camera_info")
            self.finish_frame(msg.header, timer, "waiting_for_camera_info", forwarded=False)
            return
        if not msg.candidates:
            self.status.count("no_candidates")
            self.finish_frame(msg.header, timer, "no_candidates", forwarded=False)
            return
        self.worker.submit((msg, rgb, self.intrinsics, timer))

    def _on_skip(self, item) -> None:
        self.status.count("skipped_busy")
        self.finish_frame(item[0].header, item[3], "skipped_busy", forwarded=False)

    def _on_error(self, item, exc: Exception) -> None:
        self.status.drop("matching_error", exc)
        self.finish_frame(item[0].header, item[3], "matching_error", forwarded=False)

    def _match(self, item) -> None:
        msg, rgb, intrinsics, timer = item
        stamp_s = stamp_to_s(msg.header.stamp)
        timer.mark("queue_wait")
        candidates = []
        window_m = 0.5 * self.params.candidate_window_tiles * self.corpus.tile_size_m
        count = self.params.global_candidates_to_match if msg.global_search else self.params.candidates_to_match
        for cand in msg.candidates[:count]:
            if self.params.candidate_window_tiles > 1.0:  # the tile and its surroundings: a footprint it cuts
                kp_enu_m, desc = self.corpus.features_in_window(self.corpus.tile_centres_enu_m[cand.index], window_m)
            else:
                kp_enu_m, desc = self.corpus.tile_features(cand.index)
            candidates.append(TileFeatures(cand.tile_id, kp_enu_m, desc, cand.score))
        q = self.poses.lookup(stamp_s, tolerance_s=0.5)
        agl = self.fused_agl
        agl_m = agl[1] if agl is not None and abs(agl[0] - stamp_s) <= self.params.max_prior_age_s else None
        if q is None and self.params.level_camera:  # no filter attitude yet: a gimbal holds the camera level
            q = np.array([1.0, 0.0, 0.0, 0.0])
        prior = None if q is None else PosePrior(R_world_body=quat_to_rotmat(q), agl_m=agl_m)
        timer.mark("tile_features")
        features = self._features_of(stamp_s)
        timer.mark("sift_wait")
        # Every matched map keypoint stands on the terrain under it (terrain.npz of the corpus).
        R_body_cam = self.extrinsics.rotation(self.camera_frame_id, self.R_body_cam, "camera")
        config = self.config if features is not None else self._sift_config(intrinsics)  # the worker skipped it
        result = match_frame(rgb if features is None else features, intrinsics.K, candidates, config,
                             prior=prior, R_body_cam=R_body_cam, distortion=intrinsics.distortion,
                             terrain_up_m=self.corpus.terrain_up_m)
        self.status.set("sift_scale", float(features.scale if features is not None else config.query_scale))
        parts = {"descriptor_match": result.match_ms, "homography": result.homography_ms, "pose": result.pose_ms}
        matching_ms = timer.mark_parts(parts if features is not None else {"sift": result.detect_ms, **parts},
                                       "match_other")
        if features is not None:
            timer.steps["sift_beside_inference"] = features.detect_ms  # off this frame's critical path
        if not result.accepted:
            reason = f"rejected_{result.reason.split(':')[0].replace(' ', '_')}"
            self.status.count(reason)
            self.finish_frame(msg.header, timer, reason, forwarded=False)
            return
        lat, lon, alt = self.corpus.frame.to_geodetic(result.cam_pos_enu_m)
        fix = VisualFix(header=msg.header, latitude_deg=float(lat), longitude_deg=float(lon), altitude_m=float(alt),
                        heading_rad=float(result.heading_rad), heading_variance_rad2=float(result.heading_var_rad2),
                        tile_id=result.tile_id, inliers=int(result.inliers), inlier_ratio=float(result.inlier_ratio),
                        reprojection_rmse_px=float(result.reprojection_rmse_px),
                        retrieval_score=float(next(c.score for c in msg.candidates if c.tile_id == result.tile_id)),
                        matching_ms=matching_ms)
        fix.header.frame_id = names.MAP_FRAME
        fix.position_covariance_enu_m2 = [float(v) for v in np.asarray(result.cov_pos_enu_m2).ravel()]
        self.pub.publish(fix)
        timer.mark("publish")
        self.finish_frame(msg.header, timer)
        self.status.count("fixes_published")
        self.status.set("inliers", int(result.inliers))
        self.status.set("matching_ms", fix.matching_ms)


def main(args=None) -> None:
    run_node(MatchingNode, args)


if __name__ == "__main__":
    main()
