"""``gdn eval-retrieval CLIP --corpus DIR --out OUT``: how well the corpus' model retrieves a clip's frames.

Each camera frame is rectified north-up as the inference node does it, but with the ground-truth attitude and
height (so the figure is the retrieval's alone, not the filter's), described with the corpus' model and ranked
against every tile: globally and among the tiles within ``prior_radius_m`` of a prior that is the truth moved by
``prior_sigma_m`` of noise (a filter that has drifted). Writes ``OUT/retrieval.json`` (recall@1/5/10/20 both
ways beside the random-pick baseline, per-query ranks) and ``OUT/retrieval_ranks.png``. Needs a clip with
``/ground_truth/fix`` and ``/ground_truth/odom`` (rendered clips have them).

With ``verify_top`` N > 0 the global ranking is also scored as the graph uses it when lost: the top N tiles are
matched against the frame as it came from the camera (the matcher's ``match_frame``: SIFT, one search over
the candidates' union, a homography each) and re-ordered by their inliers -- tiles with at least the matcher's
``min_inliers`` first, most inliers first -- the rest keep their descriptor order (``verified`` in the record).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
from rosbags.highlevel import AnyReader

from gps_denied_nav.core.camera import R_BODY_CAM_NADIR
from gps_denied_nav.core.corpus import Corpus
from gps_denied_nav.core.descriptor import DescriptorExtractor
from gps_denied_nav.core.matching import MatchingConfig, TileFeatures, match_frame
from gps_denied_nav.core.rectify import optical_axis_ground_offset, query_footprint_m, rectify_to_north_up
from gps_denied_nav.core.rotations import quat_to_rotmat
from gps_denied_nav.core.vpr_eval import KS, plot_ranks, rank_queries, recall_of_ranks
from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.conversions import image_to_rgb  # the nodes' own decoding (and its checks)
from gps_denied_nav.recording.salvage import recording_bags
from gps_denied_nav.replay.bag_types import typestore
from gps_denied_nav.sim.clip import read_ground_truth, read_ground_truth_odom


def _frames(bags):
    """(stamp_s, rgb image, K) of every camera frame, with the camera_info in force."""
    K = None
    with AnyReader(bags, default_typestore=typestore()) as reader:
        conns = [c for c in reader.connections if c.topic in (names.IMAGE, names.CAMERA_INFO)]
        for conn, _t, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == names.CAMERA_INFO:
                K = np.asarray(msg.k, float).reshape(3, 3)
                continue
            if K is None:
                continue
            yield msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec, image_to_rgb(msg), K


def rectified_queries(clip, corpus: Corpus, progress=None, with_frames: bool = False):
    """(stamp_s, rectified north-up query [uint8 RGB], ground-truth footprint centre [2] ENU m) of each camera
    frame of ``clip`` inside its ground truth's time span: rectified with the ground-truth attitude and height
    above the corpus' terrain, at the corpus' ground sampling, as inference_node does with the filter's.
    with_frames: also the frame as it came (uint8 RGB) and its K [3x3]."""
    bags = recording_bags(clip)
    t_fix, lat, lon, alt = read_ground_truth(bags)
    t_odom, _pos, q_world_body, _vel = read_ground_truth_odom(bags)
    if not len(t_fix) or not len(t_odom):
        raise ValueError(f"{clip}: no /ground_truth/fix or /ground_truth/odom to score retrieval against")
    enu = corpus.frame.to_enu(lat, lon, alt)
    gsd_m = corpus.tile_size_m / corpus.tile_px
    frames = list(_frames(bags))
    for i, (t_s, rgb, K) in enumerate(frames):
        if not t_fix[0] <= t_s <= t_fix[-1]:
            continue
        position = np.array([np.interp(t_s, t_fix, enu[:, j]) for j in range(3)])
        R_world_cam = quat_to_rotmat(q_world_body[int(np.argmin(np.abs(t_odom - t_s)))]) @ R_BODY_CAM_NADIR
        agl_m = position[2] - corpus.ground_up_at(position[0], position[1])
        footprint_m = query_footprint_m(K, rgb.shape[1], rgb.shape[0], agl_m, 1.0, corpus.tile_size_m)
        query, _valid, _ = rectify_to_north_up(rgb, K, R_world_cam, agl_m, gsd_m, max(32, int(round(footprint_m / gsd_m))))
        ground = position[:2] + optical_axis_ground_offset(K, R_world_cam, agl_m)
        yield (t_s, query, ground, rgb, K) if with_frames else (t_s, query, ground)
        if progress is not None:
            progress(i + 1, len(frames))


def verified_order(descriptor: np.ndarray, rgb: np.ndarray, K: np.ndarray, corpus: Corpus, top: int,
                   config: MatchingConfig = MatchingConfig()) -> np.ndarray:
    """Every tile index, ranked as the graph ranks them when lost: the descriptor's top ``top`` re-ordered by
    the matcher's inliers on the frame (at least ``config.min_inliers``, most first), then the rest."""
    order = np.argsort(-(corpus.descriptors @ descriptor), kind="stable")
    head = order[:top]
    cv2.setRNGSeed(0)  # USAC samples from OpenCV's global RNG: a frame's ranking must not depend on the last
    result = match_frame(rgb, K, [TileFeatures(int(i), *corpus.tile_features(int(i))) for i in head], config,
                         terrain_up_m=corpus.terrain_up_m)
    inliers = dict(result.tile_inliers)
    key = np.array([n if (n := inliers.get(int(i), 0)) >= config.min_inliers else -1 for i in head])
    return np.concatenate([head[np.argsort(-key, kind="stable")], order[top:]])


