"""What pruning and int8 quantisation of the descriptor model cost in retrieval, and what they buy in speed and size.

Every variant of the corpus' model (`core/compression.py`: fp32 torch and ONNX Runtime, L1 unstructured and L2
channel pruning at 10/20/30 %, dynamic int8 of the linear layers in torch, static int8 QDQ in ONNX Runtime
calibrated on the corpus' own tiles) re-describes the corpus' tiles, cut again from its map as provisioning cut
them (a deployment rebuilds its index with the model it runs: the corpus' flat index ranks exactly as the inner
products here do), and the frames of the evaluation clips, rectified with the ground-truth attitude and height as
`gdn eval-retrieval` does. Frames over no tile are left out, as there. Recall@k (global and within a 200 m prior
around the truth moved by 50 m of noise, the same draw as `gdn eval-retrieval`) is pooled over the clips' frames.
Latency: batch 1, the corpus' tile size, one thread, p50/p95 over ``--seconds`` of forward passes, each variant in
a fresh process (peak memory is that process's VmHWM). Timing on a shared machine is noisy: compare ratios.
Writes OUT/COMPRESSION.md and OUT/compression.json (OUT: docs/, or WORK with --quick) and prints the table.

Inputs from ``benchmarks/eval_vpr_turku.py --work DIR`` (the trained corpus, its map and the two flights):

    .venv/bin/python benchmarks/eval_compression.py --corpus DIR/corpus_trained --ortho DIR/turku.tif \\
        --clips DIR/clip_101_180s.mcap DIR/clip_102_180s.mcap --work /tmp/gdn_compression [--quick]
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# (name, transform, amount): the transform names of `variant_model` and the two ONNX files.
VARIANTS = (("fp32 torch (baseline)", "none", 0.0), ("fp32 ONNX Runtime", "onnx_fp32", 0.0),
            *((f"L1 unstructured {a:.0%}", "prune_unstructured", a) for a in (0.1, 0.2, 0.3)),
            *((f"L2 channels {a:.0%} (zeroed)", "prune_structured", a) for a in (0.1, 0.2, 0.3)),
            ("dynamic int8 Linear (torch)", "quantize_dynamic", 0.0),
            ("static int8 QDQ (ONNX Runtime)", "onnx_int8", 0.0))
KS = (1, 5, 10)


def variant_model(model, transform: str, amount: float):
    """The torch model of a variant (the same in the parent and in the timing process: every transform is
    deterministic)."""
    from gps_denied_nav.core import compression

    if transform in ("none", "onnx_fp32", "onnx_int8"):
        return model
    if transform == "quantize_dynamic":
        return compression.quantize_dynamic_linear(model)
    return getattr(compression, transform)(model, amount)


def variant_runtime(spec: dict, reference, variant, threads: int):
    """A DescriptorRuntime for the variant: its torch model (traced) or an ONNX Runtime session with ``threads``."""
    from gps_denied_nav.core.compression import torch_runtime
    from gps_denied_nav.core.runtime import OnnxRuntime

    if spec["transform"].startswith("onnx"):
        return OnnxRuntime(spec["onnx"], spec["model_id"], spec["px"], spec["descriptor_dim"], "cpu", threads)
    return torch_runtime(variant, reference, spec["px"], spec["transform"])


def latency_child(spec: dict) -> dict:
    """In this fresh process: {p50_ms, p95_ms, fps, peak_mib, iterations} of one variant at batch 1, one thread."""
    from gps_denied_nav.core.threads import ThreadBudget, apply_thread_budget

    model = None
    if not spec["transform"].startswith("onnx"):  # the ONNX Runtime process never imports torch, as on the node
        from gps_denied_nav.core.netvlad import load_checkpoint

        apply_thread_budget(ThreadBudget(torch_intra_op=1, torch_inter_op=1, opencv=1))
        model, _ = load_checkpoint(spec["checkpoint"])
    else:
        apply_thread_budget(ThreadBudget(opencv=1))
    variant = None if model is None else variant_model(model, spec["transform"], spec["amount"])
    runtime = variant_runtime(spec, model, variant, threads=1)
    image = np.random.default_rng(0).integers(0, 256, (1, spec["px"], spec["px"], 3), dtype=np.uint8)
    for _ in range(2):  # the trace is made on first use
        runtime.describe(image)
    latencies_ms, start = [], time.perf_counter()
    while len(latencies_ms) < 5 or time.perf_counter() - start < spec["seconds"]:
        t0 = time.perf_counter()
        runtime.describe(image)
        latencies_ms.append(1e3 * (time.perf_counter() - t0))
    # VmHWM belongs to this process's own address space; ru_maxrss would carry over the parent's peak.
    status = Path("/proc/self/status").read_text()
    peak_kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
    p50, p95 = np.percentile(latencies_ms, [50, 95])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "fps": 1e3 / float(np.mean(latencies_ms)),
            "peak_mib": peak_kib / 1024.0, "iterations": len(latencies_ms)}


def rectified_queries(clip, corpus, every: int = 1, prior_radius_m: float = 200.0, prior_sigma_m: float = 50.0,
                      seed: int = 0) -> dict:
    """The clip's frames over a tile, rectified north-up as `replay.eval_retrieval.evaluate_clip` rectifies them
    (the same generator), resized to the tile size; with their truth and prior [Q x 2]."""
    from gps_denied_nav.core.runtime import resize_images
    from gps_denied_nav.replay.eval_retrieval import rectified_queries as frames

    images, truth = [], []
    for _t_s, query, ground in frames(clip, corpus):
        images.append(resize_images([query], corpus.tile_px)[0])  # what every runtime does first
        truth.append(ground)
    truth = np.array(truth)
    prior = truth + np.random.default_rng(seed).normal(0.0, prior_sigma_m, truth.shape)  # evaluate_clip's draw
    distance_m = np.linalg.norm(corpus.tile_centres_enu_m[None] - truth[:, None], axis=2)
    keep = np.flatnonzero(distance_m.min(axis=1) <= corpus.manifest.tile_stride_m)[::every]
    return {"clip": Path(clip).name, "frames": len(truth), "images": [images[i] for i in keep],
            "truth": truth[keep], "prior": prior[keep], "prior_radius_m": prior_radius_m}


def describe(runtime, images, batch: int = 8) -> np.ndarray:
    return np.concatenate([runtime.describe(images[i:i + batch]) for i in range(0, len(images), batch)])


def score(runtime, tile_desc, corpus, queries: list[dict]) -> dict:
    """Per-clip and pooled recall@k, global and prior-narrowed, of the variant's query descriptors."""
    from gps_denied_nav.core.vpr_eval import rank_queries

    ranks, per_clip = {"global": [], "prior": []}, {}
    for q in queries:
        q_desc = describe(runtime, q["images"])
        args = (q_desc, tile_desc, corpus.tile_centres_enu_m, q["truth"], corpus.manifest.tile_stride_m)
        g, p = rank_queries(*args), rank_queries(*args, q["prior"], q["prior_radius_m"])
        ranks["global"] += g["ranks"]
        ranks["prior"] += p["ranks"]
        per_clip[q["clip"]] = {f"recall@{k}": g[f"recall@{k}"] for k in KS}
        per_clip[q["clip"]]["prior"] = {f"recall@{k}": p[f"recall@{k}"] for k in KS}
    pooled = {search: {f"recall@{k}": float(np.mean((np.array(r) >= 1) & (np.array(r) <= k))) for k in KS}
              for search, r in ranks.items()}
    return {"pooled": pooled, "per_clip": per_clip}


