"""Local features shared by provisioning and matching: SIFT (optionally RootSIFT) and 2-NN matching.

The corpus computes every tile's features with ``detect_features`` at provisioning time and the matcher
computes the query's with the same function, so both sides always agree on the descriptor flavour.
Matching uses FLANN randomised kd-trees (Muja & Lowe 2009) because a tile or a 300 m window holds tens of
thousands of descriptors, where brute force costs hundreds of milliseconds; Lowe's ratio test and an
optional mutual nearest-neighbour check remove most ambiguous matches before the robust geometry.
"""
from __future__ import annotations

import cv2
import numpy as np

_FLANN_KDTREE = 1  # cv2.flann algorithm id of randomised kd-trees (FLANN_INDEX_KDTREE)


def to_rootsift(desc: np.ndarray) -> np.ndarray:
    """[N,128] SIFT -> RootSIFT (Arandjelovic & Zisserman 2012): L1-normalise, square root.

    The result has unit L2 norm, and its Euclidean distance is the Hellinger distance of the
    originals, which matches better than L2 on raw histograms.
    """
    desc = np.asarray(desc, dtype=np.float32)
    l1 = np.sum(np.abs(desc), axis=1, keepdims=True)
    return np.sqrt(desc / np.maximum(l1, 1e-12)).astype(np.float32)


def detect_features(image_rgb_or_gray: np.ndarray, max_features: int, mask: np.ndarray | None = None,
                    root_sift: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """SIFT keypoints and descriptors of an image.

    image_rgb_or_gray: [H,W,3] RGB or [H,W] gray, uint8. mask: [H,W] bool/uint8, nonzero = usable.
    Returns (keypoints_px [N,2] float32 as (col, row) with (0, 0) the centre of the top-left pixel,
    descriptors [N,128] float32), N <= max_features, strongest response first.
    """
    image = np.asarray(image_rgb_or_gray)
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    mask_u8 = None if mask is None else (np.asarray(mask) > 0).astype(np.uint8) * 255
    # Precise upscaling: the default 2x base image puts every keypoint 0.25 px right and down of
    # where it is (measured by detecting on a flipped image), which shifts a fix by decimetres.
    sift = cv2.SIFT_create(nfeatures=int(max_features), enable_precise_upscale=True)
    keypoints, desc = sift.detectAndCompute(gray, mask_u8)
    if desc is None or not keypoints:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32)
    order = np.argsort([-k.response for k in keypoints], kind="stable")[:max_features]
    kp = np.array([keypoints[i].pt for i in order], dtype=np.float32).reshape(-1, 2)
    desc = desc[order].astype(np.float32)
    return kp, (to_rootsift(desc) if root_sift else desc)


def flann_index(desc: np.ndarray, trees: int = 4) -> cv2.flann_Index:
    """Randomised kd-tree index over descriptors [M,128] float32."""
    return cv2.flann_Index(np.ascontiguousarray(desc, dtype=np.float32),
                           {"algorithm": _FLANN_KDTREE, "trees": int(trees)})


def match_descriptors(desc_query: np.ndarray, desc_tile: np.ndarray, ratio: float = 0.8,
                      mutual_check: bool = True, trees: int = 4, checks: int = 64,
                      query_index: cv2.flann_Index | None = None) -> np.ndarray:
    """Ratio-test (and mutual) matches between [N,128] and [M,128] -> [K,2] int64 (query i, tile j).

    query_index: a flann_index over desc_query, so a caller matching many tiles builds it once.
    Each tile keypoint appears at most once (the first, i.e. strongest, query keypoint wins).
    """
    if len(desc_query) < 2 or len(desc_tile) < 2:
        return np.zeros((0, 2), np.int64)
    nn, dist2 = flann_index(desc_tile, trees).knnSearch(
        np.ascontiguousarray(desc_query, dtype=np.float32), 2, params={"checks": int(checks)})
    keep = dist2[:, 0] < (ratio**2) * dist2[:, 1]  # FLANN returns squared L2 distances
    pairs = np.column_stack([np.nonzero(keep)[0], nn[keep, 0]]).astype(np.int64)
    if mutual_check and len(pairs):
        query_index = query_index if query_index is not None else flann_index(desc_query, trees)
        back, _ = query_index.knnSearch(np.ascontiguousarray(desc_tile[pairs[:, 1]], dtype=np.float32), 1,
                                        params={"checks": int(checks)})
        pairs = pairs[back[:, 0] == pairs[:, 0]]
    # A tile keypoint matched by several query keypoints would count several times as an inlier.
    _, first = np.unique(pairs[:, 1], return_index=True)
    return pairs[np.sort(first)]


def match_descriptor_sets(desc_query: np.ndarray, sets: list[np.ndarray], ratio: float = 0.8,
                          mutual_check: bool = True, trees: int = 4, checks: int = 64,
                          query_index: cv2.flann_Index | None = None) -> list[np.ndarray]:
    """``match_descriptors`` of one query against several descriptor sets [M_s,128] in one search: per set
    [K,2] int64 (query i, row j of that set).

    Candidate windows overlap (neighbouring tiles share most of their cells), so their union -- rows with the
    same descriptor counted once -- is searched once instead of each window on its own: the cost is the
    union's, not the sum's. The ratio test then weighs a query keypoint against every candidate's features,
    so one that is ambiguous between two candidates is dropped instead of matched in both.
    """
    sizes = [len(d) for d in sets]
    if not sets or sum(sizes) == 0:
        return [np.zeros((0, 2), np.int64) for _ in sets]
    stacked = np.ascontiguousarray(np.concatenate(sets).astype(np.float32, copy=False))
    rows = stacked.view(np.dtype((np.void, stacked.dtype.itemsize * stacked.shape[1]))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    union_pairs = match_descriptors(desc_query, stacked[first], ratio, mutual_check, trees, checks, query_index)
    out, offset = [], 0
    for size in sizes:
        row_of_union = np.full(len(first), -1, np.int64)  # union row -> this set's row (-1: not in the set)
        row_of_union[inverse.ravel()[offset:offset + size]] = np.arange(size)
        offset += size
        rows_in_set = row_of_union[union_pairs[:, 1]]
        keep = rows_in_set >= 0
        out.append(np.column_stack([union_pairs[keep, 0], rows_in_set[keep]]).astype(np.int64))
    return out
