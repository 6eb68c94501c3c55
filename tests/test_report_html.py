"""report.html for replays and for gdn locate: the frame log, what the pages hold, and how Chromium draws them."""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict

import cv2
import numpy as np
import pytest

from gps_denied_nav.core.locate import PhotoFix
from gps_denied_nav.core.report_html import write_locate_html, write_replay_html
from gps_denied_nav.core.report_html_parts import worst_first
from gps_denied_nav.core.stage_timing import TimingRecord, summarize_timing
from gps_denied_nav.replay.frame_log import frame_log

T0_S = 1_700_000_000.0
FRAMES = 60
ACCEPTED_BGR = (0x32, 0x7D, 0x2E)  # #2e7d32, the timeline's accepted colour
FIRST_FAILURE_BGR = (0x2F, 0x2F, 0xD3)  # #d32f2f, the most frequent failure's colour


def _png(seed: int, size=(96, 128)) -> bytes:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size[1], dtype=np.uint8)[None, :, None]
    image = np.clip(ramp + rng.integers(0, 60, (*size, 3)), 0, 255).astype(np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


def _records() -> tuple[list[TimingRecord], list[float], list[float]]:
    """60 frames at 2 Hz: the first initialises the filter, every 7th is rejected by matching, frames 3 and 4
    skipped busy at inference, frame 22 rejected by the filter, the last one forwarded by matching and never
    reported by the filter."""
    records, fix_t_s, fix_error_m = [], [], []
    for i in range(FRAMES):
        t = T0_S + 0.5 * i
        ends = {3: "inference", 4: "inference"}.get(i) or ("matching" if i % 7 == 6 else None)
        for k, stage in enumerate(("inference", "retrieval", "matching", "eskf")):
            received_wall_s = 100.0 + 0.5 * i + 0.06 * k
            if stage == "eskf" and i == FRAMES - 1:
                break
            if stage == ends:
                outcome = "skipped_busy" if stage == "inference" else "rejected_too_few_inliers"
                records.append(TimingRecord(t, stage, outcome, False, received_wall_s, received_wall_s + 0.01))
                break
            if stage == "eskf":
                outcome = {0: "initialised", 22: "rejected"}.get(i, "accepted")
                records.append(TimingRecord(t, stage, outcome, False, received_wall_s, received_wall_s + 0.004,
                                            {"fusion": 4.0}))
                fix_t_s.append(t)
                fix_error_m.append(3.0 if i == 30 else 0.05 + 0.001 * i)
            else:
                records.append(TimingRecord(t, stage, "forwarded", True, received_wall_s, received_wall_s + 0.05,
                                            {"work": 45.0}))
    return records, fix_t_s, fix_error_m


def _replay_report(timing: dict) -> dict:
    """out/demo/replay/report.json, reduced."""
    return {"frames": FRAMES, "fixes_accepted": 44, "fix_rate": 44 / FRAMES, "rmse_m": 0.0566, "cep50_m": 0.0405,
            "cep95_m": 0.108, "visual_fix_rmse_m": 0.0667, "max_error_m": 0.162, "latency_ms_p50": 240.5,
            "latency_ms_p95": 412.6, "wall_s": 100.2, "vertical_rmse_m": 0.0103, "nees_horizontal_mean": 1.60,
            "nees_within_95_frac": 0.98, "time_gnss_denied_s": 20.0, "gnss_lost_s": T0_S + 10.0,
            "nees_velocity_mean": 2.11, "nees_attitude_mean": 4.10, "nees_position_3d_mean": 2.14,
            "mode": "lockstep", "rate": 1.0, "host": "one process", "timing": timing,
            "machine": {"cpu_model": "AMD EPYC", "cores": 2, "load_avg_1_5_15": [1.73, 0.73, 0.28],
                        "system": "Linux 6.18", "python": "3.11.7"}}


@pytest.fixture
def replay_page(tmp_path):
    records, fix_t_s, fix_error_m = _records()
    log = frame_log(records, fix_t_s, fix_error_m)
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "matches.png").write_bytes(_png(3))
    log[6]["images"] = {"query_png": _png(1), "tile_png": _png(2), "matches_png": "frames/matches.png",
                        "absent_png": "frames/none.png"}
    (tmp_path / "trajectory.png").write_bytes(_png(4, (300, 400)))
    path = write_replay_html(tmp_path, _replay_report(summarize_timing(records)), log, subject="short.mcap")
    return path, log