def file_sizes(path: Path) -> dict:
    data = path.read_bytes()
    return {"file_mb": len(data) / 1e6, "gzip_mb": len(gzip.compress(data, 6)) / 1e6}


def weight_counts(model) -> dict:
    """Weights of the conv and of the linear layers: what dynamic int8 of nn.Linear alone can reach."""
    from torch import nn

    return {kind.__name__: sum(m.weight.numel() for m in model.modules() if isinstance(m, kind))
            for kind in (nn.Conv2d, nn.Linear)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, help="a trained corpus (copied into --work, never changed)")
    parser.add_argument("--ortho", type=Path, help="its map (default: the manifest's source)")
    parser.add_argument("--clips", type=Path, nargs="+", help="rendered clips with ground truth")
    parser.add_argument("--work", type=Path)
    parser.add_argument("--out", type=Path, help="for COMPRESSION.md, compression.json (default docs/; --quick: WORK)")
    parser.add_argument("--quick", action="store_true", help="every 4th frame, 8 calibration tiles, 1 s of timing")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed forward passes per variant")
    parser.add_argument("--calibration-tiles", type=int, default=32, help="tiles spread over the map to calibrate int8")
    # One: on a loaded 2-core machine two OpenMP threads per forward pass took ten times as long (core/threads.py).
    parser.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime threads to describe (not to time)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(latency_child(json.loads(args.child))))
        return 0
    if not (args.corpus and args.clips and args.work):
        parser.error("--corpus, --clips and --work are required")
    import torch  # noqa: F401 - loaded first: apply_thread_budget sets the libraries already imported only

    from gps_denied_nav.core import compression
    from gps_denied_nav.core.corpus import Corpus
    from gps_denied_nav.core.map_raster import load_geotiff
    from gps_denied_nav.core.onnx_export import export_onnx
    from gps_denied_nav.core.threads import ThreadBudget, apply_thread_budget
    from gps_denied_nav.core.vpr_corpus import _tile_images
    from gps_denied_nav.replay.machine import machine_info

    t0 = time.monotonic()
    apply_thread_budget(ThreadBudget(torch_intra_op=args.threads, torch_inter_op=1, opencv=1))
    every, seconds, calibration = (4, 1.0, 8) if args.quick else (1, args.seconds, args.calibration_tiles)
    out = args.out or (args.work if args.quick else ROOT / "docs")
    corpus_dir, variants_dir = args.work / "corpus", args.work / "variants"
    variants_dir.mkdir(parents=True, exist_ok=True)
    if not (corpus_dir / "manifest.json").exists() or \
            (corpus_dir / "manifest.json").read_text() != (args.corpus / "manifest.json").read_text():
        shutil.rmtree(corpus_dir, ignore_errors=True)
        shutil.copytree(args.corpus, corpus_dir, ignore=shutil.ignore_patterns(".train_vpr", "model.onnx"))
    corpus = Corpus.load(corpus_dir)
    ortho = args.ortho or Path(corpus.manifest.source)
    raster = load_geotiff(ortho, corpus.manifest.provision_config.get("map_gsd_m"), frame=corpus.frame)
    tiles = _tile_images(corpus, raster)
    del raster
    queries = [rectified_queries(clip, corpus, every) for clip in args.clips]
    print(f"{time.monotonic() - t0:.0f} s: {corpus.num_tiles} tiles; " + ", ".join(
        f"{q['clip']}: {len(q['images'])} of {q['frames']} frames over a tile" for q in queries), flush=True)
    checked = {}
    if not args.quick:  # the copied frame loop must score the baseline as `gdn eval-retrieval` does
        from gps_denied_nav.replay.eval_retrieval import evaluate_clip

        for clip in args.clips:
            r = evaluate_clip(clip, corpus_dir, args.work / f"eval_retrieval_{clip.stem}")
            checked[clip.name] = {f"recall@{k}": r[f"recall@{k}"] for k in KS}
    model = corpus.load_model()
    px, dim = corpus.tile_px, corpus.descriptor_dim
    export = export_onnx(model, px, variants_dir / "fp32.onnx", map_images=tiles[:3])
    calibration_tiles = [tiles[i] for i in np.linspace(0, len(tiles) - 1, min(calibration, len(tiles))).astype(int)]
    compression.quantize_onnx_static(export.path, variants_dir / "int8.onnx", calibration_tiles, px)
    print(f"{time.monotonic() - t0:.0f} s: exported and quantised", flush=True)
    rows, reference_tiles = [], None
    for name, transform, amount in VARIANTS:
        spec = {"transform": transform, "amount": amount, "checkpoint": str(corpus.model_path), "px": px,
                "onnx": str(variants_dir / ("int8.onnx" if transform == "onnx_int8" else "fp32.onnx")),
                "model_id": corpus.model_id, "descriptor_dim": dim, "seconds": seconds}
        variant = variant_model(model, transform, amount)
        runtime = variant_runtime(spec, model, variant, args.threads)
        tile_desc = describe(runtime, tiles)
        reference_tiles = tile_desc if reference_tiles is None else reference_tiles
        cosine = (tile_desc * reference_tiles).sum(axis=1)
        row = {"variant": name, "transform": transform, "amount": amount, **score(runtime, tile_desc, corpus, queries),
               "tile_cosine_to_fp32": {"mean": float(cosine.mean()), "min": float(cosine.min())},
               "weight_sparsity": compression.weight_sparsity(variant),
               "zeroed_channel_share": compression.zeroed_channel_share(variant)}
        if transform.startswith("onnx"):
            row.update(file_sizes(Path(spec["onnx"])), onnx_ops=compression.onnx_op_counts(spec["onnx"]))
        else:
            compression.state_dict_bytes(variant, variants_dir / f"{transform}_{amount:g}.pt")
            row.update(file_sizes(variants_dir / f"{transform}_{amount:g}.pt"))
        child = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                               check=False)
        if child.returncode:
            raise RuntimeError(f"timing {name} failed:\n{child.stderr[-2000:]}")
        row["latency"] = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{time.monotonic() - t0:4.0f} s: {name:32} recall@1 {row['pooled']['global']['recall@1']:.3f}  "
              f"prior {row['pooled']['prior']['recall@1']:.3f}  cos {cosine.mean():.3f}  "
              f"p50 {row['latency']['p50_ms']:.0f} ms  {row['file_mb']:.1f} MB", flush=True)
    stored = float(np.abs(reference_tiles - np.asarray(corpus.descriptors)).max())
    for clip, recall in checked.items():
        rows[0]["per_clip"][clip]["gdn_eval_retrieval"] = recall
    record = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d"), "quick": args.quick,
              "corpus": {"name": args.corpus.name, "model_id": corpus.model_id, "tiles": corpus.num_tiles,
                         "tile_px": px, "descriptor_dim": dim, "whitened_dim": model.config.whitened_dim},
              "clips": [{"clip": q["clip"], "frames": q["frames"], "scored": len(q["images"])} for q in queries],
              "baseline_tiles_vs_stored_max_abs": stored, "onnx_export_max_abs_diff": export.max_abs_diff,
              "calibration_tiles": len(calibration_tiles), "weights": weight_counts(model),
              "latency_seconds": seconds, "variants": rows, "seconds": time.monotonic() - t0}
    out.mkdir(parents=True, exist_ok=True)
    (out / "compression.json").write_text(json.dumps(record, indent=1) + "\n")
    table = markdown(record)
    (out / "COMPRESSION.md").write_text(table)
    print(table)
    return 0


