"""Which estimate stamps a replay scores: thinned to a fixed rate, and only where ground truth covers them.

Shared by the position scoring (``report``) and the velocity/attitude scoring (``report_state``) so that
both look at the same instants. Thinning makes the metrics independent of how often the filter happened
to publish; truth is interpolated, never extrapolated and never across a gap, so a dropout in the
ground truth cannot invent errors.
"""
from __future__ import annotations

import numpy as np

DEFAULT_MAX_GT_GAP_S = 1.0


def thin_to_rate(t_s: np.ndarray, rate_hz: float | None) -> np.ndarray:
    """Indices [K] of the first sample in each 1/rate_hz bin of sorted stamps t_s [N] (all if rate_hz is None)."""
    t_s = np.asarray(t_s, dtype=float)
    if rate_hz is None or t_s.size == 0:
        return np.arange(t_s.size)
    # Bins centred on multiples of the period: samples published at exactly rate_hz each keep their own
    # bin despite floating-point jitter in the stamps.
    bins = np.floor((t_s - t_s[0]) * rate_hz + 0.5)
    return np.unique(bins, return_index=True)[1]


NEAR_TRUTH_S = 0.05  # a stamp this close to a truth sample is scored against it, whatever the gaps around


def covered_by_truth(truth_t_s: np.ndarray, t_s: np.ndarray, max_gt_gap_s: float = DEFAULT_MAX_GT_GAP_S
                     ) -> np.ndarray:
    """Mask [K] of stamps t_s [K] inside the sorted truth stamps truth_t_s [N] (N >= 1) and not between two
    truth samples more than max_gt_gap_s apart, or within NEAR_TRUTH_S of a truth sample: a photo clip's
    truth (its photos' GPS, seconds apart) scores the estimates published at its photos."""
    gt_t, t = np.asarray(truth_t_s, dtype=float), np.asarray(t_s, dtype=float)
    hi = np.clip(np.searchsorted(gt_t, t, side="left"), 0, gt_t.size - 1)
    lo = np.clip(hi - 1, 0, gt_t.size - 1)
    near = np.minimum(np.abs(gt_t[hi] - t), np.abs(t - gt_t[lo])) <= NEAR_TRUTH_S
    inside = (t >= gt_t[0]) & (t <= gt_t[-1])
    return inside & ((gt_t[hi] - gt_t[lo] <= max_gt_gap_s) | near)


def scored_indices(t_s: np.ndarray, truth_t_s: np.ndarray, rate_hz: float | None,
                   max_gt_gap_s: float = DEFAULT_MAX_GT_GAP_S) -> np.ndarray:
    """Indices [K] into sorted estimate stamps t_s that are scored: thinned to rate_hz, covered by truth."""
    keep = thin_to_rate(t_s, rate_hz)
    return keep[covered_by_truth(truth_t_s, np.asarray(t_s, dtype=float)[keep], max_gt_gap_s)]
