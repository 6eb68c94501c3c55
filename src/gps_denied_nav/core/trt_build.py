"""TensorRT engines from the exported ONNX model: build (fp32/fp16/int8), load, and run them.

Written against the TensorRT 10 Python API (JetPack 6 ships 10.3): ``trt.Builder``, ``OnnxParser``,
``BuilderConfig.set_flag``/``set_memory_pool_limit``, ``build_serialized_network``, an
``IInt8EntropyCalibrator2`` (deprecated since 10.1 in favour of explicit quantization, still built in 10.x)
fed with the corpus' own tiles, ``Runtime.deserialize_cuda_engine`` and ``execute_async_v3`` on tensor
addresses. GPU buffers are torch CUDA tensors, so there is no pycuda dependency. ``tensorrt`` is imported
inside the functions: without it they raise RuntimeUnavailable with the reason. NOT RUN where this was
written (no GPU, no TensorRT wheel): every call here is unverified until it runs on a Jetson.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import RuntimeUnavailable
from .runtime import ONNX_FILE, resize_images, unit_rows
from .trt_engine import (EngineBuildError, EngineDeserializeError, EngineKey, EngineOutOfMemory, calibration_cache_path,
                         calibration_identity, calibration_set_sha256, check_calibration_cache, check_engine, file_sha256,
                         write_atomic, write_calibration_sidecar, write_sidecar)

CALIBRATION_BATCH = 8  # images per calibration batch (a fixed calibration profile of its own)
ENGINE_DIR = "engines"  # under the corpus: an engine belongs with the model it was built from
_OOM_WORDS = ("out of memory", "outofmemory", "cudaerrormemoryallocation", "insufficient memory")


def import_tensorrt():
    """The tensorrt module, or RuntimeUnavailable saying why there is none."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise RuntimeUnavailable(f"TensorRT is not importable ({exc}): on a Jetson it comes with JetPack "
                                 "(python3-libnvinfer, or the l4t-jetpack container); elsewhere the wheels need "
                                 "NVIDIA's package index and an NVIDIA GPU") from exc
    return trt


def device_engine_key(model_id: str, onnx_path, precision: str, input_px: int, batch_min: int = 1,
                      batch_max: int = 8) -> EngineKey:
    """The key of an engine built here: this GPU (CUDA device 0, via torch), this TensorRT, this ONNX file."""
    import torch

    trt = import_tensorrt()
    if not torch.cuda.is_available():
        raise RuntimeUnavailable(f"TensorRT needs a CUDA GPU and torch {torch.__version__} sees none")
    major, minor = torch.cuda.get_device_capability(0)
    return EngineKey(model_id=model_id, onnx_sha256=file_sha256(onnx_path), gpu_name=torch.cuda.get_device_name(0),
                     compute_capability=f"{major}.{minor}", tensorrt_version=trt.__version__, precision=precision,
                     batch_min=batch_min, batch_max=batch_max, input_px=input_px).check()


