"""``gdn build-engine`` before TensorRT is needed: its arguments, and the refusals that name what to do."""
from __future__ import annotations

import argparse
import types

import pytest

from gps_denied_nav import cli_engine
from gps_denied_nav.core import corpus_manifest
from gps_denied_nav.core.errors import RuntimeUnavailable


def _parse(*argv: str):
    parser = argparse.ArgumentParser(prog="gdn")
    cli_engine.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["build-engine", *argv])


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    manifest = types.SimpleNamespace(model_id="netvlad_efficientnet_lite0@3fa4c2d19e0b", tile_px=320)
    monkeypatch.setattr(corpus_manifest, "read_manifest", lambda directory: manifest)
    return tmp_path


def test_arguments_and_defaults():
    args = _parse("--corpus", "c")
    assert (args.precision, args.rebuild, args.batch_max, args.func) == ("fp16", False, 8, cli_engine.cmd_build_engine)
    assert _parse("--corpus", "c", "--precision", "int8", "--rebuild").rebuild
    with pytest.raises(SystemExit):
        _parse("--corpus", "c", "--precision", "bf16")


def test_missing_onnx_says_to_export_first(corpus):
    with pytest.raises(FileNotFoundError, match="gdn export-onnx --corpus"):
        cli_engine.cmd_build_engine(_parse("--corpus", str(corpus)))


def test_onnx_from_another_model_is_refused(corpus, monkeypatch):
    (corpus / "model.onnx").write_bytes(b"onnx")
    monkeypatch.setattr(cli_engine, "onnx_model_id", lambda path: "netvlad_vgg16@000000000000")
    with pytest.raises(ValueError, match="exported from netvlad_vgg16@000000000000.*export it again"):
        cli_engine.cmd_build_engine(_parse("--corpus", str(corpus)))


def test_int8_needs_the_orthophoto_for_calibration(corpus, monkeypatch):
    (corpus / "model.onnx").write_bytes(b"onnx")
    monkeypatch.setattr(cli_engine, "onnx_model_id", lambda path: None)
    with pytest.raises(ValueError, match="--ortho"):
        cli_engine.cmd_build_engine(_parse("--corpus", str(corpus), "--precision", "int8"))


def test_without_tensorrt_the_reason_is_given(corpus, monkeypatch):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    (corpus / "model.onnx").write_bytes(b"onnx")
    monkeypatch.setattr(cli_engine, "onnx_model_id", lambda path: "netvlad_efficientnet_lite0@3fa4c2d19e0b")
    with pytest.raises(RuntimeUnavailable, match="TensorRT is not importable"):
        cli_engine.cmd_build_engine(_parse("--corpus", str(corpus)))
