"""How each camera frame of a replay ended, from the stages' timing records: the input of the report page.

Every stage publishes one StageTiming record per frame it handled, saying whether it forwarded the frame.
A frame ended at the first stage that did not forward it (the filter never forwards: there it ends as the
filter's outcome, ``accepted`` when the fix was fused). A frame that a stage forwarded but the next stage
never reported (lost in delivery, or still queued at the end of the clip) ends as ``unreported`` at that next
stage. The visual fix's error against ground truth is attached by stamp where it is known.
"""
from __future__ import annotations

import math
from collections import defaultdict

from gps_denied_nav.core.stage_timing import STAGES, TimingRecord


def frame_log(timing_records: list[TimingRecord], visual_fix_t_s, visual_fix_error_m=None) -> list[dict]:
    """One dict per frame with a record, in stamp order: ``{"stamp_s", "stage", "outcome", "error_m"?}``.

    visual_fix_t_s [F] s: stamps of the visual fixes; visual_fix_error_m [F] m (or None): their horizontal
    errors against ground truth, NaN where unknown.
    """
    by_frame: dict[float, dict[str, TimingRecord]] = defaultdict(dict)
    for r in timing_records:
        by_frame[round(r.stamp_s, 6)][r.stage] = r
    errors = {}
    if visual_fix_error_m is not None:
        errors = {round(float(t), 6): float(e) for t, e in zip(visual_fix_t_s, visual_fix_error_m)
                  if math.isfinite(e)}
    entries = []
    for stamp in sorted(by_frame):
        records = by_frame[stamp]
        seen = [s for s in STAGES if s in records]
        if not seen:
            continue
        ended = next((records[s] for s in seen if not records[s].forwarded), None)
        if ended is not None:
            stage, outcome = ended.stage, ended.outcome
        else:
            after = STAGES.index(seen[-1]) + 1
            stage, outcome = (STAGES[after] if after < len(STAGES) else seen[-1]), "unreported"
        entry = {"stamp_s": float(records[seen[0]].stamp_s), "stage": stage, "outcome": outcome}
        if stamp in errors:
            entry["error_m"] = errors[stamp]
        entries.append(entry)
    return entries
