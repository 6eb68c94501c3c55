"""The TensorRT engine cache: what an engine was built for, its file name, its sidecar, and the refusals.

A TensorRT engine is a plan for one GPU (compute capability), one TensorRT version, one precision and one
range of input shapes, compiled from one ONNX model. Deserialising a foreign one fails at best and at worst
runs the wrong network, so every engine gets a sidecar ``<engine>.json`` (written atomically, after the
engine) with its ``EngineKey`` and the engine file's sha256, and ``check_engine`` refuses an engine whose
key differs from the one expected on this machine (naming every differing field) or whose bytes are not
the ones the sidecar recorded (a truncated or corrupt copy). The same holds for int8 calibration caches
(``check_calibration_cache``): one made for another model or tile set must not quietly set the scales.
Nothing here imports TensorRT; the builder and runtime that do are in ``trt_build``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .corpus import file_sha256  # the corpus manifest's checksum, for engines too
from .errors import RuntimeUnavailable

PRECISIONS = ("fp32", "fp16", "int8")
SIDECAR_FORMAT = "gps_denied_nav.trt_engine"
CALIBRATION_FORMAT = "gps_denied_nav.trt_calibration"
_UNSAFE = re.compile(r"[^a-z0-9.]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class TensorRTError(RuntimeUnavailable):
    """Base of the TensorRT engine errors: a RuntimeUnavailable, so a node's configure fails with the message."""


class EngineBuildError(TensorRTError):
    """The ONNX model did not parse or TensorRT could not build an engine from it."""


class EngineDeserializeError(TensorRTError):
    """TensorRT could not deserialise an engine file (a plan of another TensorRT build, or damaged)."""


class EngineOutOfMemory(TensorRTError):
    """GPU memory ran out while building or loading; the message names model, precision and workspace."""


class EngineMismatch(TensorRTError):
    """An engine built for another GPU, TensorRT, precision, shape or model, or not the bytes its sidecar names."""


class CalibrationCacheMismatch(TensorRTError):
    """An int8 calibration cache made for another model or another calibration tile set."""


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine is only valid for. ``model_id`` is the source model's id (the ONNX metadata's
    ``model_id``, e.g. ``netvlad_efficientnet_lite0@3fa4c2d19e0b``); ``onnx_sha256`` the exported file's."""

    model_id: str
    onnx_sha256: str
    gpu_name: str  # torch.cuda.get_device_name(), e.g. "Orin"
    compute_capability: str  # "major.minor", e.g. "8.7" (Orin), "9.0" (H100)
    tensorrt_version: str  # tensorrt.__version__, e.g. "10.3.0"
    precision: str  # fp32 | fp16 | int8
    batch_min: int  # the optimisation profile's batch range; the optimum is batch_min (one frame in flight)
    batch_max: int
    input_px: int  # square input side (the corpus' tile_px)

    def check(self) -> EngineKey:
        """ValueError naming the field when a value cannot describe an engine."""
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not _SHA256.fullmatch(self.onnx_sha256):
            raise ValueError(f"onnx_sha256 must be 64 lowercase hex digits, got {self.onnx_sha256!r}")
        if not re.fullmatch(r"\d+\.\d+", self.compute_capability):
            raise ValueError(f"compute_capability must be 'major.minor', got {self.compute_capability!r}")
        if not 1 <= self.batch_min <= self.batch_max:
            raise ValueError(f"batch range must satisfy 1 <= batch_min <= batch_max, got {self.batch_min}-{self.batch_max}")
        if self.input_px < 32 or self.input_px % 32:
            raise ValueError(f"input_px must be a positive multiple of 32, got {self.input_px}")
        for name in ("model_id", "gpu_name", "tensorrt_version"):
            if not getattr(self, name):
                raise ValueError(f"{name} is empty")
        return self

    def file_name(self) -> str:
        """Self-describing and filesystem-safe (lowercase letters, digits, '.', '-', '_'), e.g.
        ``netvlad_efficientnet_lite0_3fa4c2d19e0b_orin-8.7_trt10.3.0_fp16_b1-8_320px_5d1c09ab.engine``.
        The readable parts are cut and simplified, so a short hash of the whole key ends the name: two keys
        that differ in any field never share a file."""
        card = _slug(self.model_id.split("@")[0], 40).replace(".", "-").replace("-", "_")
        parts = (card, self.onnx_sha256[:12], f"{_slug(self.gpu_name, 24)}-{self.compute_capability}",
                 f"trt{_slug(self.tensorrt_version, 16)}", self.precision, f"b{self.batch_min}-{self.batch_max}",
                 f"{self.input_px}px", key_digest(self)[:8])
        return "_".join(parts) + ".engine"


def _slug(text: str, max_len: int) -> str:
    return _UNSAFE.sub("-", text.lower()).strip("-.")[:max_len] or "unknown"


def key_digest(key: EngineKey) -> str:
    return hashlib.sha256(json.dumps(asdict(key), sort_keys=True).encode()).hexdigest()


