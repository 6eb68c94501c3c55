"""Parameters of the ESKF (one node YAML block maps onto `EskfConfig`), with their sanity checks.

Besides the filter's tuning they bound what the filter will take at all: IMU samples beyond the
sensor's range, stamps further ahead than the filter can wait for, and how much it holds while waiting.
One finite but absurd sample (1e12 m/s², a stamp two hours ahead) used to ruin a flight for good; these
bounds make it a counted refusal instead.
"""
from __future__ import annotations

from dataclasses import astuple, dataclass, field

from gps_denied_nav.core.eskf_propagation import GRAVITY_ENU_MPS2, ConstantVelocityNoise, ProcessNoise

MOTION_MODELS = ("imu", "constant_velocity")

STANDARD_GRAVITY_MPS2 = 9.80665


@dataclass(frozen=True)
class ImuGapModel:
    """What an interval without IMU samples costs: the motion in it is unknown, not the straight line
    between the samples around it. Beyond ``nominal_max_s`` the missing time is modelled as white input
    noise of these densities on top of the sensor's own, so that the variance it adds does not depend on
    how fixes fused inside the gap split it up (an error held over the whole gap, growing with gap², gave
    a 2 s gap split by four fixes a fifth of the variance of the same gap in one piece)."""

    nominal_max_s: float = 0.05               # longer intervals are gaps (10 samples at 200 Hz, 20 at 400 Hz)
    accel_density_mps2_rthz: float = 1.5      # unknown specific force: ~2 m/s of velocity over a 2 s gap
    gyro_density_radps_rthz: float = 0.07     # unknown rate (turn entry and exit): ~0.1 rad over 2 s


@dataclass(frozen=True)
class EskfConfig:
    """Filter parameters."""

    process_noise: ProcessNoise = field(default_factory=ProcessNoise)
    gravity_enu_mps2: tuple[float, float, float] = GRAVITY_ENU_MPS2
    gate_probability: float = 0.999            # chi-square acceptance probability of every gate
    history_s: float = 3.0                     # fixes older than this (vs the newest IMU) are refused
    max_position_cov_trace_m2: float = 2.0e4   # above it the prior is useless for local retrieval
    max_consecutive_visual_rejections: int = 10
    # Plausibility: a sample beyond the sensor's range is a fault, not a measurement (BMI088: ±24 g,
    # ±2000 °/s = 35 rad/s; the default accel range is the common ±16 g setting).
    max_accel_mps2: float = 16.0 * STANDARD_GRAVITY_MPS2
    max_gyro_radps: float = 35.0
    max_speed_mps: float = 150.0               # a state faster than this is diverged (fixed-wing UAV ~40 m/s)
    max_future_s: float = 3.0                  # measurements stamped further ahead of the IMU are refused
    max_pending_events: int = 256              # measurements waiting for the IMU (2 Hz fixes: > 2 min)
    imu_gap: ImuGapModel = field(default_factory=ImuGapModel)
    # "imu": propagate with the IMU's samples; "constant_velocity": with clock ticks, for flights without an
    # IMU (photo clips): position, velocity and heading from the fixes alone.
    motion_model: str = "imu"
    constant_velocity: ConstantVelocityNoise = field(default_factory=ConstantVelocityNoise)

    def __post_init__(self) -> None:
        if not 0.0 < self.gate_probability < 1.0:
            raise ValueError(f"gate_probability must be in (0, 1), got {self.gate_probability}")
        if self.history_s <= 0.0 or self.max_position_cov_trace_m2 <= 0.0:
            raise ValueError("history_s and max_position_cov_trace_m2 must be positive")
        if self.max_consecutive_visual_rejections < 1:
            raise ValueError("max_consecutive_visual_rejections must be >= 1")
        if min(astuple(self.process_noise)) < 0.0 or len(self.gravity_enu_mps2) != 3:
            raise ValueError("process noise densities must be >= 0 and gravity a 3-vector")
        if min(self.max_accel_mps2, self.max_gyro_radps, self.max_speed_mps, self.max_future_s) <= 0.0:
            raise ValueError("IMU range, speed and future-stamp bounds must be positive")
        if self.motion_model not in MOTION_MODELS:
            raise ValueError(f"motion_model must be one of {MOTION_MODELS}, got {self.motion_model!r}")
        if min(astuple(self.constant_velocity)) < 0.0:
            raise ValueError("constant-velocity noise densities must be >= 0")
        if self.max_pending_events < 1 or min(astuple(self.imu_gap)) < 0.0:
            raise ValueError("max_pending_events must be >= 1 and the IMU gap model non-negative")
