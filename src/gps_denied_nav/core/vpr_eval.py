"""Retrieval scoring: recall@k of global and prior-narrowed search, per-query ranks and the random baseline.

A retrieved tile is a hit when its centre lies within one stride of the query's ground-truth footprint centre
(the ground point of the optical axis): such a tile overlaps the footprint by more than half. The rank of a
query is the position of its first hit in the full ranking (1 = top). Queries with no tile within the hit
radius (over a hole in the map) have no right answer: they are counted apart and left out of the recalls. The random baseline is the recall a
uniform random pick of k tiles (among the same candidates) would reach, given how many hits each query has:
1 - C(N - P, k) / C(N, k), averaged over the queries.
"""
from __future__ import annotations

import numpy as np

KS = (1, 5, 10, 20)


def random_recall(candidates: np.ndarray, positives: np.ndarray, k: int) -> float:
    """Mean over queries of P(a random k-subset of N candidates holds one of P positives)."""
    out = []
    for n, p in zip(np.asarray(candidates, int), np.asarray(positives, int)):
        kk = min(k, n)
        if p <= 0:
            out.append(0.0)
            continue
        # C(n - p, kk) / C(n, kk) as a product: prod_{i < kk} (n - p - i) / (n - i)
        miss = np.prod([(n - p - i) / (n - i) for i in range(kk)]) if n - p >= kk else 0.0
        out.append(1.0 - float(miss))
    return float(np.mean(out)) if out else float("nan")


def rank_queries(query_desc: np.ndarray, tile_desc: np.ndarray, tile_centres_enu_m: np.ndarray,
                 truth_centres_enu_m: np.ndarray, hit_radius_m: float, prior_enu_m: np.ndarray | None = None,
                 prior_radius_m: float | None = None) -> dict:
    """Exact ranking of the tiles for each query [Q x D] against tiles [N x D] (inner products), optionally
    among the tiles within prior_radius_m of each query's prior [Q x 2] only. Returns
    {"ranks": [Q] (first hit, 1-based; 0 when no candidate is a hit), "candidates": [Q], "positives": [Q],
    "recall@k": ..., "random@k": ...}."""
    d_truth = np.linalg.norm(tile_centres_enu_m[None, :, :2] - truth_centres_enu_m[:, None, :2], axis=2)
    hit = d_truth <= hit_radius_m
    scores = query_desc @ tile_desc.T
    allowed = np.ones_like(hit)
    if prior_enu_m is not None:
        d_prior = np.linalg.norm(tile_centres_enu_m[None, :, :2] - prior_enu_m[:, None, :2], axis=2)
        allowed = d_prior <= prior_radius_m
        allowed[~allowed.any(axis=1)] = True  # an empty prior falls back to global search, as retrieval does
    scores = np.where(allowed, scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked_hits = np.take_along_axis(hit & allowed, order, axis=1)
    first = ranked_hits.argmax(axis=1)
    ranks = np.where(ranked_hits.any(axis=1), first + 1, 0)
    candidates, positives = allowed.sum(axis=1), (hit & allowed).sum(axis=1)
    # A query over ground no tile covers (a hole in the map) has no right answer: it is counted, not scored.
    answerable = hit.any(axis=1)
    out = {"ranks": ranks.tolist(), "candidates": candidates.tolist(), "positives": positives.tolist(),
           "answerable": int(answerable.sum()), **recall_of_ranks(ranks, answerable)}
    for k in KS:
        out[f"random@{k}"] = random_recall(candidates[answerable], positives[answerable], k)
    return out


def recall_of_ranks(ranks: np.ndarray, answerable: np.ndarray) -> dict:
    """{"recall@k": share of the answerable queries whose first hit ranks k or better} for k in KS."""
    r = np.asarray(ranks)[np.asarray(answerable, bool)]
    return {f"recall@{k}": float(np.mean((r >= 1) & (r <= k))) if len(r) else float("nan") for k in KS}


def plot_ranks(path_png, t_s: np.ndarray, ranks_global: list, ranks_prior: list, title: str) -> None:
    """Rank of the first correct tile over the flight (log scale; misses drawn at the top)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    for ranks, label, colour in ((ranks_global, "global", "tab:blue"), (ranks_prior, "prior-narrowed", "tab:orange")):
        r = np.asarray(ranks, float)
        top = max(float(np.max(r)) if len(r) else 1.0, 20.0) * 1.5
        ax.scatter(t_s, np.where(r > 0, r, top), s=10, color=colour, label=label)
    ax.set_yscale("log")
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set_xlabel("clip time, s")
    ax.set_ylabel("rank of the first correct tile")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path_png)
    plt.close(fig)
