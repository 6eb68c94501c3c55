"""Property tests of the filter's public API: whatever sequence of inputs arrives (finite, absurd, NaN,
out of order, far in the future), the filter never raises, never holds a non-finite state it calls
"tracking", and keeps its covariance symmetric positive definite while it tracks."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gps_denied_nav.core.eskf import EskfConfig, ErrorStateKalmanFilter
from gps_denied_nav.core.eskf_diagnostics import UpdateStatus
from gps_denied_nav.core.eskf_guard import positive_definite

ANY = st.floats(allow_nan=True, allow_infinity=True, width=64)
PLAIN = st.floats(-1e3, 1e3)
# Values an operation may get: ordinary ones mostly, absurd and non-finite ones often enough.
VALUE = st.one_of(PLAIN, PLAIN, ANY, st.sampled_from([1e12, -1e12, 1e-300, 0.0]))
STAMP_STEP = st.one_of(st.just(0.005), st.just(0.005), st.floats(-1.0, 1.0), st.sampled_from([7200.0, -7200.0, 1e9]))


def vec(n):
    return st.lists(VALUE, min_size=n, max_size=n).map(np.array)


OPS = st.one_of(
    st.tuples(st.just("imu"), STAMP_STEP, vec(3), vec(3)),
    st.tuples(st.just("fix"), STAMP_STEP, vec(2), VALUE, VALUE, VALUE),
    st.tuples(st.just("baro"), STAMP_STEP, VALUE, VALUE),
    st.tuples(st.just("gnss"), STAMP_STEP, vec(3), VALUE),
    st.tuples(st.just("reset"), STAMP_STEP, vec(3), VALUE, VALUE, VALUE),
)


def apply(f: ErrorStateKalmanFilter, op, t_s: float) -> float:
    kind, step = op[0], op[1]
    stamp = t_s + step
    if kind == "imu":
        f.propagate(stamp, np.array([0.0, 0.0, 9.80665]) + op[2] * 1e-2, op[3] * 1e-3)
        return max(t_s, stamp) if stamp - t_s <= f.config.history_s else t_s
    if kind == "fix":
        f.update_visual_fix(stamp, op[2], np.eye(2) * op[3], op[4], op[5])
    elif kind == "baro":
        f.update_baro(stamp, 100.0 + op[2], op[3])
    elif kind == "gnss":
        f.update_gnss(stamp, op[2], np.eye(3) * op[3])
    else:
        f.reinitialize_position(stamp, op[2], np.eye(3) * op[3], yaw_rad=op[4], yaw_var_rad2=op[5],
                                vel_sigma_mps=abs(op[5]) if np.isfinite(op[5]) else 1.0)
    return t_s


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, min_size=1, max_size=40))
def test_no_sequence_of_inputs_poisons_the_filter(ops):
    f = ErrorStateKalmanFilter(EskfConfig())
    f.initialize(0.0, [0.0, 0.0, 100.0], [5.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0])
    t_s = 0.0
    for op in ops:
        t_s = apply(f, op, t_s)
        if not f.needs_reinit:
            x, P = f.state, f.covariance
            assert np.all(np.isfinite(np.concatenate([x.pos_enu_m, x.vel_enu_mps, x.q_world_body])))
            assert positive_definite(P), "tracking with a covariance that is not positive definite"
    d = f.diagnostics
    assert d.needs_reinit == (f.reinit_reason.value != "none")


@settings(max_examples=200, deadline=None)
@given(vec(2), VALUE, VALUE, VALUE)
def test_a_visual_fix_is_accepted_only_with_finite_values_and_positive_noise(pos, var, yaw, yaw_var):
    f = ErrorStateKalmanFilter(EskfConfig())
    f.initialize(0.0, [0.0, 0.0, 100.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], pos_sigma_m=1e4)
    f.propagate(0.01, [0.0, 0.0, 9.80665], [0.0, 0.0, 0.0])
    outcome = f.update_visual_fix(0.005, pos, np.eye(2) * var, yaw, yaw_var)
    if outcome.status is UpdateStatus.ACCEPTED:
        assert np.all(np.isfinite(pos)) and var > 0.0 and np.isfinite(yaw) and 0.0 < yaw_var < np.inf
        assert positive_definite(f.covariance)
    else:
        np.testing.assert_array_equal(f.state.pos_enu_m[:2], np.zeros(2))
