"""The ESKF's constant-velocity model (flights without an IMU): clock ticks drive it, fixes carry it, and
its covariance stays honest through a turn it does not model."""
import numpy as np
import pytest

from gps_denied_nav.core.eskf import ErrorStateKalmanFilter
from gps_denied_nav.core.eskf_config import EskfConfig
from gps_denied_nav.core.rotations import quat_from_euler, quat_to_rotmat

TICK_S, FIX_PERIOD_S, SIGMA_M = 0.1, 2.0, 1.0


def truth(t_s: float) -> tuple[np.ndarray, float]:
    """10 m/s east for 40 s, a 90 deg turn to the north over 6 s, then north: position (m), heading (rad)."""
    if t_s < 40.0:
        return np.array([10.0 * t_s, 0.0, 50.0]), 0.0
    if t_s < 46.0:
        a = (t_s - 40.0) / 6.0 * np.pi / 2
        r = 60.0 / np.pi * 2  # 10 m/s over a quarter circle in 6 s
        return np.array([400.0 + r * np.sin(a), r * (1 - np.cos(a)), 50.0]), a
    p46, _ = truth(45.999999)
    return p46 + np.array([0.0, 10.0 * (t_s - 46.0), 0.0]), np.pi / 2


def fly(seed: int) -> tuple[list, ErrorStateKalmanFilter]:
    rng = np.random.default_rng(seed)
    f = ErrorStateKalmanFilter(EskfConfig(motion_model="constant_velocity"))
    p0, _ = truth(0.0)
    f.initialize(0.0, p0 + rng.normal(0, SIGMA_M, 3), np.zeros(3), quat_from_euler(0, 0, 0), pos_sigma_m=SIGMA_M,
                 vel_sigma_mps=15.0, att_sigma_rad=(0.01, 0.01, 0.05), accel_bias_sigma_mps2=1e-6,
                 gyro_bias_sigma_radps=1e-6)
    nees = []
    for k in range(1, 901):
        t = k * TICK_S
        f.propagate(t, np.zeros(3), np.zeros(3))
        if k % round(FIX_PERIOD_S / TICK_S) == 0:
            p, yaw = truth(t)
            cov = np.eye(3) * SIGMA_M**2
            f.update_visual_fix(t, p + rng.normal(0, SIGMA_M, 3), cov, yaw + rng.normal(0, 0.02), 0.02**2)
        if t >= 10.0 and k % 5 == 0:
            e = f.pos_enu_m - truth(t)[0]
            nees.append(float(e @ np.linalg.solve(f.covariance[:3, :3], e)))
    return nees, f


def test_constant_velocity_follows_a_survey_with_an_honest_covariance():
    runs = [fly(seed) for seed in range(12)]
    nees = np.mean([r[0] for r in runs], axis=0)
    assert 1.0 < nees.mean() < 4.0, nees.mean()  # 3 dof: ~3 when honest (1.9 measured: the turn is in Q)
    assert np.percentile(nees, 95) < 12.0
    f = runs[0][1]
    dv = f.vel_enu_mps - [0.0, 10.0, 0.0]  # the new leg's velocity, after the turn
    assert np.linalg.norm(dv[:2]) < 1.0 and dv @ np.linalg.solve(f.covariance[3:6, 3:6], dv) < 14.2
    yaw = np.arctan2(quat_to_rotmat(f.q_world_body)[1, 0], quat_to_rotmat(f.q_world_body)[0, 0])
    assert yaw == pytest.approx(np.pi / 2, abs=0.05)


def test_the_motion_model_is_checked():
    with pytest.raises(ValueError, match="motion_model"):
        EskfConfig(motion_model="teleport")
