"""The TensorRT engine cache without TensorRT: keys and file names, the refusal of foreign, stale and corrupt
engines (fake engine bytes with real sidecars), atomic sidecars, int8 calibration caches; the TensorRT path
itself only where tensorrt imports."""
from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np
import pytest

from gps_denied_nav.core.errors import RuntimeUnavailable
from gps_denied_nav.core.trt_engine import (CalibrationCacheMismatch, EngineKey, EngineMismatch, calibration_cache_path,
                                            calibration_identity, calibration_set_sha256, check_calibration_cache,
                                            check_engine, sidecar_path, write_atomic, write_calibration_sidecar,
                                            write_sidecar)

KEY = EngineKey(model_id="netvlad_efficientnet_lite0@3fa4c2d19e0b", onnx_sha256="ab" * 32, gpu_name="Orin",
                compute_capability="8.7", tensorrt_version="10.3.0", precision="fp16", batch_min=1, batch_max=8,
                input_px=320)
# One different value per field: the file name and check_engine must tell each of them apart.
OTHER_VALUES = {"model_id": "netvlad_efficientnet_lite0@000000000000", "onnx_sha256": "cd" * 32,
                "gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "tensorrt_version": "10.7.0",
                "precision": "int8", "batch_min": 2, "batch_max": 16, "input_px": 480}


def _engine(tmp_path, key=KEY, payload=b"plan bytes " * 100):
    path = tmp_path / key.file_name()
    path.write_bytes(payload)
    write_sidecar(path, key)
    return path


def test_other_values_cover_every_field():
    assert set(OTHER_VALUES) == {f.name for f in dataclasses.fields(EngineKey)}


def test_file_name_is_stable_self_describing_and_filesystem_safe():
    name = KEY.file_name()
    assert name == dataclasses.replace(KEY).file_name()  # same key, same name (no time or randomness in it)
    assert re.fullmatch(r"[a-z0-9._-]+\.engine", name), name
    assert name.startswith("netvlad_efficientnet_lite0_abababababab_orin-8.7_trt10.3.0_fp16_b1-8_320px_")
    ugly = dataclasses.replace(KEY, gpu_name="NVIDIA GeForce RTX/4090 (laptop)", model_id="../../etc@x")
    assert re.fullmatch(r"[a-z0-9._-]+\.engine", ugly.file_name()) and "/" not in ugly.file_name()


@pytest.mark.parametrize("field", sorted(OTHER_VALUES))
def test_file_name_differs_for_every_field(field):
    assert dataclasses.replace(KEY, **{field: OTHER_VALUES[field]}).file_name() != KEY.file_name()


def test_names_differ_even_where_the_readable_part_is_cut():
    long_a = dataclasses.replace(KEY, gpu_name="x" * 30 + "a")
    long_b = dataclasses.replace(KEY, gpu_name="x" * 30 + "b")
    assert long_a.file_name() != long_b.file_name()


def test_key_check_names_the_bad_field():
    for field, bad in [("precision", "bf16"), ("onnx_sha256", "123"), ("compute_capability", "sm87"),
                       ("batch_min", 9), ("input_px", 300), ("gpu_name", "")]:
        with pytest.raises(ValueError, match=field.split("_")[0]):
            dataclasses.replace(KEY, **{field: bad}).check()
    assert KEY.check() is KEY


def test_matching_engine_passes_and_returns_its_record(tmp_path):
    record = check_engine(_engine(tmp_path), KEY)
    assert record["key"] == dataclasses.asdict(KEY) and len(record["engine_sha256"]) == 64


@pytest.mark.parametrize("field", sorted(OTHER_VALUES))
def test_foreign_engine_is_refused_naming_the_field_expected_and_found(tmp_path, field):
    built_for = dataclasses.replace(KEY, **{field: OTHER_VALUES[field]})
    path = _engine(tmp_path, built_for)
    with pytest.raises(EngineMismatch) as info:
        check_engine(path, KEY)
    message = str(info.value)
    assert f"{field}: expected {getattr(KEY, field)!r}, found {OTHER_VALUES[field]!r}" in message
    assert str(path) in message and "rebuild" in message