def evaluate_clip(clip, corpus_dir, out_dir, prior_radius_m: float = 200.0, prior_sigma_m: float = 50.0,
                  seed: int = 0, progress=None, verify_top: int = 0) -> dict:
    t0 = time.monotonic()
    corpus = Corpus.load(corpus_dir)
    extractor = DescriptorExtractor(corpus.load_model(), "cpu", corpus.tile_px)
    stamps, descriptors, truth, verified, verify_ms = [], [], [], [], []
    for t_s, query, ground, rgb, K in rectified_queries(clip, corpus, progress, with_frames=True):
        descriptors.append(extractor.describe(query[None])[0])
        truth.append(ground)
        stamps.append(t_s)
        if verify_top > 0:
            t1 = time.perf_counter()
            verified.append(verified_order(descriptors[-1], rgb, K, corpus, verify_top))
            verify_ms.append(1e3 * (time.perf_counter() - t1))
    if not descriptors:
        raise ValueError(f"{clip}: no camera frame inside the ground truth's time span")
    truth, stamps = np.array(truth), np.array(stamps)
    tiles = np.ascontiguousarray(corpus.descriptors, dtype=np.float32)
    stride = corpus.manifest.tile_stride_m
    prior = truth + np.random.default_rng(seed).normal(0.0, prior_sigma_m, truth.shape)
    global_ = rank_queries(np.array(descriptors), tiles, corpus.tile_centres_enu_m, truth, stride)
    narrowed = rank_queries(np.array(descriptors), tiles, corpus.tile_centres_enu_m, truth, stride, prior,
                            prior_radius_m)
    result = {"clip": str(clip), "corpus": str(corpus_dir), "model_id": corpus.model_id, "queries": len(stamps),
              "tiles": corpus.num_tiles, "hit_radius_m": stride,
              "queries_without_a_tile": len(stamps) - global_["answerable"],
              "prior": {"radius_m": prior_radius_m, "sigma_m": prior_sigma_m, "seed": seed},
              **{f"recall@{k}": global_[f"recall@{k}"] for k in KS},
              **{f"random@{k}": global_[f"random@{k}"] for k in KS},
              "prior_narrowed": {k: v for k, v in narrowed.items() if k.startswith(("recall", "random"))},
              "per_query": [{"t_s": float(t), "rank_global": int(rg), "rank_prior": int(rp),
                             "truth_centre_enu_m": [float(c[0]), float(c[1])]}
                            for t, rg, rp, c in zip(stamps, global_["ranks"], narrowed["ranks"], truth)],
              "seconds": time.monotonic() - t0}
    if verify_top > 0:
        hit = np.linalg.norm(corpus.tile_centres_enu_m[None, :, :2] - truth[:, None, :2], axis=2) <= stride
        ranked_hits = np.take_along_axis(hit, np.array(verified), axis=1)
        ranks = np.where(ranked_hits.any(axis=1), ranked_hits.argmax(axis=1) + 1, 0)
        result["verified"] = {"top": verify_top, **recall_of_ranks(ranks, hit.any(axis=1)),
                              "ms_p50": float(np.median(verify_ms)), "ms_p95": float(np.percentile(verify_ms, 95))}
        for row, rank in zip(result["per_query"], ranks):
            row["rank_verified"] = int(rank)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "retrieval.json").write_text(json.dumps(result, indent=1) + "\n")
    plot_ranks(out / "retrieval_ranks.png", stamps - stamps[0], global_["ranks"], narrowed["ranks"],
               f"{Path(clip).name} on {Path(corpus_dir).name} ({corpus.model_id}): recall@1 "
               f"{global_['recall@1']:.2f} global, {narrowed['recall@1']:.2f} prior")
    return result


def summary_table(result: dict) -> str:
    rows = ["| search | " + " | ".join(f"recall@{k}" for k in KS) + " |", "|---" * (len(KS) + 1) + "|"]
    rows.append("| global | " + " | ".join(f"{result[f'recall@{k}']:.2f} (random {result[f'random@{k}']:.2f})"
                                          for k in KS) + " |")
    p = result["prior_narrowed"]
    rows.append(f"| prior {result['prior']['radius_m']:.0f} m | " + " | ".join(
        f"{p[f'recall@{k}']:.2f} (random {p[f'random@{k}']:.2f})" for k in KS) + " |")
    if "verified" in result:
        v = result["verified"]
        rows.append(f"| global, top {v['top']} verified | " + " | ".join(f"{v[f'recall@{k}']:.2f}" for k in KS) + " |")
    return "\n".join(rows)
