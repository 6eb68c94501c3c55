"""Shared fixtures: a small generated world and its corpus (built once per test session).

ROS tests run in-process on real rclpy/DDS. Each pytest process gets its own ROS domain so that tests
running side by side on one machine never see each other's topics.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 101)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> Path:
    """A world just large enough for a short flight (replay.reference: 700 m square at 0.5 m/px)."""
    from gps_denied_nav.replay.reference import small_world

    return small_world(tmp_path_factory.mktemp("world") / "world.tif")


@pytest.fixture(scope="session")
def small_corpus(small_world, tmp_path_factory) -> Path:
    from gps_denied_nav.replay.reference import small_corpus

    return small_corpus(small_world, tmp_path_factory.mktemp("corpus") / "corpus")


@pytest.fixture(scope="session")
def onnx_corpus(small_corpus, tmp_path_factory) -> Path:
    """A copy of the small corpus with its model exported by ``gdn export-onnx`` (what it printed: export.txt
    beside the copy), once per session: the onnxruntime backend's tests read it."""
    import contextlib
    import io
    import shutil

    from gps_denied_nav.cli import main

    corpus = tmp_path_factory.mktemp("onnx_corpus") / "corpus"
    shutil.copytree(small_corpus, corpus)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export-onnx", "--corpus", str(corpus)]) == 0
    (corpus.parent / "export.txt").write_text(printed.getvalue())
    return corpus


@pytest.fixture(scope="session")
def short_clip(small_world, tmp_path_factory) -> Path:
    """The short reference flight (replay.reference): 40 s, GNSS for the first 10 s."""
    from gps_denied_nav.replay.reference import short_clip

    return short_clip(small_world, tmp_path_factory.mktemp("clip") / "clip.mcap")


@pytest.fixture(scope="session")
def reference_replay(short_clip, small_corpus, tmp_path_factory) -> Path:
    """The reference flight replayed in lockstep through the whole graph, once per session; its output
    directory (report.json, outputs.mcap, plots)."""
    from gps_denied_nav.replay.session import replay

    out = tmp_path_factory.mktemp("reference_replay")
    replay(short_clip, small_corpus, out, rate=1.0)
    return out


@pytest.fixture(scope="session")
def turku_dir() -> Path:
    path = SHARED_DATA / "turku_satellite"
    if not (path / "map" / "map.csv").exists():
        pytest.skip(f"real Turku satellite tiles not found at {path}")
    return path
