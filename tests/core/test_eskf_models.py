"""ESKF building blocks against finite differences: transition Φ, measurement Jacobians, reset, alignment."""
import numpy as np
import pytest

from gps_denied_nav.core.eskf_measurements import (baro_measurement, gnss_measurement, position_measurement,
                                                   visual_fix_measurement, yaw_measurement)
from gps_denied_nav.core.eskf_propagation import (GRAVITY_ENU_MPS2, ProcessNoise, error_transition,
                                                  propagate_covariance, propagate_nominal)
from gps_denied_nav.core.eskf_state import (E_ATT, ERROR_DIM, X_POS, X_QUAT, NominalState, align_roll_pitch,
                                            inject_error, reset_jacobian, yaw_from_velocity)
from gps_denied_nav.core.eskf_update import ChiSquareGate, correct
from gps_denied_nav.core.rotations import (quat_conjugate, quat_from_euler, quat_multiply, quat_to_rotmat,
                                           rotvec_from_quat)

GRAVITY = np.array(GRAVITY_ENU_MPS2)


def _nominal(rng) -> np.ndarray:
    state = NominalState(rng.normal(size=3) * 50, rng.normal(size=3) * 10, quat_from_euler(0.3, -0.2, 2.0),
                         rng.normal(size=3) * 0.05, rng.normal(size=3) * 0.01, 12.0)
    return state.to_vector()


def _error_between(x_ref: np.ndarray, x: np.ndarray) -> np.ndarray:
    """x = x_ref ⊕ δx solved for δx (the inverse of inject_error)."""
    dx = np.empty(ERROR_DIM)
    dx[:6] = x[:6] - x_ref[:6]
    dx[E_ATT] = rotvec_from_quat(quat_multiply(quat_conjugate(x_ref[X_QUAT]), x[X_QUAT]))
    dx[9:] = x[10:] - x_ref[10:]
    return dx


def test_error_transition_matches_finite_differences():
    rng = np.random.default_rng(1)
    x0 = _nominal(rng)
    imu = np.array([[0.8, -0.5, 9.9, 0.3, -0.2, 0.4]])
    dt = np.array([0.02])
    run = propagate_nominal(x0, imu, dt, GRAVITY)
    F = error_transition(run)[0]
    eps = 1e-6
    F_num = np.empty((ERROR_DIM, ERROR_DIM))
    for i in range(ERROR_DIM):
        dx = np.zeros(ERROR_DIM)
        dx[i] = eps
        x1 = propagate_nominal(inject_error(x0, dx), imu, dt, GRAVITY).x[0]
        F_num[:, i] = _error_between(run.x[0], x1) / eps
    # Φ is the truncated series to ½A²Δt², so what differs is O(Δt³) and finite-difference rounding.
    np.testing.assert_allclose(F, F_num, atol=2e-5)


def test_batch_propagation_equals_single_steps():
    rng = np.random.default_rng(2)
    x0 = _nominal(rng)
    imu = np.column_stack([rng.normal(size=(50, 3)) + [0, 0, 9.8], rng.normal(size=(50, 3)) * 0.5])
    dt = rng.uniform(0.002, 0.01, 50)
    batch = propagate_nominal(x0, imu, dt, GRAVITY).x
    x = x0
    for k in range(50):
        x = propagate_nominal(x, imu[k:k + 1], dt[k:k + 1], GRAVITY).x[0]
    np.testing.assert_allclose(batch[-1], x, atol=1e-10)


def test_covariance_propagation_grows_with_the_noise_densities():
    noise = ProcessNoise()
    x0 = _nominal(np.random.default_rng(3))
    imu = np.tile([0.0, 0.0, 9.80665, 0.0, 0.0, 0.0], (100, 1))
    dt = np.full(100, 0.01)
    run = propagate_nominal(x0, imu, dt, GRAVITY)
    out = np.empty((100, ERROR_DIM, ERROR_DIM))
    q_diag = dt[:, None] * noise.variance_rates()
    propagate_covariance(np.zeros((ERROR_DIM, ERROR_DIM)), error_transition(run), q_diag, out)
    # With no initial uncertainty, the gyro bias variance after 1 s is exactly its random walk's.
    assert out[-1][12, 12] == pytest.approx(noise.gyro_bias_random_walk_radps2_rthz**2 * 1.0)
    assert np.all(np.linalg.eigvalsh(out[-1]) > -1e-18)


