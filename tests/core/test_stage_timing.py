"""Per-frame stage timing: timer arithmetic, the replay summary joining stages by stamp, the text table."""
import time

import pytest

from gps_denied_nav.core.stage_timing import FrameTimer, RollingTimings, TimingRecord, summarize_timing, timing_table


def test_timer_marks_consecutive_steps_and_freezes_done():
    timer = FrameTimer()
    time.sleep(0.02)
    first = timer.mark("queue_wait")
    time.sleep(0.01)
    timer.mark("forward")
    timer.done()
    time.sleep(0.02)
    timer.mark("debug_views")  # side work after the output went out
    assert first >= 19.0
    assert list(timer.steps) == ["queue_wait", "forward", "debug_views"]
    done_ms = 1e3 * (timer.done_wall_s - timer.received_wall_s)
    assert done_ms == pytest.approx(timer.steps["queue_wait"] + timer.steps["forward"], abs=0.01)


def test_mark_parts_splits_a_step_without_counting_it_twice():
    timer = FrameTimer()
    time.sleep(0.03)
    total = timer.mark_parts({"sift": 12.0, "homography": 8.0}, "match_other")
    assert sum(timer.steps.values()) == pytest.approx(total)
    assert timer.steps["sift"] == 12.0 and timer.steps["match_other"] == pytest.approx(total - 20.0)


def test_rolling_timings_percentiles():
    rolling = RollingTimings(window=10)
    for ms in range(100):
        rolling.add({"forward": float(ms)})
    summary = rolling.summary()
    assert summary["forward_ms_p50"] == pytest.approx(94.5)  # only the last 10 frames (90..99)


def _frame(stamp, published, stages):
    """Records of one frame: stages [(stage, outcome, forwarded, received, done, steps)]."""
    return [TimingRecord(stamp, s, o, f, r, d, steps) for s, o, f, r, d, steps in stages]


def test_summary_joins_stages_by_stamp_and_measures_delivery():
    records, published = [], {}
    for k in range(10):
        t, w = 10.0 + 0.5 * k, 1000.0 + k
        published[t] = w
        records += _frame(t, w, [("inference", "forwarded", True, w + 0.002, w + 0.102, {"forward": 100.0}),
                                 ("retrieval", "forwarded", True, w + 0.105, w + 0.106, {"search": 1.0})])
        if k % 2:
            records.append(TimingRecord(t, "matching", "rejected_too_few_inliers", False, w + 0.110, w + 0.300, {}))
        else:
            records += _frame(t, w, [("matching", "forwarded", True, w + 0.110, w + 0.300, {"sift": 150.0}),
                                     ("eskf", "accepted", False, w + 0.301, w + 0.303, {"fusion": 2.0})])
    summary = summarize_timing(records, published)
    assert summary["stages"]["inference"]["steps_ms"]["forward"]["p50"] == pytest.approx(100.0)
    assert summary["stages"]["matching"]["outcomes"] == {"forwarded": 5, "rejected_too_few_inliers": 5}
    assert summary["delivery_ms"]["image->inference"]["p50"] == pytest.approx(2.0, abs=1e-3)
    assert summary["delivery_ms"]["inference->retrieval"]["p50"] == pytest.approx(3.0, abs=1e-3)
    assert summary["delivery_ms"]["matching->eskf"]["n"] == 5
    assert summary["frame_ends"] == {"eskf: accepted": 5, "matching: rejected_too_few_inliers": 5}
    table = timing_table(summary)
    assert "inference" in table and "image->inference" in table and "100.0" in table


def test_summary_of_nothing_is_empty_not_an_error():
    summary = summarize_timing([], {})
    assert summary["stages"]["inference"]["frames"] == 0
    assert summary["delivery_ms"]["image->inference"]["p50"] is None
    assert timing_table(summary)


def test_rolling_timings_summarise_while_another_thread_adds_new_steps():
    """The diagnostics timer summarises while the worker adds; a new step name must not break the iteration."""
    import threading

    from gps_denied_nav.core.stage_timing import RollingTimings

    timings, stop, errors = RollingTimings(), threading.Event(), []

    def add():
        i = 0
        while not stop.is_set():
            timings.add({f"step{i % 500}": 1.0, "forward": 2.0})
            i += 1

    thread = threading.Thread(target=add)
    thread.start()
    try:
        for _ in range(300):
            try:
                timings.summary()
            except RuntimeError as exc:
                errors.append(exc)
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert timings.summary()["forward_ms_p50"] == 2.0
