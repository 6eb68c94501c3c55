"""``report.html`` beside ``report.json``: one self-contained page a person can read, for a replay or a locate run.

report.json is the contract that scripts read; this page is for the person who has to judge a run: what was
run and where, the headline numbers with their caveats, the plots the run wrote, how every camera frame ended
(a timeline and counts per reason), where the time went per stage, and the worst frames or photos with the
gate that decided them. The page is a single file (inline CSS, images as data URIs, charts as inline SVG), so
it survives being mailed, attached to CI or archived without the folder around it.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from gps_denied_nav.core.report_html_parts import (cards, esc, fmt, gallery_item, img, is_accepted, legend, page,
                                                   reason_key, section, table, timeline_svg, worst_first)

WORST_FRAMES_SHOWN = 6
PHOTOS_SHOWN = 48  # thumbnails inline: a survey of hundreds would make a page of hundreds of MB
RENDERED_CAVEAT = ("These frames were rendered from the corpus' own raster (and terrain), so the images match the "
                   "map far better than a real camera would: the accuracy below is an upper bound, not what a real "
                   "flight will see.")


def _percent(value) -> str:
    return fmt(None if value is None else 100.0 * value, 1, "%")


def _nees(value, expected: int) -> str:
    return f"{fmt(value, 2)} (expect {expected})" if value is not None else "–"


def write_replay_html(out_dir, report: dict, frame_log: list[dict], subject: str = "") -> Path:
    """Write ``out_dir/report.html`` for a replay; returns its path.

    report: report.json's object. ``report["imagery"]``, when present, says where the frames came from and
    replaces the upper-bound caveat for rendered frames. frame_log: one dict per camera frame, in time order,
    ``{"stamp_s", "stage", "outcome", "error_m"?, "inliers"?, "images"?: {name: path or PNG/JPEG bytes}}``
    (``replay.frame_log``); relative image paths are under out_dir. subject: what was replayed (clip, corpus).
    trajectory.png and error_over_time.png in out_dir are embedded when they exist.
    """
    out = Path(out_dir)
    mode = report.get("mode") or "unknown"
    body = [_replay_header(report, subject, mode)]
    imagery = report.get("imagery")
    body.append(f"<p class=\"sub\">Imagery: {esc(imagery)}</p>" if imagery
                else f"<div class=\"warn\"><b>Upper bound.</b> {esc(RENDERED_CAVEAT)}</div>")
    body.append(section("summary", "Summary", _replay_cards(report)))
    body.append(section("timeline", "Fix timeline: how each camera frame ended", _timeline(report, frame_log)))
    figures = "".join(img(out / name, alt, css_class="wide") for name, alt in (
        ("trajectory.png", "trajectory over the map: fused estimate, visual fixes, ground truth"),
        ("error_over_time.png", "horizontal error over time with the 3-sigma bound")))
    body.append(section("figures", "Trajectory over the map; error over time with its 3σ bound",
                        f"<div class=\"figs\">{figures}</div>" if figures else "<p>No plots were written.</p>"))
    body.append(section("timing", "Per-stage timing", _timing(report.get("timing"))))
    body.append(section("worst-frames", "Worst frames", _worst_frames(frame_log, out)))
    path = out / "report.html"
    path.write_text(page(f"Replay report ({mode})", "".join(body)), encoding="utf-8")
    return path


def _replay_header(report: dict, subject: str, mode: str) -> str:
    m = report.get("machine") or {}
    load = m.get("load_avg_1_5_15") or []
    machine = (f"{m.get('cpu_model', '?')}, {m.get('cores', '?')} cores, {m.get('system', '?')}, "
               f"Python {m.get('python', '?')}" + (f", load {load[0]:.2f} at start" if load else ""))
    run = (f"{mode} replay at rate {fmt(report.get('rate'), 2)}, {report.get('host', 'graph host unknown')}, "
           f"{fmt(report.get('wall_s'), 1, 's')} wall")
    denied = report.get("time_gnss_denied_s")
    scored = ("scored over the GNSS-denied part: " + fmt(denied, 1, "s") if denied is not None
              else "scored over the whole flight")
    title = f"Replay: {subject}" if subject else "Replay report"
    return (f"<header><h1>{esc(title)}</h1><div class=\"sub\">{esc(run)}; {esc(scored)}</div>"
            f"<div class=\"sub\">Machine: {esc(machine)}</div></header>")


def _replay_cards(report: dict) -> str:
    g = report.get
    latency = f"{fmt(g('latency_ms_p50'), 0)} / {fmt(g('latency_ms_p95'), 0)} ms"
    return cards([
        ("frames", fmt(g("frames"))), ("fixes accepted", fmt(g("fixes_accepted"))),
        ("fix rate", _percent(g("fix_rate"))), ("RMSE, fused (horizontal)", fmt(g("rmse_m"), 3, "m")),
        ("CEP95, fused", fmt(g("cep95_m"), 3, "m")), ("max error, fused", fmt(g("max_error_m"), 3, "m")),
        ("vertical RMSE", fmt(g("vertical_rmse_m"), 3, "m")),
        ("RMSE, visual fixes", fmt(g("visual_fix_rmse_m"), 3, "m")),
        ("NEES horizontal mean", _nees(g("nees_horizontal_mean"), 2)),
        ("NEES 3-D position mean", _nees(g("nees_position_3d_mean"), 3)),
        ("NEES velocity mean", _nees(g("nees_velocity_mean"), 3)),
        ("NEES attitude mean", _nees(g("nees_attitude_mean"), 3)),
        ("latency p50 / p95", latency)])


def _timeline(report: dict, frame_log: list[dict]) -> str:
    lost = report.get("gnss_lost_s")
    strip = timeline_svg(frame_log, lost, "GNSS lost")
    frames = report.get("frames")
    note = ""
    if isinstance(frames, int) and frames != len(frame_log):
        note = (f"<p class=\"sub\">{len(frame_log)} frames have stage records, of {frames} camera frames in the "
                "clip; the others never reached a stage.</p>")
    return strip + legend(frame_log) + note


def _timing(timing: dict | None) -> str:
    if not timing:
        return "<p>No stage timing was recorded.</p>"
    rows = []
    for stage, s in timing.get("stages", {}).items():
        outcomes = ", ".join(f"{k} {v}" for k, v in (s.get("outcomes") or {}).items())
        steps = list((s.get("steps_ms") or {}).items()) + [("(total)", s.get("total_ms") or {})]
        for i, (step, st) in enumerate(steps):
            rows.append([stage if i == 0 else "", step, fmt(st.get("p50"), 1), fmt(st.get("p95"), 1),
                         fmt(st.get("n")), outcomes if i == 0 else ""])
    stages = table(["stage", "step", "p50 ms", "p95 ms", "n", "outcomes"], rows, numeric_columns=(2, 3, 4))
    delivery = table(["between stages", "p50 ms", "p95 ms", "n"],
                     [[pair, fmt(st.get("p50"), 1), fmt(st.get("p95"), 1), fmt(st.get("n"))]
                      for pair, st in (timing.get("delivery_ms") or {}).items()], (1, 2, 3))
    return (f"{stages}<p class=\"sub\">Delivery: the next stage's receive time minus the previous stage's done "
            f"time (DDS, executor, GIL).</p>{delivery}")


def _worst_frames(frame_log: list[dict], out: Path) -> str:
    chosen = worst_first(frame_log, WORST_FRAMES_SHOWN)
    if not chosen:
        return "<p>Every frame was accepted and no errors are known.</p>"
    t0 = min(float(e["stamp_s"]) for e in frame_log)
    items = []
    for e in chosen:
        rows = [("decided by", reason_key(e)), ("stamp", f"{float(e['stamp_s']):.3f} s")]
        rows += [("error", fmt(e.get("error_m"), 2, "m"))] if e.get("error_m") is not None else []
        rows += [("inliers", fmt(e.get("inliers")))] if e.get("inliers") is not None else []
        caption = f"t = {float(e['stamp_s']) - t0:.2f} s: {e.get('outcome', '?')}"
        items.append(gallery_item(caption, rows, e.get("images"), out, not is_accepted(e)))
    return ("<p class=\"sub\">Failures first (one of each reason before repeats), then the largest errors.</p>"
            f"<div class=\"gallery\">{''.join(items)}</div>")


def _sigma_m(photo: dict) -> float | None:
    """Horizontal 1-sigma of a fix (RMS over east and north) from its 3x3 covariance, m."""
    cov = photo.get("cov_enu_m2")
    if not cov or len(cov) != 9 or cov[0] is None or cov[4] is None:
        return None
    return math.sqrt(max(0.0, 0.5 * (cov[0] + cov[4])))


def _photo_rank(photo: dict) -> tuple:
    """Failures first, then the largest error; fixes that could not be scored (no photo GPS) last."""
    if not photo.get("accepted"):
        return (0, 0.0)
    error = photo.get("error_m")
    return (2, 0.0) if error is None else (1, -float(error))


def write_locate_html(out_dir, report: dict, photos: list[dict], thumbnails: dict[str, bytes] | None = None,
                      subject: str = "") -> Path:
    """Write ``out_dir/report.html`` for ``gdn locate``; returns its path.

    report: report.json's object (``locate_report.score_fixes``); photos: locate.json's "photos" records (a
    ``PhotoFix`` as a dict plus metadata_problems, gps, error_m, error_en_m, nees); thumbnails: JPEG/PNG bytes
    by photo file name (or by the record's "photo" string). errors.png in out_dir is embedded when it exists.
    """
    out = Path(out_dir)
    thumbnails = thumbnails or {}
    g = report.get
    bounds = g("nees_bounds_95")
    nees = fmt(g("nees_mean"), 2) + (f" (95 %: {fmt(bounds[0], 2)}–{fmt(bounds[1], 2)})" if bounds else "")
    summary = cards([
        ("photos", fmt(g("photos"))), ("fixes accepted", fmt(g("fixes_accepted"))),
        ("fix rate", _percent(g("fix_rate"))),
        ("RMSE vs photo GPS", fmt(g("rmse_m"), 2, "m")), ("CEP50", fmt(g("cep50_m"), 2, "m")),
        ("CEP95", fmt(g("cep95_m"), 2, "m")), ("max error", fmt(g("max_error_m"), 2, "m")), ("NEES mean", nees),
        ("fixes beyond 3σ", fmt(g("fixes_beyond_3sigma"))),
        ("reference σ (photo GPS)", fmt(g("reference_sigma_m"), 1, "m"))])
    reasons = Counter("accepted" if p.get("accepted") else str(p.get("reason", "?")).split(":")[0] for p in photos)
    counts = esc(", ".join(f"{k}: {n}" for k, n in reasons.most_common()))
    title = f"Photo geolocation: {subject}" if subject else "Photo geolocation report"
    header = (f"<header><h1>{esc(title)}</h1><div class=\"sub\">Each photo located against the corpus from its "
              "metadata and the map alone; its own GPS, a consumer receiver's, is only the reference it is scored "
              "against.</div></header>")
    body = [header, section("summary", "Summary", f"{summary}<p>How the photos ended: {counts}</p>")]
    errors_png = img(out / "errors.png", "error per photo against its GPS, with the claimed 3-sigma", css_class="wide")
    body.append(section("errors", "Error per photo and its claimed 3σ", errors_png or "<p>No photo was scored.</p>"))
    ranked = sorted(photos, key=_photo_rank)
    body.append(section("photos", "Per photo", _photo_table(ranked)))
    body.append(section("gallery", "Photos, worst first", _photo_gallery(ranked, thumbnails)))
    path = out / "report.html"
    path.write_text(page("Photo geolocation report", "".join(body)), encoding="utf-8")
    return path


def _photo_table(photos: list[dict]) -> str:
    rows = []
    for p in photos:
        nees = p.get("nees")
        nees_cell = ("html", f"<span class=\"bad\">{fmt(nees, 2)}</span>") if nees is not None and nees > 9.0 \
            else fmt(nees, 2)
        fixed = "yes" if p.get("accepted") else ("html", "<span class=\"bad\">no</span>")
        rows.append([Path(str(p.get("photo", "?"))).name, fixed, fmt(p.get("error_m"), 2), fmt(_sigma_m(p), 2),
                     nees_cell, fmt(p.get("heading_vs_metadata_deg"), 1), fmt(p.get("inliers")), p.get("reason", "")])
    return table(["photo", "fixed", "error m", "σ m", "NEES", "heading − metadata °", "inliers", "reason"], rows,
                 (2, 3, 4, 5, 6))


def _photo_gallery(photos: list[dict], thumbnails: dict[str, bytes]) -> str:
    items = []
    for p in photos[:PHOTOS_SHOWN]:
        name = Path(str(p.get("photo", "?"))).name
        thumb = thumbnails.get(name) or thumbnails.get(str(p.get("photo")))
        rows = [("decided by", p.get("reason", "?")), ("error", fmt(p.get("error_m"), 2, "m")),
                ("σ", fmt(_sigma_m(p), 2, "m")), ("NEES", fmt(p.get("nees"), 2)), ("inliers", fmt(p.get("inliers")))]
        items.append(gallery_item(name, rows, {"photo": thumb} if thumb else None, None, not p.get("accepted")))
    more = len(photos) - PHOTOS_SHOWN
    note = f"<p class=\"sub\">{more} more photos are in the table above.</p>" if more > 0 else ""
    return f"<div class=\"gallery\">{''.join(items)}</div>{note}"