def _locate_photos() -> list[dict]:
    """locate.json's "photos" records: two scored fixes, one fix beyond its 3 sigma, one refusal."""
    cov = (4.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 9.0)
    photos = []
    for name, error_m, nees in (("DJI_0001.JPG", 1.2, 0.4), ("DJI_0002.JPG", 14.0, 11.5)):
        fix = PhotoFix(f"/data/{name}", True, "accepted", 50.81, -0.13, 60.0, cov, 91.0, 1.5, 39.8, 40.0, 812, "t7")
        photos.append({**asdict(fix), "metadata_problems": [], "gps": [50.81, -0.13, 61.0], "error_m": error_m,
                       "error_en_m": [error_m, 0.0], "nees": nees})
    refused = PhotoFix("/data/DJI_0003.JPG", False, "height above ground: solved 12.0 m vs metadata 40.0 m",
                       inliers=35, agl_metadata_m=40.0)
    photos.append({**asdict(refused), "metadata_problems": [], "gps": [50.81, -0.13, 61.0]})
    return photos


@pytest.fixture
def locate_page(tmp_path):
    report = {"photos": 3, "fixes_accepted": 2, "fix_rate": 2 / 3, "reference_sigma_m": 2.5, "rmse_m": 9.95,
              "cep50_m": 7.6, "cep95_m": 13.3, "max_error_m": 14.0, "nees_mean": 5.95,
              "nees_bounds_95": [0.12, 2.79], "fixes_beyond_3sigma": 1}
    (tmp_path / "errors.png").write_bytes(_png(5, (200, 300)))
    thumbs = {f"DJI_000{i}.JPG": cv2.imencode(".jpg", cv2.imdecode(np.frombuffer(_png(10 + i), np.uint8), 1))[1]
              .tobytes() for i in (1, 2, 3)}
    return write_locate_html(tmp_path, report, _locate_photos(), thumbs)


def test_frame_log_ends_each_frame_where_it_stopped():
    records, fix_t_s, fix_error_m = _records()
    log = frame_log(records, fix_t_s, fix_error_m)
    assert len(log) == FRAMES
    assert [e["stamp_s"] for e in log] == sorted(e["stamp_s"] for e in log)
    ends = {i: (e["stage"], e["outcome"]) for i, e in enumerate(log)}
    assert ends[0] == ("eskf", "initialised") and ends[1] == ("eskf", "accepted")
    assert ends[3] == ("inference", "skipped_busy")
    assert ends[6] == ("matching", "rejected_too_few_inliers") and ends[22] == ("eskf", "rejected")
    assert ends[FRAMES - 1] == ("eskf", "unreported")
    assert log[30]["error_m"] == 3.0 and "error_m" not in log[6]


def test_frame_log_without_errors_has_none():
    records, fix_t_s, _ = _records()
    assert all("error_m" not in e for e in frame_log(records, fix_t_s))


def test_worst_first_shows_each_failure_reason_then_the_largest_errors():  # an initialisation is no failure
    records, fix_t_s, fix_error_m = _records()
    chosen = worst_first(frame_log(records, fix_t_s, fix_error_m), 6)
    assert [e["outcome"] for e in chosen[:3]] == ["skipped_busy", "rejected_too_few_inliers", "rejected"]
    assert chosen[3]["error_m"] == 3.0
    assert len(chosen) == 6


