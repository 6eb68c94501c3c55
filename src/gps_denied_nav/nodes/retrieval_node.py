"""Retrieval node: global descriptor -> top-K candidate tiles from the FAISS corpus index.

The search is narrowed to tiles near the fused position (radius from its covariance) and goes global
when the filter reports no fix (lost or re-initialising), when the prior is too uncertain or stale, or
when an operator asks for it (``~/set_global_search``). For rviz it publishes the candidates' footprints
in ``map`` and a mosaic of the query beside its top-K tiles, each only while something subscribes: the
mosaic cost 12 % of a core on the 2-core machine, taken from the stages a frame waits for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import Image, NavSatFix, NavSatStatus
from std_srvs.srv import SetBool
from visualization_msgs.msg import MarkerArray

from gps_denied_nav.core.corpus import Corpus
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.input_checks import geodetic_problem
from gps_denied_nav.core.retrieval import search
from gps_denied_nav.core.stage_timing import FrameTimer
from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.qos import latched_qos
from gps_denied_nav.nodes.conversions import image_to_rgb, stamp_to_s
from gps_denied_nav.nodes.node_main import run_node
from gps_denied_nav.core.threads import ThreadBudget
from gps_denied_nav.nodes.stage_node import StageNode, StageParams, require_corpus_dir
from gps_denied_nav.nodes.retrieval_views import MosaicSource, candidate_markers
from gps_denied_nav_interfaces.msg import GlobalDescriptor, RetrievalCandidates, TileCandidate


@dataclass(frozen=True)
class RetrievalParams(StageParams):
    corpus_dir: str = ""  # provisioned tile corpus (index.faiss, tiles.json, manifest.json)
    top_k: int = 5  # candidates handed to matching
    # ... when the search is global (lost, re-initialising): the matcher verifies them all (one search over
    # their union) and the one with most inliers wins. Measured on the held-out-appearance Turku flight: the
    # right tile is among the descriptor's top 5 for 0.97 of the frames, first after verifying the top 20 for 0.99.
    global_top_k: int = 20
    # Search radius = scale * the fused horizontal sigma + half a tile + half the query's footprint: every tile
    # that can overlap what the camera sees, and nothing more (no fixed floor: the filter's covariance decides).
    prior_sigma_scale: float = 3.0
    max_prior_radius_m: float = 1500.0  # a prior wider than this is no prior: search globally
    max_prior_age_s: float = 5.0  # an older fused fix is no prior
    publish_debug_image: bool = True  # query beside its top-K tiles, for rviz
    debug_thumbnail_px: int = 160
    faiss_threads: int = 1  # FAISS's OpenMP pool (process-wide); a flat search of ~1000 tiles takes < 1 ms on one


class RetrievalNode(StageNode):
    params_cls = RetrievalParams

    def __init__(self, **kwargs):
        super().__init__(names.RETRIEVAL_NODE, **kwargs)

    def configure_stage(self) -> None:
        self.corpus = Corpus.load(require_corpus_dir(self.params.corpus_dir))
        self.mosaic = MosaicSource(self.corpus) if self.params.publish_debug_image else None
        self.forced_global = False
        self.prior = None  # (stamp_s, east_m, north_m, sigma_m, has_fix) in the corpus frame
        self.map_frame: LocalTangentPlane | None = None
        self.images: dict[float, np.ndarray] = {}
        self.pub = self.publisher(RetrievalCandidates, names.CANDIDATES)
        self.enable_timing("retrieval")
        self.debug_pub = self.publisher(Image, names.DEBUG_IMAGE, depth=2)
        self.marker_pub = self.publisher(MarkerArray, names.MARKERS, depth=2)
        self.subscribe(GlobalDescriptor, names.DESCRIPTOR, self._on_descriptor)
        self.subscribe(NavSatFix, names.FIX, self._on_fix)
        self.subscribe(NavSatFix, names.MAP_ORIGIN, self._on_map_origin, qos=latched_qos())
        if self.params.publish_debug_image:
            self.subscribe_sensor(Image, names.IMAGE, self._on_image)
        self.srv = self.create_service(SetBool, "~/set_global_search", self._on_set_global)
        self.get_logger().info(f"corpus {self.params.corpus_dir}: {self.corpus.num_tiles} tiles")

    def thread_budget(self) -> ThreadBudget:
        return ThreadBudget(faiss=self.params.faiss_threads, blas=self.params.blas_threads)

    def release_stage(self) -> None:
        if hasattr(self, "srv"):
            self.destroy_service(self.srv)
            del self.srv
        self.__dict__.pop("corpus", None)

    def _on_set_global(self, request, response):
        self.forced_global = bool(request.data)
        response.success, response.message = True, f"global search {'forced' if self.forced_global else 'automatic'}"
        return response

    def _on_map_origin(self, msg: NavSatFix) -> None:
        problem = geodetic_problem(msg.latitude, msg.longitude, msg.altitude)
        if problem:
            self.status.drop(f"map_origin_{problem}", f"{msg.latitude}, {msg.longitude}, {msg.altitude} m")
            return
        self.map_frame = LocalTangentPlane(msg.latitude, msg.longitude, msg.altitude)

    def _on_fix(self, msg: NavSatFix) -> None:
        if geodetic_problem(msg.latitude, msg.longitude, msg.altitude):
            self.status.drop("bad_fix", f"latitude/longitude/altitude {msg.latitude}, {msg.longitude}, {msg.altitude}")
            return
        east_north = self.corpus.frame.to_enu(msg.latitude, msg.longitude, msg.altitude)[:2]
        c = msg.position_covariance
        sigma_m = math.sqrt(max(c[0] + c[4], 0.0)) if msg.position_covariance_type else float("inf")
        self.prior = (stamp_to_s(msg.header.stamp), float(east_north[0]), float(east_north[1]), sigma_m,
                      msg.status.status != NavSatStatus.STATUS_NO_FIX)

    def _on_image(self, msg: Image) -> None:
        if not self.active or not self.debug_pub.get_subscription_count():
            return
        try:
            rgb = image_to_rgb(msg)
        except ValueError:
            return  # the inference node counts malformed frames; the mosaic is only a view
        self.images[stamp_to_s(msg.header.stamp)] = rgb[::4, ::4].copy()  # a view would keep the whole frame
        while len(self.images) > 10:
            self.images.pop(next(iter(self.images)))

    def _prior_radius(self, stamp_s: float, footprint_m: float) -> float | None:
        """Search radius in metres around the prior, or None for a global search."""
        if self.forced_global or self.prior is None:
            return None
        t_s, _e, _n, sigma_m, has_fix = self.prior
        radius = self.params.prior_sigma_scale * sigma_m + 0.5 * (self.corpus.tile_size_m + footprint_m)
        if not has_fix or abs(stamp_s - t_s) > self.params.max_prior_age_s or radius > self.params.max_prior_radius_m:
            return None
        return radius

    def _on_descriptor(self, msg: GlobalDescriptor) -> None:
        if not self.active:
            return
        timer = FrameTimer()
        self.status.count("descriptors_received")
        query = np.frombuffer(msg.descriptor, dtype=np.float32)
        if msg.model_id != self.corpus.model_id or query.size != self.corpus.descriptor_dim:
            self.status.drop("model_mismatch", f"descriptor from '{msg.model_id}' ({query.size}-d), corpus expects "
                             f"'{self.corpus.model_id}' ({self.corpus.descriptor_dim}-d)")
            self.finish_frame(msg.header, timer, "model_mismatch", forwarded=False)
            return
        if not np.all(np.isfinite(query)):
            self.status.drop("bad_descriptor", "NaN in descriptor")
            self.finish_frame(msg.header, timer, "bad_descriptor", forwarded=False)
            return
        stamp_s = stamp_to_s(msg.header.stamp)
        footprint_m = msg.footprint_m if math.isfinite(msg.footprint_m) and msg.footprint_m > 0.0 \
            else self.corpus.tile_size_m  # an unrectified frame: its footprint is unknown, assume a tile's
        radius = self._prior_radius(stamp_s, footprint_m)
        timer.mark("decode")
        if radius is None:
            result = search(self.corpus.tile_search, query, self.params.global_top_k)
        else:  # the corpus' geo grid: exact within the radius for a flat or an IVF index, without a walk of all N
            result = search(self.corpus.tile_search, query, self.params.top_k, prior_enu_m=np.array(self.prior[1:3]),
                            prior_radius_m=radius)
        out = RetrievalCandidates(header=msg.header, global_search=result.global_search,
                                  prior_radius_m=0.0 if result.global_search else float(radius),
                                  search_ms=timer.mark("search"))
        for index, score in zip(result.indices, result.scores):
            tile = self.corpus.tiles[int(index)]
            out.candidates.append(TileCandidate(
                tile_id=tile.tile_id, index=int(index), score=float(score),
                center_lat_deg=tile.centre_lat_deg, center_lon_deg=tile.centre_lon_deg,
                east_min_m=tile.east_min_m, north_min_m=tile.north_min_m,
                east_max_m=tile.east_max_m, north_max_m=tile.north_max_m))
        self.pub.publish(out)
        timer.mark("publish")
        timer.done()
        self.status.count("global_searches" if result.global_search else "prior_searches")
        self.status.set("search_ms", out.search_ms)
        if self.map_frame is not None and self.marker_pub.get_subscription_count():
            self.marker_pub.publish(candidate_markers(out, self.corpus, self.map_frame))
        query_rgb = self.images.get(stamp_s)
        if self.params.publish_debug_image and query_rgb is not None and self.debug_pub.get_subscription_count():
            self.debug_pub.publish(self.mosaic.mosaic_msg(out, query_rgb, self.params.debug_thumbnail_px))
            self.status.count("debug_images_published")
        timer.mark("debug_views")  # after the candidates went out: rviz views never delay matching
        self.finish_frame(msg.header, timer)


def main(args=None) -> None:
    run_node(RetrievalNode, args)


if __name__ == "__main__":
    main()
