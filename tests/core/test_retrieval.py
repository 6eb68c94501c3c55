"""Retrieval: exact top-K against brute force, prior-restricted search and its global fallback."""
from __future__ import annotations

import faiss
import numpy as np
import pytest

from gps_denied_nav.core.retrieval import MODE_GLOBAL, MODE_PRIOR, MODE_PRIOR_EMPTY_GLOBAL, search, tiles_within


@pytest.fixture(scope="module")
def corpus_like():
    """400 unit descriptors (64-d) on a 20 x 20 grid of tile centres every 50 m."""
    rng = np.random.default_rng(0)
    descriptors = rng.normal(size=(400, 64)).astype(np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(64)
    index.add(descriptors)
    east, north = np.meshgrid(np.arange(20) * 50.0, np.arange(20) * -50.0)
    return index, descriptors, np.column_stack([east.ravel(), north.ravel()])


def noisy(descriptors, rows, rng, sigma=0.05):
    queries = descriptors[rows] + sigma * rng.normal(size=(len(rows), descriptors.shape[1])).astype(np.float32)
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


def test_global_search_matches_brute_force(corpus_like):
    index, descriptors, _ = corpus_like
    queries = noisy(descriptors, np.arange(0, 400, 37), np.random.default_rng(1))
    result = search(index, queries, 10)
    assert result.mode == MODE_GLOBAL and result.candidates == 400 and result.global_search
    assert result.indices.shape == result.scores.shape == (len(queries), 10)
    brute = queries @ descriptors.T
    np.testing.assert_array_equal(result.indices, np.argsort(-brute, axis=1)[:, :10])
    np.testing.assert_allclose(result.scores, np.sort(brute, axis=1)[:, ::-1][:, :10], atol=1e-5)
    single = search(index, queries[0], 3)
    assert single.indices.shape == (3,) and single.indices[0] == 0


def test_prior_never_returns_tiles_outside_the_radius(corpus_like):
    index, descriptors, centres = corpus_like
    rng = np.random.default_rng(2)
    for _ in range(50):
        prior = rng.uniform([-100, -1050], [1050, 100])
        radius = rng.uniform(30, 300)
        inside = tiles_within(centres, prior, radius)
        # The true tile is often outside the radius: the restriction must win over the descriptor.
        query = noisy(descriptors, rng.integers(0, 400, 1), rng)[0]
        result = search(index, query, 10, centres, prior, radius)
        if len(inside) == 0:
            assert result.mode == MODE_PRIOR_EMPTY_GLOBAL and len(result.indices) == 10
            continue
        assert result.mode == MODE_PRIOR and result.candidates == len(inside)
        assert len(result.indices) == min(10, len(inside)) and np.all(result.indices >= 0)
        assert np.all(np.linalg.norm(centres[result.indices] - prior, axis=1) <= radius)
        brute = descriptors[inside] @ query
        assert result.indices[0] == inside[np.argmax(brute)]


def test_prior_keeps_the_right_tile_against_a_far_look_alike(corpus_like):
    index, descriptors, centres = corpus_like
    look_alike = descriptors.copy()
    look_alike[399] = descriptors[21]  # an identical tile 1 km away
    twin_index = faiss.IndexFlatIP(64)
    twin_index.add(look_alike)
    query = noisy(descriptors, np.array([21]), np.random.default_rng(3))[0]
    assert set(search(twin_index, query, 2).indices) == {21, 399}
    result = search(twin_index, query, 2, centres, centres[21] + [10.0, -20.0], 200.0)
    assert result.mode == MODE_PRIOR and result.indices[0] == 21 and 399 not in result.indices
    assert not result.global_search


def test_empty_radius_falls_back_to_global_and_prior_args_are_all_or_none(corpus_like):
    index, descriptors, centres = corpus_like
    result = search(index, descriptors[5], 4, centres, np.array([5000.0, 5000.0]), 100.0)
    assert result.mode == MODE_PRIOR_EMPTY_GLOBAL and result.indices[0] == 5 and result.candidates == 400
    assert result.global_search
    with pytest.raises(ValueError, match="together"):
        search(index, descriptors[5], 4, centres, np.array([0.0, 0.0]), None)