def _assert_self_contained(text: str) -> None:
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", text, re.IGNORECASE)
    assert "<script src" not in text and "<link" not in text
    tags = re.findall(r"<img\b[^>]*>", text)
    assert tags and all(re.search(r"src=\"data:image/(png|jpeg);base64,", t) for t in tags)


def test_replay_page_is_self_contained_with_every_section(replay_page):
    path, log = replay_page
    text = path.read_text()
    _assert_self_contained(text)
    for section_id in ("summary", "timeline", "figures", "timing", "worst-frames"):
        assert f"<section id=\"{section_id}\">" in text
    rejected = sum(e["outcome"] == "rejected_too_few_inliers" for e in log)
    assert f"matching: rejected_too_few_inliers: <b>{rejected}</b>" in text
    assert "inference: skipped_busy: <b>2</b>" in text and "eskf: accepted: <b>" in text
    assert "Upper bound." in text and "lockstep" in text and "AMD EPYC" in text
    assert text.count("<img") == 4  # trajectory + the three images of frame 6 that exist
    assert "<td>eskf</td><td>fusion</td><td class=\"n\">4.0</td>" in text
    assert "<td>matching-&gt;eskf</td><td class=\"n\">10.0</td>" in text  # 60 ms apart, 50 ms of work
    assert text.count("<rect") == FRAMES + 1  # one mark per frame over the background


def test_replay_page_names_real_imagery_instead_of_the_caveat(tmp_path):
    records, fix_t_s, _ = _records()
    report = {**_replay_report(summarize_timing(records)), "imagery": "real camera, Brighton survey"}
    text = write_replay_html(tmp_path, report, frame_log(records, fix_t_s)).read_text()
    assert "Upper bound." not in text and "real camera, Brighton survey" in text


def test_locate_page_is_self_contained_with_worst_photo_first(locate_page):
    text = locate_page.read_text()
    _assert_self_contained(text)
    for section_id in ("summary", "errors", "photos", "gallery"):
        assert f"<section id=\"{section_id}\">" in text
    assert text.count("<img") == 4  # errors.png and three thumbnails
    gallery = text[text.index("<section id=\"gallery\">"):]
    order = [gallery.index(f"DJI_000{i}.JPG") for i in (3, 2, 1)]
    assert order == sorted(order)
    assert "0.12–2.79" in text and "height above ground: solved 12.0 m" in text
    assert "<span class=\"bad\">11.50</span>" in text  # NEES beyond 3 sigma (9 for 2 dof) stands out


def _screenshot(html_path, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not on PATH (scripts/setup.sh installs it): report.html not rendered")
    png = tmp_path / f"{html_path.stem}_{html_path.parent.name}.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--screenshot={png}", "--window-size=1280,2000",
           html_path.as_uri()]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert png.is_file(), f"chromium wrote no screenshot (rc {done.returncode}): {done.stderr[-2000:]}"
    image = cv2.imread(str(png), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[:2] == (2000, 1280)
    return image


def _pixels_near(image, bgr, tolerance: int = 14) -> int:
    return int(np.all(np.abs(image.astype(int) - np.array(bgr)) <= tolerance, axis=2).sum())


def test_replay_page_renders_in_chromium(replay_page, tmp_path_factory):
    image = _screenshot(replay_page[0], tmp_path_factory.mktemp("shot"))
    assert float(image.std()) > 20.0  # a blank page is 0
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 1000  # the embedded PNGs decoded
    assert _pixels_near(image, ACCEPTED_BGR) > 5000  # the timeline strip is drawn...
    assert _pixels_near(image, FIRST_FAILURE_BGR) > 300  # ...with its rejections


def test_locate_page_renders_in_chromium(locate_page, tmp_path_factory):
    image = _screenshot(locate_page, tmp_path_factory.mktemp("shot"))
    assert float(image.std()) > 20.0
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 1000