@pytest.mark.parametrize("model, args", [
    (position_measurement, (np.array([3.0, 4.0]), np.eye(2))),
    (position_measurement, (np.array([3.0, 4.0, 5.0]), np.eye(3))),
    (yaw_measurement, (1.0, 0.01)),
    (baro_measurement, (130.0, 0.25)),
    (visual_fix_measurement, (np.array([3.0, 4.0]), np.eye(2), 2.5, 0.01)),
    (gnss_measurement, (np.array([3.0, 4.0, 5.0]), np.eye(3), np.array([1.0, 2.0, 0.0]), np.eye(3))),
])
def test_measurement_jacobians_match_finite_differences(model, args):
    x0 = _nominal(np.random.default_rng(4))
    m0 = model(NominalState.from_vector(x0), *args)
    eps = 1e-6
    H_num = np.empty_like(m0.H)
    for i in range(ERROR_DIM):
        dx = np.zeros(ERROR_DIM)
        dx[i] = eps
        m1 = model(NominalState.from_vector(inject_error(x0, dx)), *args)
        H_num[:, i] = -(m1.residual - m0.residual) / eps   # residual = z - h(x)
    np.testing.assert_allclose(m0.H, H_num, atol=1e-6)


def test_yaw_residual_is_wrapped():
    state = NominalState.from_vector(_nominal(np.random.default_rng(5)))
    yaw = np.arctan2(*quat_to_rotmat(state.q_world_body)[[1, 0], 0])
    m = yaw_measurement(state, yaw + 2 * np.pi - 0.01, 0.01)
    assert m.residual[0] == pytest.approx(-0.01)


def test_reset_jacobian_and_injection():
    x0 = _nominal(np.random.default_rng(6))
    dx = np.arange(ERROR_DIM) * 1e-3
    x1 = inject_error(x0, dx)
    np.testing.assert_allclose(_error_between(x0, x1), dx, atol=1e-12)
    G = reset_jacobian(np.array([0.0, 0.0, 0.2]))
    np.testing.assert_allclose(G[6:9, 6:9], np.eye(3) - np.array([[0, -0.1, 0], [0.1, 0, 0], [0, 0, 0]]))


def test_correct_is_joseph_stable_and_gated():
    x0 = _nominal(np.random.default_rng(7))
    P = np.diag(np.full(ERROR_DIM, 1e4))
    gate = ChiSquareGate(0.999)
    far = position_measurement(NominalState.from_vector(x0), x0[X_POS] + 1000.0, np.eye(3))
    rejected = correct(x0, P, far, gate.threshold(3))
    assert not rejected.accepted and rejected.nis == pytest.approx(3e6 / (1e4 + 1))
    assert rejected.x is x0 and rejected.P is P
    # A 1e-6 m fix against a 100 m prior: the gain is 1 - 1e-16, where the short form (I-KH)P loses
    # definiteness to rounding and the Joseph form does not.
    tight = position_measurement(NominalState.from_vector(x0), x0[X_POS] + 1.0, np.eye(3) * 1e-12)
    result = correct(x0, P, tight, gate.threshold(3))
    assert result.accepted
    np.testing.assert_allclose(result.x[X_POS], x0[X_POS] + 1.0, atol=1e-6)
    assert np.all(np.linalg.eigvalsh(result.P) > 0.0)
    assert gate.threshold(2) == pytest.approx(13.8155, abs=1e-3)


def test_alignment_helpers():
    g = np.array([0.0, 0.0, 9.80665])
    q = quat_from_euler(0.1, -0.05, 1.0)
    f_body = quat_to_rotmat(q).T @ g
    assert align_roll_pitch(np.tile(f_body, (10, 1))) == pytest.approx((0.1, -0.05), abs=1e-12)
    assert yaw_from_velocity(np.array([0.0, 5.0, 1.0])) == pytest.approx(np.pi / 2)
