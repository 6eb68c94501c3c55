"""What the retrieval node shows in rviz: candidate tile footprints as markers, and a query/top-K mosaic."""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from visualization_msgs.msg import Marker, MarkerArray

from gps_denied_nav.core.corpus import Corpus
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.plots import retrieval_mosaic
from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.conversions import rgb_to_image
from gps_denied_nav_interfaces.msg import RetrievalCandidates

_RANK_COLOURS = ((0.1, 0.9, 0.2), (0.95, 0.8, 0.1), (0.95, 0.55, 0.1), (0.9, 0.3, 0.1), (0.7, 0.2, 0.2))

MOSAIC_MAX_TILES = 8  # candidates drawn beside the query in the rviz mosaic


def candidate_markers(candidates: RetrievalCandidates, corpus: Corpus, map_frame: LocalTangentPlane) -> MarkerArray:
    """One closed LINE_STRIP per candidate (best in green) and its score as text, in ``map``."""
    out = MarkerArray(markers=[Marker(action=Marker.DELETEALL)])
    out.markers[0].header.frame_id = names.MAP_FRAME
    for rank, cand in enumerate(candidates.candidates):
        e0, n0, e1, n1 = cand.east_min_m, cand.north_min_m, cand.east_max_m, cand.north_max_m
        corners = np.array([[e0, n0, 0], [e1, n0, 0], [e1, n1, 0], [e0, n1, 0], [e0, n0, 0]], dtype=float)
        corners[:, 2] = corpus.ground_up_m
        # Corpus ENU -> WGS84 -> map ENU: the two frames may have different origins.
        corners_map = map_frame.to_enu(*corpus.frame.to_geodetic(corners))
        colour = _RANK_COLOURS[min(rank, len(_RANK_COLOURS) - 1)]
        box = Marker(type=Marker.LINE_STRIP, action=Marker.ADD, id=2 * rank, ns="candidates",
                     lifetime=Duration(sec=5))
        box.header = candidates.header
        box.header.frame_id = names.MAP_FRAME
        box.scale.x = 3.0 if rank == 0 else 1.5
        box.color.r, box.color.g, box.color.b, box.color.a = (*colour, 1.0)
        box.pose.orientation.w = 1.0
        box.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in corners_map]
        label = Marker(type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, id=2 * rank + 1, ns="candidates",
                       text=f"#{rank + 1} {cand.tile_id} {cand.score:.2f}", lifetime=Duration(sec=5))
        label.header = box.header
        label.scale.z = 12.0
        label.color = box.color
        centre = corners_map[:4].mean(axis=0)
        label.pose.position = Point(x=float(centre[0]), y=float(centre[1]), z=float(centre[2]) + 5.0)
        label.pose.orientation.w = 1.0
        out.markers += [box, label]
    return out


class MosaicSource:
    """Tile thumbnails cut from the corpus' map preview (loaded once), for the debug mosaic."""

    def __init__(self, corpus: Corpus):
        self.preview, _valid, self.geometry = corpus.map_preview()

    def thumbnail(self, bounds_enu_m: tuple[float, float, float, float]) -> np.ndarray:
        g = self.geometry
        e0, n0, e1, n1 = bounds_enu_m
        c0, c1 = int((e0 - g.east_min_m) / g.gsd_m), int(np.ceil((e1 - g.east_min_m) / g.gsd_m))
        r0, r1 = int((g.north_max_m - n1) / g.gsd_m), int(np.ceil((g.north_max_m - n0) / g.gsd_m))
        crop = self.preview[max(r0, 0):max(r1, 1), max(c0, 0):max(c1, 1)]
        return crop if crop.size else np.zeros((8, 8, 3), np.uint8)

    def mosaic_msg(self, candidates: RetrievalCandidates, query_rgb: np.ndarray, thumb_px: int):
        shown = candidates.candidates[:MOSAIC_MAX_TILES]  # a global search hands 20: one row stays readable
        tiles = [self.thumbnail((c.east_min_m, c.north_min_m, c.east_max_m, c.north_max_m)) for c in shown]
        labels = [c.tile_id for c in shown]
        image = retrieval_mosaic(query_rgb, tiles, [c.score for c in shown],
                                 0 if tiles else None, thumb_px=thumb_px, labels=labels)
        return rgb_to_image(image, candidates.header.stamp, names.MAP_FRAME)