def _logger(trt):
    """A TensorRT logger that keeps the messages: build and deserialise failures return None, and only the
    log says why (e.g. an out-of-memory tactic)."""
    class Log(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages: list[str] = []

        def log(self, severity, msg):
            if int(severity) <= int(trt.ILogger.Severity.WARNING):  # errors and warnings
                self.messages.append(str(msg))

    return Log()


def _is_oom(texts) -> bool:
    lowered = [str(text).lower() for text in texts]
    return any(word in text or word in text.replace(" ", "") for text in lowered for word in _OOM_WORDS)


def build_engine(onnx_path, key: EngineKey, cache_dir, calibration_images: Sequence[np.ndarray] | None = None,
                 workspace_mb: int = 1024, rebuild: bool = False) -> Path:
    """The engine for ``key`` in ``cache_dir`` (its file name says what it is for): reused when it is there and
    passes ``check_engine``, built from ``onnx_path`` when it is not there or ``rebuild``.

    int8 needs ``calibration_images`` (uint8 [H x W x 3] RGB corpus tiles); their activation ranges are cached
    beside the engine with the model's and the tile set's hashes (CalibrationCacheMismatch when an old cache
    is for another model or tile set, unless ``rebuild``). Raises EngineBuildError (parse or build failed,
    with TensorRT's messages), EngineOutOfMemory (model, precision, workspace), RuntimeUnavailable."""
    key.check()
    cache_dir = Path(cache_dir)
    engine_path = cache_dir / key.file_name()
    if engine_path.exists() and not rebuild:
        check_engine(engine_path, key)
        return engine_path
    trt = import_tensorrt()
    if trt.__version__ != key.tensorrt_version:
        raise EngineBuildError(f"the key asks for TensorRT {key.tensorrt_version}, this is {trt.__version__}")
    if file_sha256(onnx_path) != key.onnx_sha256:
        raise EngineBuildError(f"{onnx_path}: not the ONNX file the key names (sha256 {key.onnx_sha256[:12]}...)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    log = _logger(trt)
    context = f"model {key.model_id}, precision {key.precision}, workspace {workspace_mb} MB"
    t0 = time.monotonic()
    try:
        builder = trt.Builder(log)
        network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
        parser = trt.OnnxParser(network, log)
        if not parser.parse(Path(onnx_path).read_bytes()):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise EngineBuildError(f"{onnx_path}: TensorRT could not parse it: {'; '.join(errors)}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        name = network.get_input(0).name
        profile = builder.create_optimization_profile()
        px = key.input_px
        profile.set_shape(name, (key.batch_min, 3, px, px), (key.batch_min, 3, px, px), (key.batch_max, 3, px, px))
        config.add_optimization_profile(profile)
        if key.precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)  # int8 engines keep fp16, not fp32, for layers int8 cannot take
        if key.precision == "int8":
            # Held here until the build is done: the config keeps only a pointer to the Python calibrator.
            calibrator = _set_calibrator(trt, builder, config, name, key, cache_dir, calibration_images, rebuild)  # noqa: F841
        serialized = builder.build_serialized_network(network, config)
    except (EngineBuildError, RuntimeUnavailable):
        raise
    except Exception as exc:  # noqa: BLE001 - TensorRT and CUDA raise plain RuntimeErrors (and torch its OOM)
        if _is_oom([exc, *log.messages]):
            raise EngineOutOfMemory(f"out of GPU memory building the engine ({context}): {exc}") from exc
        raise EngineBuildError(f"building the engine failed ({context}): {exc}") from exc
    if serialized is None:
        if _is_oom(log.messages):
            raise EngineOutOfMemory(f"out of GPU memory building the engine ({context}): {' | '.join(log.messages[-3:])}; "
                                    "lower workspace_mb or batch_max, or free the GPU")
        raise EngineBuildError(f"TensorRT built no engine ({context}): {' | '.join(log.messages[-5:]) or 'no message'}")
    write_atomic(engine_path, bytes(serialized))
    write_sidecar(engine_path, key, {"workspace_mb": int(workspace_mb), "build_s": round(time.monotonic() - t0, 1)})
    return engine_path


def _set_calibrator(trt, builder, config, input_name: str, key: EngineKey, cache_dir: Path, images, rebuild: bool):
    if not images:
        raise EngineBuildError("int8 needs calibration images (the corpus tiles); none were given")
    identity = calibration_identity(key, calibration_set_sha256(images))
    cache_path = calibration_cache_path(cache_dir, key)
    if rebuild:
        cache_path.unlink(missing_ok=True)
    cached = check_calibration_cache(cache_path, identity)  # CalibrationCacheMismatch for another model/tile set
    config.set_flag(trt.BuilderFlag.INT8)
    batch = min(CALIBRATION_BATCH, key.batch_max, len(images))
    profile = builder.create_optimization_profile()
    shape = (batch, 3, key.input_px, key.input_px)
    profile.set_shape(input_name, shape, shape, shape)
    config.set_calibration_profile(profile)
    calibrator = make_calibrator(trt, images, batch, key.input_px, cache_path, identity, cached)
    config.int8_calibrator = calibrator
    return calibrator


def make_calibrator(trt, images, batch: int, input_px: int, cache_path: Path, identity: dict, cached: bool):
    """An IInt8EntropyCalibrator2 over ``images`` in batches of ``batch`` (one CUDA buffer, refilled), reading
    the calibration cache when ``cached`` and writing it (with its sidecar) after calibrating."""
    import torch

    class TileCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.next_index = 0
            self.buffer = torch.empty((batch, 3, input_px, input_px), dtype=torch.float32, device="cuda")

        def get_batch_size(self):
            return batch

        def get_batch(self, names):
            chunk = images[self.next_index:self.next_index + batch]
            if len(chunk) < batch:
                return None  # no more full batches: calibration ends
            self.next_index += batch
            self.buffer.copy_(images_to_batch(chunk, input_px))
            torch.cuda.synchronize()  # TensorRT reads the buffer on its own stream
            return [int(self.buffer.data_ptr())]

        def read_calibration_cache(self):
            return cache_path.read_bytes() if cached else None

        def write_calibration_cache(self, cache):
            write_atomic(cache_path, bytes(cache))
            write_calibration_sidecar(cache_path, identity)

    return TileCalibrator()


def images_to_batch(images: Sequence[np.ndarray], input_px: int):
    """uint8 [H x W x 3] RGB images -> torch float32 [N x 3 x S x S], 0..255: what ``model.onnx`` takes
    (``images_dn``; normalisation is inside the graph), resized by the rule every backend uses."""
    import torch

    return torch.from_numpy(resize_images(images, input_px)).permute(0, 3, 1, 2).float()


def load_engine(engine_path, key: EngineKey):
    """(ICudaEngine, the trt.Runtime it came from: keep both alive together) for ``key``, after ``check_engine``. EngineDeserializeError with TensorRT's own
    messages when it does not deserialise; EngineOutOfMemory when the GPU has no room for it."""
    check_engine(engine_path, key)
    trt = import_tensorrt()
    log = _logger(trt)
    runtime = trt.Runtime(log)
    try:
        engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
    except Exception as exc:  # noqa: BLE001 - pybind raises RuntimeError/TypeError
        engine, log.messages = None, [*log.messages, str(exc)]
    if engine is None:
        context = f"model {key.model_id}, precision {key.precision}"
        if _is_oom(log.messages):
            raise EngineOutOfMemory(f"{engine_path}: out of GPU memory loading it ({context})")
        raise EngineDeserializeError(f"{engine_path}: TensorRT {trt.__version__} could not deserialise it "
                                     f"({context}): {' | '.join(log.messages[-3:]) or 'no message'}")
    return engine, runtime


class TensorRTRuntime:
    """Descriptors from a TensorRT engine: ``describe(images [N x H x W x 3] uint8) -> [N x D] float32``, unit L2
    (``runtime.DescriptorRuntime``: name, device, model_id, descriptor_dim, input_px).

    One execution context; each call sets the input shape (``set_input_shape``), binds torch CUDA tensors by
    address (``set_tensor_address``) and runs ``execute_async_v3`` on torch's current stream, in chunks of at
    most ``key.batch_max`` images, from the same 0..255 batch as the other backends (``images_to_batch``).
    UNVERIFIED: written from the TensorRT 10 API reference, never run where it was written (no GPU, no
    TensorRT).
    """

    name = "tensorrt"

    def __init__(self, engine_path, key: EngineKey, descriptor_dim: int | None = None):
        import torch

        trt = import_tensorrt()
        if not torch.cuda.is_available():
            raise RuntimeUnavailable("the TensorRT runtime needs a CUDA GPU; torch sees none")
        self.key, self._torch = key, torch
        self.model_id, self.input_px, self.device = key.model_id, key.input_px, f"{key.gpu_name} ({key.precision})"
        self.engine, self._runtime = load_engine(engine_path, key)
        self.context = self.engine.create_execution_context()
        if self.context is None:  # TensorRT returns None when it cannot allocate the activation memory
            raise EngineOutOfMemory(f"{engine_path}: no GPU memory for an execution context (model {key.model_id}, "
                                    f"precision {key.precision})")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise EngineDeserializeError(f"{engine_path}: expected one input and one output, got {inputs} / {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16}
        self.input_dtype = dtypes[self.engine.get_tensor_dtype(self.input_name)]
        self.output_dtype = dtypes[self.engine.get_tensor_dtype(self.output_name)]
        self.descriptor_dim = int(self.engine.get_tensor_shape(self.output_name)[-1])
        if descriptor_dim is not None and self.descriptor_dim != descriptor_dim:
            raise EngineDeserializeError(f"{engine_path}: {self.descriptor_dim}-d descriptors, the corpus has "
                                         f"{descriptor_dim}-d")

    @classmethod
    def for_corpus(cls, corpus, precision: str = "fp16", batch_max: int = 8) -> TensorRTRuntime:
        """The engine ``gdn build-engine --precision PRECISION`` built for ``corpus`` (a core.corpus.Corpus) on
        this machine; EngineMismatch saying to build it when there is none for this GPU and TensorRT."""
        directory = Path(corpus.directory)
        key = device_engine_key(corpus.model_id, directory / ONNX_FILE, precision, input_px=corpus.tile_px,
                                batch_max=batch_max)
        return cls(directory / ENGINE_DIR / key.file_name(), key, descriptor_dim=corpus.descriptor_dim)

    def describe(self, images: Sequence[np.ndarray]) -> np.ndarray:
        torch = self._torch
        outputs = []
        for start in range(0, len(images), self.key.batch_max):
            batch = images_to_batch(images[start:start + self.key.batch_max], self.input_px)
            batch = batch.to("cuda", dtype=self.input_dtype).contiguous()
            self.context.set_input_shape(self.input_name, tuple(batch.shape))
            out = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=self.output_dtype,
                              device="cuda")
            self.context.set_tensor_address(self.input_name, int(batch.data_ptr()))
            self.context.set_tensor_address(self.output_name, int(out.data_ptr()))
            stream = torch.cuda.current_stream()
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError(f"TensorRT execution failed for a batch of {len(batch)}")
            stream.synchronize()
            outputs.append(out.float().cpu().numpy())
        if not outputs:
            return np.zeros((0, self.descriptor_dim), np.float32)
        return unit_rows(np.concatenate(outputs).reshape(len(images), -1))
