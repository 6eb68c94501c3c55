"""In-flight alignment: a banked turn's tilt, and the GNSS chord's lag, recovered from IMU and velocity."""
from __future__ import annotations

import math

import numpy as np
import pytest
from eskf_truth import banked_circle, constant_velocity

from gps_denied_nav.core.eskf_alignment import align_in_flight, chord_to_current, tilt_from_specific_force
from gps_denied_nav.core.eskf_state import align_roll_pitch
from gps_denied_nav.core.rotations import euler_from_quat, quat_from_euler, quat_to_rotmat
from gps_denied_nav.sim.trajectory import SurveyTrajectory

G = np.array([0.0, 0.0, -9.80665])


def _specific_force_body(truth, i):
    return quat_to_rotmat(truth.q_world_body[i]).T @ (truth.accel_enu_mps2[i] - G)


def test_tilt_from_specific_force_inverts_a_known_tilt():
    roll, pitch = 0.3, -0.2
    f_heading = np.array([1.5, -2.0, 9.5])
    f_body = quat_to_rotmat(quat_from_euler(roll, pitch, 0.0)).T @ f_heading
    assert tilt_from_specific_force(f_body, f_heading) == pytest.approx((roll, pitch), abs=1e-12)


def test_a_banked_turn_is_not_mistaken_for_level_flight():
    truth = banked_circle(np.arange(0.0, 2.0, 0.005), np.zeros(3), radius_m=60.0, speed_mps=12.0)
    i = 100
    roll_true, pitch_true, yaw = euler_from_quat(truth.q_world_body[i])
    assert abs(roll_true) > math.radians(10.0)
    f_b = _specific_force_body(truth, i)
    naive_roll, _ = align_roll_pitch(f_b[None])
    assert abs(naive_roll - roll_true) > math.radians(10.0)       # what levelling alone would claim
    roll, pitch = align_in_flight(f_b, truth.omega_body_radps[i], truth.vel_enu_mps[i], yaw)
    assert (roll, pitch) == pytest.approx((roll_true, pitch_true), abs=math.radians(0.05))


def test_straight_flight_is_plain_levelling():
    truth = constant_velocity(np.arange(0.0, 1.0, 0.01), np.zeros(3), np.array([10.0, 5.0, 1.0]))
    _, pitch_true, yaw = euler_from_quat(truth.q_world_body[0])
    f_b = _specific_force_body(truth, 0)
    assert align_in_flight(f_b, truth.omega_body_radps[0], truth.vel_enu_mps[0], yaw) == pytest.approx(
        align_roll_pitch(f_b[None]), abs=1e-12)


def test_the_chord_of_a_turn_is_turned_forward_by_half_the_baseline():
    truth = banked_circle(np.arange(0.0, 10.0, 0.01), np.zeros(3), radius_m=60.0, speed_mps=12.0)
    i0, i1 = 300, 500   # 2 s apart
    chord = (truth.pos_enu_m[i1] - truth.pos_enu_m[i0]) / 2.0
    v0, v1 = truth.vel_enu_mps[i0], truth.vel_enu_mps[i1]
    turn_rate = 12.0 / 60.0 * np.sign(v0[0] * v1[1] - v0[1] * v1[0])
    v_now, course = chord_to_current(chord, turn_rate, 2.0)
    true_course = math.atan2(truth.vel_enu_mps[i1][1], truth.vel_enu_mps[i1][0])
    assert abs(math.remainder(course - true_course, math.tau)) < math.radians(0.1)
    naive = math.atan2(chord[1], chord[0])
    assert abs(math.remainder(naive - true_course, math.tau)) > math.radians(10.0)


def test_survey_flight_alignment_error_stays_well_inside_the_initial_sigma():
    """Over a survey (constant speed, turns rolled in and out over 3 s, 25° bank, altitude waves) the
    tilt error stays far inside the 0.05 rad the filter starts with; levelling alone is off by the bank."""
    trajectory = SurveyTrajectory.survey(0.0, 0.0, 800.0, 400.0, min_duration_s=120.0, speed_mps=15.0,
                                         max_bank_rad=math.radians(25.0), max_leg_m=300.0)
    truth = trajectory.sample(np.arange(0.0, 120.0, 0.05))
    worst = naive_worst = 0.0
    for i in range(len(truth.t_s)):
        roll_true, pitch_true, yaw = euler_from_quat(truth.q_world_body[i])
        f_b = _specific_force_body(truth, i)
        roll, pitch = align_in_flight(f_b, truth.omega_body_radps[i], truth.vel_enu_mps[i], yaw)
        worst = max(worst, abs(roll - roll_true), abs(pitch - pitch_true))
        naive_worst = max(naive_worst, abs(align_roll_pitch(f_b[None])[0] - roll_true))
    assert worst < 0.02 and naive_worst > math.radians(20.0)   # 0.9° at roll-in, vs 25° levelling


def test_heading_reset_only_for_a_coarse_heading_and_a_strong_precise_fix():
    from gps_denied_nav.core.eskf_alignment import wants_heading_reset

    coarse, fine = math.radians(10.0), math.radians(0.3) ** 2
    assert wants_heading_reset(coarse, fine, 200, align_sigma_rad=0.05, min_inliers=60)
    assert not wants_heading_reset(0.01, fine, 200, align_sigma_rad=0.05, min_inliers=60)  # already aligned
    assert not wants_heading_reset(coarse, fine, 30, align_sigma_rad=0.05, min_inliers=60)  # weak fix
    assert not wants_heading_reset(coarse, math.radians(5.0) ** 2, 200, align_sigma_rad=0.05, min_inliers=60)
