"""Top-K tile retrieval over a corpus' FAISS index, narrowed by the position estimate when there is one.

With a prior (position and radius from the filter) only tiles whose centre lies within the radius compete,
so a well-localised UAV cannot be pulled to a look-alike field kilometres away. Given a corpus'
`core.tile_index.TileSearch` (``corpus.tile_search``) the prior gathers its tiles from a geo grid and scores
them exactly against the descriptors, for any index type and without touching all N; given a bare flat
index it goes through FAISS' ID selector (exact, but a walk of the whole index). When the radius holds no
tile (the estimate has drifted off the map, or the radius is too small) the search goes global rather than
returning nothing, and says so in ``mode``: the caller decides how much to trust a fallback result.
"""
from __future__ import annotations

from typing import NamedTuple

import faiss
import numpy as np

MODE_GLOBAL = "global"  # no prior given
MODE_PRIOR = "prior"  # restricted to tiles within prior_radius_m of prior_enu_m
MODE_PRIOR_EMPTY_GLOBAL = "prior_empty_global"  # a prior was given but no tile centre lies within it


class RetrievalResult(NamedTuple):
    """indices/scores: [k] for a [D] query, [B x k] for [B x D]; best first. k shrinks to the candidates."""

    indices: np.ndarray  # int64 rows of the index (= corpus tile indices)
    scores: np.ndarray  # float32 inner products (cosine similarity for unit descriptors)
    mode: str  # MODE_GLOBAL, MODE_PRIOR or MODE_PRIOR_EMPTY_GLOBAL
    candidates: int  # tiles that competed

    @property
    def global_search(self) -> bool:
        """True when every tile competed (no prior, or a prior with no tile in its radius)."""
        return self.mode != MODE_PRIOR


def tiles_within(tile_centres_enu_m: np.ndarray, prior_enu_m, prior_radius_m: float) -> np.ndarray:
    """Indices [M] int64 of tiles whose centre [N x 2] lies within prior_radius_m of prior_enu_m [2]."""
    offsets_m = np.asarray(tile_centres_enu_m, dtype=float)[:, :2] - np.asarray(prior_enu_m, dtype=float)[:2]
    return np.flatnonzero(np.einsum("ij,ij->i", offsets_m, offsets_m) <= prior_radius_m**2).astype(np.int64)


def search(index, query: np.ndarray, k: int, tile_centres_enu_m: np.ndarray | None = None,
           prior_enu_m: np.ndarray | None = None, prior_radius_m: float | None = None) -> RetrievalResult:
    """Top-k tiles for query descriptors [D] or [B x D] (unit L2, float32).

    ``index``: a FAISS index, or a corpus' TileSearch (which holds the tile centres: tile_centres_enu_m is
    then not needed and not used). The prior (prior_enu_m [2], prior_radius_m) and tile_centres_enu_m
    [N x 2] are in the corpus' ENU frame; with a FAISS index give all three or none.
    """
    if not isinstance(index, faiss.Index):  # a TileSearch: the geo grid makes the prior exact for any index
        return index.search(query, k, prior_enu_m, prior_radius_m)
    single = np.ndim(query) == 1
    queries = np.ascontiguousarray(np.atleast_2d(query), dtype=np.float32)
    prior_args = (tile_centres_enu_m is not None, prior_enu_m is not None, prior_radius_m is not None)
    if any(prior_args) and not all(prior_args):
        raise ValueError("a prior needs tile_centres_enu_m, prior_enu_m and prior_radius_m together")
    mode, params, candidates = MODE_GLOBAL, None, index.ntotal
    if all(prior_args):
        if not isinstance(index, faiss.IndexFlat):
            raise ValueError(f"a prior on a {type(index).__name__} would only see the cells it probes: search the "
                             "corpus' tile_search instead")
        selected = tiles_within(tile_centres_enu_m, prior_enu_m, prior_radius_m)
        if len(selected):
            mode, candidates = MODE_PRIOR, len(selected)
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(selected))
        else:
            mode = MODE_PRIOR_EMPTY_GLOBAL
    # Asking for no more than the candidates keeps FAISS' -1 padding out of the result.
    k = min(int(k), candidates)
    if k <= 0:
        empty = np.zeros((len(queries), 0))
        return RetrievalResult(empty.astype(np.int64)[0] if single else empty.astype(np.int64),
                               empty.astype(np.float32)[0] if single else empty.astype(np.float32), mode, candidates)
    scores, indices = index.search(queries, k, params=params)
    if single:
        found = indices[0] >= 0  # an IVF index pads with -1 when its probed cells hold fewer than k tiles
        scores, indices = scores[0][found], indices[0][found]
    return RetrievalResult(indices.astype(np.int64), scores.astype(np.float32), mode, candidates)