def sidecar_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_atomic(path, data: bytes) -> None:
    """``data`` to ``path`` whole or not at all: a temporary file beside it, fsync'd, then os.replace (atomic
    on POSIX) and the directory fsync'd, so a crash or a full disk never leaves a half-written file under
    the real name for the next start to trust."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_sidecar(engine_path, key: EngineKey, extra: dict | None = None) -> Path:
    """Record ``key`` and the engine's sha256 beside an engine already written (so a sidecar never names
    bytes that are not on disk). ``extra``: plain JSON values for the record (workspace, build time)."""
    engine_path = Path(engine_path)
    record = {"format": SIDECAR_FORMAT, "key": asdict(key), "engine_sha256": file_sha256(engine_path),
              "engine_bytes": engine_path.stat().st_size, **(extra or {})}
    text = json.dumps(record, indent=1, sort_keys=True, allow_nan=False)  # ValueError before any file is touched
    write_atomic(sidecar_path(engine_path), text.encode())
    return sidecar_path(engine_path)


def _read_json(path: Path, expected_format: str, error: type) -> dict:
    if not path.is_file():
        raise error(f"{path}: missing, so nothing says what its engine or cache was built for; rebuild it "
                    "(gdn build-engine --rebuild)")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise error(f"{path}: unreadable ({exc}); rebuild it (gdn build-engine --rebuild)") from exc
    if not isinstance(record, dict) or record.get("format") != expected_format:
        raise error(f"{path}: not a {expected_format} record")
    return record


def differences(expected: dict, found: dict) -> list[str]:
    """'field: expected X, found Y' for every field of ``expected`` that ``found`` lacks or differs in."""
    return [f"{name}: expected {value!r}, found {found.get(name, '<missing>')!r}"
            for name, value in expected.items() if found.get(name, object()) != value]


def check_engine(path, expected: EngineKey) -> dict:
    """Refuse an engine that is not for ``expected`` or not intact; its sidecar record when it is.

    Raises EngineMismatch naming the engine and every mismatched key field (expected vs found), a missing or
    unreadable sidecar, or an engine whose size or sha256 differs from the sidecar's (truncated, corrupt)."""
    path = Path(path)
    if not path.is_file():
        raise EngineMismatch(f"{path}: no such engine; build it with gdn build-engine")
    record = _read_json(sidecar_path(path), SIDECAR_FORMAT, EngineMismatch)
    found = record.get("key") if isinstance(record.get("key"), dict) else {}
    wrong = differences(asdict(expected), found)
    if wrong:
        raise EngineMismatch(f"{path}: built for another configuration ({'; '.join(wrong)}); rebuild it on this "
                             "machine (gdn build-engine --rebuild)")
    size = path.stat().st_size
    if size != record.get("engine_bytes"):
        raise EngineMismatch(f"{path}: {size} bytes, its sidecar says {record.get('engine_bytes')} (truncated or "
                             "replaced); rebuild it (gdn build-engine --rebuild)")
    digest = file_sha256(path)
    if digest != record.get("engine_sha256"):
        raise EngineMismatch(f"{path}: sha256 {digest[:12]}... is not the {str(record.get('engine_sha256'))[:12]}... "
                             "its sidecar recorded (corrupt copy); rebuild it (gdn build-engine --rebuild)")
    return record


# --- int8 calibration caches ----------------------------------------------------------------------------

def calibration_set_sha256(images: Iterable[np.ndarray]) -> str:
    """The calibration tile set's hash: shape and bytes of every image, in order ([H x W x 3] uint8 each)."""
    digest = hashlib.sha256()
    for image in images:
        image = np.ascontiguousarray(image)
        digest.update(f"{image.shape}{image.dtype}".encode())
        digest.update(image.tobytes())
    return digest.hexdigest()


def calibration_cache_path(cache_dir, key: EngineKey) -> Path:
    """One cache per model card and input size: a re-provisioned corpus (new model or tiles) meets the old
    cache under the same name, and ``check_calibration_cache`` says what changed instead of reusing it."""
    card = _slug(key.model_id.split("@")[0], 40).replace("-", "_")
    return Path(cache_dir) / f"{card}_{key.input_px}px_int8.calib"


def calibration_identity(key: EngineKey, tile_set_sha256: str) -> dict:
    return {"model_id": key.model_id, "onnx_sha256": key.onnx_sha256, "input_px": key.input_px,
            "tile_set_sha256": tile_set_sha256}


def write_calibration_sidecar(cache_path, identity: dict) -> None:
    cache_path = Path(cache_path)
    record = {"format": CALIBRATION_FORMAT, **identity, "cache_sha256": file_sha256(cache_path)}
    write_atomic(sidecar_path(cache_path), json.dumps(record, indent=1, sort_keys=True).encode())


def check_calibration_cache(cache_path, identity: dict) -> bool:
    """True when ``cache_path`` exists and was made for ``identity`` (model, input size, tile set); False when
    there is none. CalibrationCacheMismatch naming every differing field (or a cache that is not the bytes its
    sidecar recorded) otherwise."""
    cache_path = Path(cache_path)
    if not cache_path.exists():
        return False
    record = _read_json(sidecar_path(cache_path), CALIBRATION_FORMAT, CalibrationCacheMismatch)
    wrong = differences(identity, record)
    if wrong:
        raise CalibrationCacheMismatch(f"{cache_path}: made for another model or calibration tile set "
                                       f"({'; '.join(wrong)}); recalibrate (gdn build-engine --rebuild)")
    if file_sha256(cache_path) != record.get("cache_sha256"):
        raise CalibrationCacheMismatch(f"{cache_path}: not the bytes its sidecar recorded (corrupt); recalibrate "
                                       "(gdn build-engine --rebuild)")
    return True