def test_every_mismatched_field_is_named_at_once(tmp_path):
    path = _engine(tmp_path, dataclasses.replace(KEY, gpu_name="NVIDIA H100", compute_capability="9.0",
                                                 tensorrt_version="10.7.0"))
    with pytest.raises(EngineMismatch) as info:
        check_engine(path, KEY)
    assert all(f"{name}: expected" in str(info.value) for name in ("gpu_name", "compute_capability", "tensorrt_version"))
    assert "precision" not in str(info.value)


def test_truncated_and_corrupt_engines_are_refused(tmp_path):
    path = _engine(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(EngineMismatch, match="truncated"):
        check_engine(path, KEY)
    path.write_bytes(data[:-1] + b"X")  # same size, one byte different
    with pytest.raises(EngineMismatch, match="corrupt"):
        check_engine(path, KEY)


def test_missing_or_unreadable_sidecar_and_missing_engine_are_refused(tmp_path):
    path = _engine(tmp_path)
    sidecar_path(path).write_text("{not json")
    with pytest.raises(EngineMismatch, match="unreadable"):
        check_engine(path, KEY)
    sidecar_path(path).unlink()
    with pytest.raises(EngineMismatch, match="missing"):
        check_engine(path, KEY)
    with pytest.raises(EngineMismatch, match="no such engine"):
        check_engine(tmp_path / "absent.engine", KEY)


def test_engine_errors_fail_a_configure_like_any_unavailable_runtime():
    assert issubclass(EngineMismatch, RuntimeUnavailable) and issubclass(CalibrationCacheMismatch, RuntimeUnavailable)


def test_sidecar_write_is_atomic_when_it_fails(tmp_path, monkeypatch):
    path = _engine(tmp_path)
    before = sidecar_path(path).read_bytes()
    path.write_bytes(b"a new engine")

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space"):
        write_sidecar(path, KEY)
    assert sidecar_path(path).read_bytes() == before  # the old record, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, sidecar_path(path).name])  # no temp left


def test_sidecar_with_a_value_json_cannot_hold_is_refused_before_any_file(tmp_path):
    path = tmp_path / KEY.file_name()
    path.write_bytes(b"plan")
    with pytest.raises(ValueError):
        write_sidecar(path, KEY, {"build_s": float("nan")})
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_write_atomic_leaves_nothing_when_the_data_cannot_be_written(tmp_path):
    with pytest.raises(TypeError):
        write_atomic(tmp_path / "x.engine", "text, not bytes")
    assert list(tmp_path.iterdir()) == []


def _tiles(seed: int, n: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(n)]


def test_calibration_set_hash_changes_with_any_tile_and_with_order():
    tiles = _tiles(0)
    assert calibration_set_sha256(tiles) == calibration_set_sha256([t.copy() for t in tiles])
    changed = [t.copy() for t in tiles]
    changed[2][0, 0, 0] ^= 1
    assert calibration_set_sha256(changed) != calibration_set_sha256(tiles)
    assert calibration_set_sha256(tiles[::-1]) != calibration_set_sha256(tiles)


def _calibration_cache(tmp_path, key, tiles) -> tuple:
    identity = calibration_identity(key, calibration_set_sha256(tiles))
    path = calibration_cache_path(tmp_path, key)
    path.write_bytes(b"TRT-1003-EntropyCalibration2\ninput: 3c010a14\n")
    write_calibration_sidecar(path, identity)
    return path, identity


def test_calibration_cache_for_this_model_and_tile_set_is_used(tmp_path):
    path, identity = _calibration_cache(tmp_path, KEY, _tiles(0))
    assert check_calibration_cache(path, identity) is True
    assert check_calibration_cache(tmp_path / "none.calib", identity) is False  # none yet: calibrate


def test_calibration_cache_of_another_model_or_tile_set_is_refused(tmp_path):
    path, _ = _calibration_cache(tmp_path, KEY, _tiles(0))
    new_model = dataclasses.replace(KEY, model_id="netvlad_efficientnet_lite0@999999999999", onnx_sha256="ef" * 32)
    assert calibration_cache_path(tmp_path, new_model) == path  # same card and size: the old cache is found
    with pytest.raises(CalibrationCacheMismatch, match="onnx_sha256: expected 'efef") as info:
        check_calibration_cache(path, calibration_identity(new_model, calibration_set_sha256(_tiles(0))))
    assert "model_id" in str(info.value) and "tile_set_sha256" not in str(info.value)
    with pytest.raises(CalibrationCacheMismatch, match="tile_set_sha256"):
        check_calibration_cache(path, calibration_identity(KEY, calibration_set_sha256(_tiles(1))))


def test_corrupt_calibration_cache_or_missing_sidecar_is_refused(tmp_path):
    path, identity = _calibration_cache(tmp_path, KEY, _tiles(0))
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(CalibrationCacheMismatch, match="corrupt"):
        check_calibration_cache(path, identity)
    sidecar_path(path).unlink()
    with pytest.raises(CalibrationCacheMismatch, match="missing"):
        check_calibration_cache(path, identity)


def test_sidecar_is_plain_json_with_the_key(tmp_path):
    record = json.loads(sidecar_path(_engine(tmp_path)).read_text())
    assert record["format"] == "gps_denied_nav.trt_engine" and record["key"]["precision"] == "fp16"


def test_without_tensorrt_building_raises_runtime_unavailable_with_the_reason(tmp_path):
    pytest.importorskip("torch")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here: the unavailable path cannot be shown")
    except ImportError:
        pass
    from gps_denied_nav.core.trt_build import build_engine

    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx")
    with pytest.raises(RuntimeUnavailable, match="TensorRT is not importable.*JetPack"):
        build_engine(onnx, KEY, tmp_path / "engines")
    assert not (tmp_path / "engines").exists()


def test_cached_engine_is_checked_before_tensorrt_is_needed(tmp_path):
    from gps_denied_nav.core.trt_build import build_engine

    path = _engine(tmp_path)
    assert build_engine(tmp_path / "unused.onnx", KEY, tmp_path) == path  # a cache hit needs no TensorRT
    path.write_bytes(b"damaged")
    with pytest.raises(EngineMismatch, match="truncated"):
        build_engine(tmp_path / "unused.onnx", KEY, tmp_path)


def test_tensorrt_builds_and_runs_an_engine(tmp_path):
    """On a machine with TensorRT and a GPU (a Jetson): a tiny ONNX network through build, cache hit and run."""
    trt = pytest.importorskip("tensorrt", reason="TensorRT wheels need NVIDIA's package index and an NVIDIA GPU "
                                                  "(on a Jetson it comes with JetPack); not installable here")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip(f"tensorrt {trt.__version__} is importable but torch sees no CUDA GPU")
    from gps_denied_nav.core.trt_build import TensorRTRuntime, build_engine, device_engine_key

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    onnx = tmp_path / "tiny.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 64, 64), str(onnx), input_names=["images"], output_names=["descriptors"],
                      dynamic_axes={"images": {0: "n"}, "descriptors": {0: "n"}}, dynamo=False)
    key = device_engine_key("tiny@000000000000", onnx, "fp32", input_px=64, batch_max=4)
    path = build_engine(onnx, key, tmp_path / "engines")
    assert check_engine(path, key) and build_engine(onnx, key, tmp_path / "engines") == path
    out = TensorRTRuntime(path, key).describe(_tiles(0, 5))
    assert out.shape == (5, 8) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-4)
