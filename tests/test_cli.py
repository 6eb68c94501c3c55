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
    for command in ("provision", "simulate", "run", "replay", "demo", "diagnostics"):
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
