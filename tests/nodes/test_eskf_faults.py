"""Fault injection: the reference flight's sensors plus the visual fixes the whole graph produced for it,
fed to the real filter node's callbacks in log order, once clean and once with each single fault of
replay.faults. Every fault must leave a filter that recovers: fixes claimed late after it within 50 m,
the run ending within 5 m, at least half the clean run's claims (the full-graph lockstep version over DDS
is benchmarks/eval_faults.py). Direct callbacks keep it deterministic and fast; outputs are tapped at
the node's publishers (the messages are published over DDS as well)."""
from __future__ import annotations

import pytest
from rclpy.lifecycle import TransitionCallbackReturn

from gps_denied_nav.core.report import GeoTrack
from gps_denied_nav.core.report_state import state_error_series
from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.conversions import stamp_to_s
from gps_denied_nav.nodes.eskf_node import EskfNode
from gps_denied_nav.replay import faults
from gps_denied_nav.replay.session import truth_states
from gps_denied_nav.sim.clip import read_ground_truth
from rclpy_harness import ros_context

FAULT_AT_S = 14.0  # after GNSS is lost (10 s), with 26 s of flight left to recover in
FIX_LATENCY_NS = 250_000_000  # visual fixes reach the filter this long after their exposure


class Tap:
    """Keeps what a publisher publishes, then publishes it."""

    def __init__(self, publisher):
        self.publisher, self.messages = publisher, []

    def publish(self, msg) -> None:
        self.messages.append(msg)
        self.publisher.publish(msg)


@pytest.fixture(scope="module")
def flight(short_clip, reference_replay):
    sensors = faults.read_messages(short_clip, {names.IMU, names.BARO, names.GNSS_FIX})
    fixes = faults.read_messages(reference_replay / "outputs.mcap", {names.VISUAL_FIX})
    for m in fixes:
        m.t_ns = int(stamp_to_s(m.msg.header.stamp) * 1e9) + FIX_LATENCY_NS
    truth = GeoTrack.from_arrays(*read_ground_truth(short_clip))
    return sorted(sensors + fixes, key=lambda m: m.t_ns), truth, truth_states(short_clip, truth)


def run_filter(messages):
    with ros_context({}):
        node = EskfNode()
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        node.fix_pub, node.odom_pub = Tap(node.fix_pub), Tap(node.odom_pub)
        callbacks = {names.IMU: node._on_imu, names.BARO: node._on_baro, names.GNSS_FIX: node._on_gnss,
                     names.VISUAL_FIX: node._on_visual_fix}
        for m in messages:
            callbacks[m.topic](m.msg)
        counts = node.status.snapshot()
        level, message = node.health(node.filter, node.imu_gaps)
        frame = node.frame
        node.destroy_node()
    return node.fix_pub.messages, node.odom_pub.messages, counts, (level, message), frame


@pytest.fixture(scope="module")
def clean(flight):
    messages, truth, truth_track = flight
    fixes, odoms, _counts, _health, frame = run_filter(messages)
    score = faults.score_fault("clean", faults.fault_time_s(messages, "imu_accel_1e12", FAULT_AT_S), fixes, truth)
    assert not score.problems(score.claimed_after) and score.claimed_after > 300, score
    # The same window's NEES shares without a gap: what the gap is held to (the reference flight's attitude is
    # overconfident on its own, by 2-3x in NEES depending on the replay's fixes: a limit the README states).
    inside = faults.nees_after_gap(state_error_series(truth_track, faults.odometry_track(frame, odoms)),
                                   faults.fault_time_s(messages, "imu_gap_2s", FAULT_AT_S))
    return score, inside


@pytest.mark.parametrize("fault", faults.FAULTS)
def test_one_fault_never_ruins_the_flight(fault, flight, clean):
    messages, truth, truth_track = flight
    faulted = faults.faulted_messages(messages, fault, FAULT_AT_S, truth)
    fixes, odoms, counts, health, frame = run_filter(faulted)
    fault_s = faults.fault_time_s(messages, fault, FAULT_AT_S)
    score = faults.score_fault(fault, fault_s, fixes, truth)
    clean_score, clean_inside = clean
    assert not score.problems(clean_score.claimed_after), (score, clean_score, counts)
    assert health[0] != b"\x02", health  # not lost at the end
    refused = {"imu_accel_1e12": "dropped_imu_accel_out_of_range", "imu_gyro_1e12": "dropped_imu_gyro_out_of_range",
               "imu_stamp_2h_ahead": "dropped_imu_stamp_jump", "gnss_first_latitude_200":
               "dropped_gnss_latlon_out_of_range", "visual_fix_nan_heading_variance": "dropped_visual_fix_heading_invalid"}
    if fault in refused:
        assert counts.get(refused[fault]) == 1, counts
    if fault == "visual_fixes_hour_ahead":
        assert counts.get("visual_fixes_received", 0) >= faults.FUTURE_FIXES, counts  # plausible, but too new:
    if fault == "imu_gap_2s":
        # From 2 s after the gap's end, velocity and attitude NEES are back inside the 95 % bound as often as
        # without the gap (the velocity always: it is what the gap's unknown motion costs). The two shares come
        # from separate lockstep replays, which are not bit-exact: one run in five here put the gap's 0.065
        # under the clean one (0.654 vs 0.718), so the margin is 0.1; an attitude the gap ruined falls far lower.
        inside = faults.nees_after_gap(state_error_series(truth_track, faults.odometry_track(frame, odoms)), fault_s)
        assert inside["vel"] >= 0.95 and inside["att"] >= clean_inside["att"] - 0.1, (inside, clean_inside)
