"""IMU and barometer error models for the simulator: named sensor classes and sample synthesis.

The error model is the one the ESKF assumes (Solà 2017 §5.3): white noise given as a continuous
density (sampled as density/√Δt) plus a bias that starts from a random turn-on value and then does a
random walk. Datasheets give noise densities, turn-on offsets and bias *instability*; they do not give
random-walk densities, so those are chosen to cover in-run thermal drift and stated as such. Samples
are instantaneous values at their stamps (the filter interpolates linearly between them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gps_denied_nav.core.baro import SEA_LEVEL_PRESSURE_PA, altitude_to_pressure_pa
from gps_denied_nav.core.eskf_propagation import GRAVITY_ENU_MPS2, ProcessNoise
from gps_denied_nav.core.rotations import quat_to_rotmat_batch

_DEG = np.pi / 180.0


@dataclass(frozen=True)
class ImuNoiseModel:
    """Accelerometer and gyroscope error figures (body FLU, per axis, 1σ)."""

    name: str
    accel_noise_density_mps2_rthz: float
    accel_bias_random_walk_mps3_rthz: float
    accel_bias_init_sigma_mps2: float
    gyro_noise_density_radps_rthz: float
    gyro_bias_random_walk_radps2_rthz: float
    gyro_bias_init_sigma_radps: float

    @classmethod
    def bmi088_class(cls) -> ImuNoiseModel:
        """Consumer/industrial MEMS, Bosch BMI088 class (the IMU of many small autopilots).

        Datasheet: gyro noise density 0.014 °/s/√Hz (2.4e-4 rad/s/√Hz), bias instability 2 °/h,
        zero-rate offset ±1 °/s; accel noise density ≈175 µg/√Hz (1.7e-3 m/s²/√Hz), zero-g offset
        ±20 mg. Used here: turn-on bias 1σ 0.2 °/s (3.5e-3 rad/s) and 5 mg (0.05 m/s²), i.e. after the
        usual level/gyro calibration; random walks 1e-5 rad/s²/√Hz and 5e-4 m/s³/√Hz (0.03 °/s and
        0.5 mg after 100 s: thermal drift, not the datasheet's instability, dominates in flight).
        """
        return cls("Bosch BMI088 class", accel_noise_density_mps2_rthz=1.7e-3,
                   accel_bias_random_walk_mps3_rthz=5e-4, accel_bias_init_sigma_mps2=0.05,
                   gyro_noise_density_radps_rthz=0.014 * _DEG, gyro_bias_random_walk_radps2_rthz=1e-5,
                   gyro_bias_init_sigma_radps=0.2 * _DEG)

    @classmethod
    def consumer_mems(cls) -> ImuNoiseModel:
        """Consumer MEMS in flight, InvenSense MPU-6000 / ICM-20689 class (hobby autopilots, phones).

        Datasheet: gyro 0.005 °/s/√Hz, accel 400 µg/√Hz (3.9e-3 m/s²/√Hz), zero-rate offset ±20 °/s
        before calibration, large temperature coefficients. In flight, motor vibration behind soft mounts
        dominates the gyro: 0.03 °/s/√Hz (5.2e-4 rad/s/√Hz) is used, twice the BMI088 class. Turn-on bias
        after the boot calibration 1σ 0.25 °/s (4.4e-3 rad/s) and 8 mg (0.08 m/s²); thermal drift as random
        walks of 4e-5 rad/s²/√Hz and 2e-3 m/s³/√Hz, four times the BMI088 class.
        """
        return cls("consumer MEMS (MPU-6000 class)", accel_noise_density_mps2_rthz=3.9e-3,
                   accel_bias_random_walk_mps3_rthz=2e-3, accel_bias_init_sigma_mps2=0.08,
                   gyro_noise_density_radps_rthz=0.03 * _DEG, gyro_bias_random_walk_radps2_rthz=4e-5,
                   gyro_bias_init_sigma_radps=0.25 * _DEG)

    @classmethod
    def tactical_grade(cls) -> ImuNoiseModel:
        """Tactical grade (HG1700/HG1930 class, order of magnitude).

        Angle random walk 0.1 °/√h (2.9e-5 rad/s/√Hz), turn-on gyro bias 3 °/h, instability ~1 °/h
        (random walk 1e-7 rad/s²/√Hz); velocity random walk 0.05 m/s/√h (8.3e-4 m/s²/√Hz), accel bias
        1 mg, random walk 1e-5 m/s³/√Hz.
        """
        return cls("tactical grade", accel_noise_density_mps2_rthz=0.05 / 60.0,
                   accel_bias_random_walk_mps3_rthz=1e-5, accel_bias_init_sigma_mps2=9.8e-3,
                   gyro_noise_density_radps_rthz=0.1 * _DEG / 60.0, gyro_bias_random_walk_radps2_rthz=1e-7,
                   gyro_bias_init_sigma_radps=3.0 * _DEG / 3600.0)

    @classmethod
    def noise_free(cls) -> ImuNoiseModel:
        """Perfect IMU, for tests of the kinematics."""
        return cls("noise free", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class ImuSamples:
    """IMU output [N]: specific force (m/s², body FLU, gravity included), rate (rad/s), true biases."""

    t_s: np.ndarray
    accel_body_mps2: np.ndarray
    gyro_body_radps: np.ndarray
    true_accel_bias: np.ndarray     # [N, 3] m/s²
    true_gyro_bias: np.ndarray      # [N, 3] rad/s


def _random_walk(rng: np.random.Generator, dt_s: np.ndarray, init_sigma: float, density: float) -> np.ndarray:
    """[N, 3] bias: b_0 ~ N(0, init_sigma²), b_k = b_{k-1} + density √Δt_k ξ_k."""
    steps = rng.standard_normal((len(dt_s), 3)) * (density * np.sqrt(dt_s))[:, None]
    steps[0] = rng.standard_normal(3) * init_sigma
    return np.cumsum(steps, axis=0)


def _sample_intervals(t_s: np.ndarray) -> np.ndarray:
    """[N] spacing of each sample (the first one borrows the second's)."""
    dt = np.diff(t_s)
    return np.concatenate([dt[:1], dt]) if len(dt) else np.ones(1)


def synthesize_imu(t_s, accel_world_mps2, q_world_body, omega_body_radps, noise: ImuNoiseModel,
                   rng: np.random.Generator, gravity=GRAVITY_ENU_MPS2) -> ImuSamples:
    """Truth kinematics -> noisy IMU samples.

    ``t_s`` [N] increasing; ``accel_world_mps2`` [N, 3] kinematic acceleration in ENU (no gravity);
    ``q_world_body`` [N, 4] Hamilton [w, x, y, z]; ``omega_body_radps`` [N, 3] body rate (FLU);
    ``gravity`` [3] ENU gravity vector (m/s²). Specific force is R^T (a - g).
    """
    t = np.asarray(t_s, dtype=float)
    R = quat_to_rotmat_batch(np.asarray(q_world_body, dtype=float))
    f_world = np.asarray(accel_world_mps2, dtype=float) - np.asarray(gravity, dtype=float)
    f_body = np.einsum("nji,nj->ni", R, f_world)
    dt = _sample_intervals(t)
    accel_bias = _random_walk(rng, dt, noise.accel_bias_init_sigma_mps2, noise.accel_bias_random_walk_mps3_rthz)
    gyro_bias = _random_walk(rng, dt, noise.gyro_bias_init_sigma_radps, noise.gyro_bias_random_walk_radps2_rthz)
    inv_sqrt_dt = 1.0 / np.sqrt(dt)[:, None]
    accel = (f_body + accel_bias
             + rng.standard_normal((len(t), 3)) * noise.accel_noise_density_mps2_rthz * inv_sqrt_dt)
    gyro = (np.asarray(omega_body_radps, dtype=float) + gyro_bias
            + rng.standard_normal((len(t), 3)) * noise.gyro_noise_density_radps_rthz * inv_sqrt_dt)
    return ImuSamples(t, accel, gyro, accel_bias, gyro_bias)


@dataclass(frozen=True)
class BaroNoiseModel:
    """Barometric altitude errors: white noise (m), bias random walk (m/√s), turn-on offset (m)."""

    name: str
    noise_sigma_m: float
    bias_random_walk_m_rts: float
    bias_init_sigma_m: float

    @classmethod
    def bmp388_class(cls) -> BaroNoiseModel:
        """Bosch BMP388 class on a small UAV: datasheet relative accuracy ±8 Pa (±0.66 m); in flight
        prop-wash and airspeed make ~0.5 m white noise; weather/thermal drift 0.02 m/√s (~1.2 m in an
        hour); turn-on offset vs true altitude 1σ 30 m (weather, datum)."""
        return cls("Bosch BMP388 class", noise_sigma_m=0.5, bias_random_walk_m_rts=0.02, bias_init_sigma_m=30.0)

    @classmethod
    def noise_free(cls) -> BaroNoiseModel:
        return cls("noise free", 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class BaroSamples:
    """Static pressure [N] (Pa) and the true altitude bias [N] (m) it was generated with."""

    t_s: np.ndarray
    pressure_pa: np.ndarray
    true_bias_m: np.ndarray


def synthesize_baro(t_s, altitude_m, noise: BaroNoiseModel, rng: np.random.Generator,
                    sea_level_pressure_pa: float = SEA_LEVEL_PRESSURE_PA) -> BaroSamples:
    """True altitude [N] (m above the pressure reference) -> noisy static pressure via the standard atmosphere."""
    t = np.asarray(t_s, dtype=float)
    dt = _sample_intervals(t)
    steps = rng.standard_normal(len(t)) * noise.bias_random_walk_m_rts * np.sqrt(dt)
    steps[0] = rng.standard_normal() * noise.bias_init_sigma_m
    bias = np.cumsum(steps)
    alt = np.asarray(altitude_m, dtype=float) + bias + rng.standard_normal(len(t)) * noise.noise_sigma_m
    return BaroSamples(t, altitude_to_pressure_pa(alt, sea_level_pressure_pa), bias)


def eskf_process_noise(imu: ImuNoiseModel, baro: BaroNoiseModel) -> ProcessNoise:
    """The filter's process noise matching these sensor models (an honestly tuned filter)."""
    return ProcessNoise(accel_noise_density_mps2_rthz=imu.accel_noise_density_mps2_rthz,
                        gyro_noise_density_radps_rthz=imu.gyro_noise_density_radps_rthz,
                        accel_bias_random_walk_mps3_rthz=imu.accel_bias_random_walk_mps3_rthz,
                        gyro_bias_random_walk_radps2_rthz=imu.gyro_bias_random_walk_radps2_rthz,
                        baro_offset_random_walk_m_rts=baro.bias_random_walk_m_rts)
