"""The `gdn` command: bad files fail the command with a message naming the file and the problem."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio

GDN = [sys.executable, "-m", "gps_denied_nav.cli"]


def _gdn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*GDN, *args], capture_output=True, text=True, timeout=300)


def test_help_lists_the_commands():
    out = _gdn("--help")
    assert out.returncode == 0
    for command in ("provision", "simulate", "run", "replay", "demo", "diagnostics", "ortho", "locate", "export-onnx",
                    "build-engine", "fetch-map", "fetch-dem", "train-vpr", "eval-retrieval"):
        assert command in out.stdout


def test_provision_refuses_a_tiff_without_georeference(tmp_path):
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8") as ds:
        ds.write(np.zeros((3, 64, 64), np.uint8))
    out = _gdn("provision", "--ortho", str(plain), "--out", str(tmp_path / "corpus"))
    assert out.returncode == 2
    assert str(plain) in out.stderr and "CRS" in out.stderr, out.stderr
    assert not (tmp_path / "corpus" / "manifest.json").exists()


def test_replay_refuses_a_corrupt_corpus_before_starting(small_corpus, tmp_path):
    broken = tmp_path / "corpus"
    shutil.copytree(small_corpus, broken)
    (broken / "descriptors.npy").write_bytes(b"not a numpy file")
    clip = tmp_path / "clip.mcap"
    clip.mkdir()
    out = _gdn("replay", str(clip), "--corpus", str(broken), "--out", str(tmp_path / "out"))
    assert out.returncode == 2
    assert "descriptors.npy" in out.stderr, out.stderr


def test_replay_names_a_missing_clip(tmp_path):
    out = _gdn("replay", str(tmp_path / "nope.mcap"), "--corpus", str(tmp_path), "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "nope.mcap" in out.stderr


def test_provision_needs_to_be_told_the_terrain(small_world, tmp_path):
    out = _gdn("provision", "--ortho", str(small_world), "--out", str(tmp_path / "corpus"))
    assert out.returncode == 2
    for flag in ("--dem", "--ground-alt-m", "--assume-sea-level"):
        assert flag in out.stderr, out.stderr
    assert not (tmp_path / "corpus" / "manifest.json").exists()


def test_locate_gives_every_photo_a_reason_and_fails_only_when_none_is_usable(small_corpus, tmp_path):
    """A file that is no photo and a JPEG without EXIF each get their reason; the command still reports."""
    import json

    from PIL import Image

    not_a_photo, bare = tmp_path / "notes.jpg", tmp_path / "bare.jpg"
    not_a_photo.write_text("not an image")
    Image.fromarray(np.full((240, 320, 3), 90, np.uint8)).save(bare)
    out = _gdn("locate", str(not_a_photo), str(bare), "--corpus", str(small_corpus), "--out", str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr
    records = {Path(r["photo"]).name: r for r in json.loads((tmp_path / "out" / "locate.json").read_text())["photos"]}
    assert records["notes.jpg"]["reason"].startswith("unreadable photo") and str(not_a_photo) in records["notes.jpg"]["reason"]
    assert records["bare.jpg"]["reason"].startswith("metadata missing: focal length")
    assert "no GPS position" in records["bare.jpg"]["metadata_problems"]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (report["photos"], report["fixes_accepted"], report["fix_rate"]) == (2, 0, 0.0)
    assert json.loads((tmp_path / "out" / "fixes.geojson").read_text())["features"] == []
    none = _gdn("locate", str(not_a_photo), "--corpus", str(small_corpus), "--out", str(tmp_path / "none"))
    assert none.returncode == 2 and "none of the 1 photos is readable" in none.stderr and str(not_a_photo) in none.stderr


def test_ortho_names_a_photo_it_cannot_place(tmp_path):
    from PIL import Image

    bare = tmp_path / "bare.jpg"
    Image.fromarray(np.full((240, 320, 3), 90, np.uint8)).save(bare)
    out = _gdn("ortho", str(bare), "--out", str(tmp_path / "map.tif"))
    assert out.returncode == 2 and str(bare) in out.stderr and "no GPS position" in out.stderr, out.stderr
