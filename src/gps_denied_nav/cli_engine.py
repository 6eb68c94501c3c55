"""``gdn build-engine``: the TensorRT engine for a corpus' model, built on (and only valid for) this machine.

Reads ``CORPUS/model.onnx`` (``gdn export-onnx``), checks that it was exported from the corpus' own model
(the ONNX metadata's ``model_id``), and builds ``CORPUS/engines/<self-describing name>.engine`` with its
sidecar; an engine already there for this GPU, TensorRT, precision, shape and model is reused. int8
calibrates on the corpus' own tiles, cut again from the orthophoto it was provisioned from (``--ortho``).
Heavy imports happen inside the handler, so ``gdn --help`` stays instant.
"""
from __future__ import annotations

import time
from pathlib import Path


def onnx_model_id(onnx_path) -> str | None:
    """The ``model_id`` in the ONNX file's metadata_props; None when the ``onnx`` package is not installed
    (the check is then skipped, with a note) or the file has none."""
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(str(onnx_path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}.get("model_id")


def calibration_tiles(corpus_dir: Path, ortho, count: int) -> list:
    """``count`` of the corpus' tiles, evenly spread over it, cut from ``ortho`` exactly as provisioning did."""
    import numpy as np

    from gps_denied_nav.core.corpus import Corpus
    from gps_denied_nav.core.map_raster import load_geotiff
    from gps_denied_nav.core.vpr_corpus import _tile_images

    corpus = Corpus.load(corpus_dir)
    raster = load_geotiff(ortho, corpus.manifest.provision_config.get("map_gsd_m"), frame=corpus.frame)
    tiles = _tile_images(corpus, raster)
    picks = np.unique(np.linspace(0, len(tiles) - 1, min(count, len(tiles))).round().astype(int))
    return [tiles[i] for i in picks]


def cmd_build_engine(args) -> int:
    from gps_denied_nav.core.corpus_manifest import read_manifest
    from gps_denied_nav.core.runtime import ONNX_FILE
    from gps_denied_nav.core.trt_build import ENGINE_DIR, build_engine, device_engine_key

    corpus_dir = Path(args.corpus)
    manifest = read_manifest(corpus_dir)
    onnx_path = Path(args.onnx) if args.onnx else corpus_dir / ONNX_FILE
    if not onnx_path.is_file():
        raise FileNotFoundError(f"{onnx_path}: no ONNX model; export it first: gdn export-onnx --corpus {corpus_dir}")
    exported_from = onnx_model_id(onnx_path)
    if exported_from is None:
        print(f"note: cannot read {onnx_path.name}'s model_id (no onnx package, or no metadata): not checked "
              f"against the corpus' {manifest.model_id}")
    elif exported_from != manifest.model_id:
        raise ValueError(f"{onnx_path}: exported from {exported_from}, but the corpus' descriptors come from "
                         f"{manifest.model_id}; export it again: gdn export-onnx --corpus {corpus_dir}")
    if args.precision == "int8" and not args.ortho:
        raise ValueError("--precision int8 calibrates on the corpus' own tiles: give --ortho, the GeoTIFF the "
                         "corpus was provisioned from")
    key = device_engine_key(manifest.model_id, onnx_path, args.precision, input_px=manifest.tile_px,
                            batch_min=1, batch_max=args.batch_max)
    images = calibration_tiles(corpus_dir, args.ortho, args.calibration_tiles) if args.precision == "int8" else None
    t0 = time.monotonic()
    path = build_engine(onnx_path, key, corpus_dir / ENGINE_DIR, calibration_images=images,
                        workspace_mb=args.workspace_mb, rebuild=args.rebuild)
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB, {time.monotonic() - t0:.0f} s): {key.model_id}, "
          f"{key.precision}, batch {key.batch_min}-{key.batch_max}, {key.input_px} px, {key.gpu_name} "
          f"(sm {key.compute_capability}), TensorRT {key.tensorrt_version}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("build-engine", help="build (or reuse) the TensorRT engine of a corpus' model on this GPU")
    p.add_argument("--corpus", required=True, help="provisioned corpus with model.onnx (gdn export-onnx)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    p.add_argument("--rebuild", action="store_true", help="build even when a matching engine exists; recalibrate int8")
    p.add_argument("--onnx", help="ONNX model (default: CORPUS/model.onnx)")
    p.add_argument("--ortho", help="int8: the GeoTIFF the corpus was provisioned from (calibration tiles)")
    p.add_argument("--calibration-tiles", type=int, default=512, help="int8: corpus tiles to calibrate on")
    p.add_argument("--batch-max", type=int, default=8, help="largest batch the engine takes (provisioning batches)")
    p.add_argument("--workspace-mb", type=int, default=1024, help="TensorRT builder workspace (GPU memory)")
    p.set_defaults(func=cmd_build_engine)