def markdown(record: dict) -> str:
    m, c, variants = record["machine"], record["corpus"], record["variants"]
    base = variants[0]["pooled"]["global"]["recall@1"]
    scored = ", ".join(f"{q['clip']} {q['scored']} of {q['frames']}" for q in record["clips"])
    lines = [f"Measured {record['date']} on {m['cpu_model']}, {m['cores']} cores, load {m['load_avg_1_5_15'][0]:.1f} "
             f"(`benchmarks/eval_compression.py`{' --quick' if record['quick'] else ''}): the corpus' model "
             f"{c['model_id']} ({c['descriptor_dim']}-d), tiles re-described by each variant, frames over a tile "
             f"({scored}) pooled. Latency: batch 1, {c['tile_px']} px, 1 thread, {record['latency_seconds']:g} s per "
             "variant in a fresh process, on a shared machine (noisy; compare ratios).", "",
             "| variant | recall@1 | @5 | @10 | prior @1 | prior @5 | Δrecall@1 | recall@1 by clip | tile cos to fp32 "
             "mean / min | p50 / p95 ms | frames/s | peak MiB | file MB (gzip) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for v in variants:
        g, p, lat = v["pooled"]["global"], v["pooled"]["prior"], v["latency"]
        by_clip = " / ".join(f"{r['recall@1']:.2f}" for r in v["per_clip"].values())
        lines.append(f"| {v['variant']} | {g['recall@1']:.3f} | {g['recall@5']:.3f} | {g['recall@10']:.3f} | "
                     f"{p['recall@1']:.3f} | {p['recall@5']:.3f} | {g['recall@1'] - base:+.3f} | {by_clip} | "
                     f"{v['tile_cosine_to_fp32']['mean']:.3f} / {v['tile_cosine_to_fp32']['min']:.3f} | "
                     f"{lat['p50_ms']:.0f} / {lat['p95_ms']:.0f} | {lat['fps']:.1f} | {lat['peak_mib']:.0f} | "
                     f"{v['file_mb']:.1f} ({v['gzip_mb']:.1f}) |")
    sparsity = {v["variant"]: v for v in variants}
    lines += ["", "Weight sparsity over the conv and linear weights: " + ", ".join(
        f"{name} {v['weight_sparsity']:.0%}" + (f" ({v['zeroed_channel_share']:.0%} of conv output channels zeroed)"
                                                if v["transform"] == "prune_structured" else "")
        for name, v in sparsity.items() if v["amount"]) + ". The ONNX int8 graph has "
        f"{sparsity['static int8 QDQ (ONNX Runtime)']['onnx_ops'].get('QuantizeLinear', 0)} QuantizeLinear nodes, "
        f"calibrated on {record['calibration_tiles']} of the corpus' tiles. Baseline tile descriptors against the "
        f"corpus' stored ones: max abs difference {record['baseline_tiles_vs_stored_max_abs']:.1e}."]
    checked = [r for r in variants[0]["per_clip"].values() if "gdn_eval_retrieval" in r]
    if checked:
        lines[-1] += (" `gdn eval-retrieval` on the same corpus and clips: recall@1 " + " / ".join(
            f"{r['gdn_eval_retrieval']['recall@1']:.2f}" for r in checked) + " (the baseline row's by clip).")
    w = record["weights"]
    lines += ["", "L2 channel pruning zeroes whole conv filters but keeps every tensor's shape: dense kernels multiply "
              "the zeros as fast as any number, and the batch norm after a zeroed channel still adds its shift, so the "
              "channel carries a constant. A speed-up needs the channels removed (with the next layer's input channels "
              "and that constant folded into its bias, e.g. by a dependency-graph pruner) and the model fine-tuned; "
              "unstructured zeros need a sparse kernel or a compressed file (gzip column) to pay.",
              "", "Dynamic int8 quantises nn.Linear only (eager torch has no dynamic int8 conv): here "
              + (f"the PCA whitening layer alone: {w['Linear'] / 1e6:.2f} M of the "
                 f"{(w['Linear'] + w['Conv2d']) / 1e6:.2f} M weights, but as many multiply-adds per image against "
                 "about 0.8 G in the convs at 320 px, which stay fp32." if w["Linear"] else
                 "the model has no linear layer (no PCA whitening): the variant is the fp32 model.")
              + " Static int8 in ONNX Runtime quantises the convs (ReLU6 folded into their output range) and the "
              "whitening; NetVLAD's aggregation MatMul, the softmax and the normalisations stay fp32 "
              "(core/compression.py says why)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
