"""The ESKF correction step: chi-square gating, Joseph-form update, error injection and reset.

Kept apart from the filter's bookkeeping so that it is one pure function of (x, P, measurement): the
live path and the replay after a delayed fix call exactly the same code. The Joseph form
P = (I-KH) P (I-KH)^T + K R K^T stays symmetric positive semi-definite for any gain, including the
slightly suboptimal gains that rounding produces when a precise fix meets a diffuse prior (a
reinitialised baro offset, a position after an outage), where the short form (I-KH)P can lose
definiteness (Solà 2017 §6.1, eq. 274-276 and the remark that follows them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import chdtri  # inverse chi-square survival; scipy.stats would add ~1 s and ~40 MB per process

from gps_denied_nav.core.eskf_measurements import Measurement
from gps_denied_nav.core.eskf_state import E_ATT, ERROR_DIM, inject_error, reset_jacobian

_IDENTITY = np.eye(ERROR_DIM)


class ChiSquareGate:
    """Innovation gate: accept when NIS = νᵀS⁻¹ν <= chi2.ppf(probability, dof).

    The quantiles are computed once here for every dof a measurement may have (scipy's ppf is a
    root-find, far too slow for a per-measurement call).
    """

    def __init__(self, probability: float, max_dof: int = 8):
        if not 0.0 < probability < 1.0:
            raise ValueError(f"gate probability must be in (0, 1), got {probability}")
        self.probability = probability
        self._thresholds = tuple(float(chdtri(dof, 1.0 - probability)) for dof in range(1, max_dof + 1))

    def threshold(self, dof: int) -> float:
        return self._thresholds[dof - 1]


@dataclass(frozen=True)
class CorrectionResult:
    """Outcome of one correction: new nominal ``x`` [17] and ``P`` [16x16] (unchanged if rejected)."""

    x: np.ndarray
    P: np.ndarray
    accepted: bool
    nis: float
    innovation_cov: np.ndarray


def correct(x: np.ndarray, P: np.ndarray, measurement: Measurement, gate_threshold: float) -> CorrectionResult:
    """Gate, then fuse ``measurement`` into (x [17], P [16x16]); ``gate_threshold=inf`` disables gating."""
    H, R, nu = measurement.H, measurement.R, measurement.residual
    PHt = P @ H.T
    S = H @ PHt + R
    S = 0.5 * (S + S.T)
    # S is at most 6x6 and symmetric positive definite: one explicit inverse serves NIS and gain.
    try:
        S_inv = np.linalg.inv(S)
    except np.linalg.LinAlgError:   # a zero-noise measurement of an already certain state: nothing to learn
        return CorrectionResult(x, P, False, float("inf"), S)
    nis = float(nu @ S_inv @ nu)
    if not np.isfinite(nis) or nis > gate_threshold:
        return CorrectionResult(x, P, False, nis, S)
    K = PHt @ S_inv
    dx = K @ nu
    I_KH = _IDENTITY - K @ H
    P_new = I_KH @ P @ I_KH.T + K @ R @ K.T
    G = reset_jacobian(dx[E_ATT])
    P_new = G @ P_new @ G.T
    return CorrectionResult(inject_error(x, dx), 0.5 * (P_new + P_new.T), True, nis, S)
