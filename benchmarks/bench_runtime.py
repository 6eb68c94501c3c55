"""Descriptor runtimes side by side: torch traced, torch eager and ONNX Runtime, per model, input size and threads.

For each model (EfficientNet-Lite0 NetVLAD with the ImageNet backbone; VGG16-NetVLAD at its full size, K 64
and a 4096-d PCA, with random weights: only time is measured here) and input side (224, 320, 416 px), the
model is exported once with `core.onnx_export.export_onnx` (which checks ONNX Runtime against torch and
prints the figure), then every backend and thread count runs in a fresh subprocess: batch 1, one fixed
image of the input size, a warm-up (traces are made on first use), then timed forward passes for about
``--seconds``. Torch threads are set with `core.threads.apply_thread_budget`, as the node does (inter-op 1,
OpenCV 1); ONNX Runtime gets the same count as its session's intra-op threads (the node's ``onnx_threads``).
Peak RSS is the subprocess's ``ru_maxrss``: the ONNX Runtime process never imports torch, as the node on
that backend does not. Prints frames/s, latency p50/p95, peak RSS and ONNX Runtime's speed over torch's
(traced, and eager). Timing only: nothing is asserted.

Run: ``.venv/bin/python benchmarks/bench_runtime.py [--quick] [--models efficientnet vgg16] [--sizes 224 320 416]
[--threads 1 2] [--seconds 4]``.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from readme_blocks import sync_readme

ROOT = Path(__file__).resolve().parents[1]

BACKENDS = ("torch_traced", "torch_eager", "onnxruntime")


def child(spec: dict) -> dict:
    """One configuration, in this (fresh) process: {fps, p50_ms, p95_ms, peak_rss_mib, iterations}."""
    from gps_denied_nav.core.threads import ThreadBudget, apply_thread_budget

    size_px, threads = spec["size_px"], spec["threads"]
    if spec["backend"] == "onnxruntime":
        from gps_denied_nav.core.runtime import OnnxRuntime

        apply_thread_budget(ThreadBudget(opencv=1))
        runtime = OnnxRuntime(spec["onnx"], spec["model_id"], size_px, spec["descriptor_dim"], "cpu", threads)
    else:
        from gps_denied_nav.core.netvlad import load_checkpoint
        from gps_denied_nav.core.runtime import TorchRuntime

        apply_thread_budget(ThreadBudget(torch_intra_op=threads, torch_inter_op=1, opencv=1))
        model, _ = load_checkpoint(spec["checkpoint"])
        runtime = TorchRuntime(model, "cpu", size_px, traced=spec["backend"] == "torch_traced")  # inference_mode inside
    image = np.random.default_rng(0).integers(0, 256, (1, size_px, size_px, 3), dtype=np.uint8)
    for _ in range(2):
        runtime.describe(image)
    latencies_ms, start = [], time.perf_counter()
    while len(latencies_ms) < spec["min_iterations"] or time.perf_counter() - start < spec["seconds"]:
        t0 = time.perf_counter()
        runtime.describe(image)
        latencies_ms.append(1e3 * (time.perf_counter() - t0))
    p50, p95 = np.percentile(latencies_ms, [50, 95])
    return {"fps": 1e3 / float(np.mean(latencies_ms)), "p50_ms": float(p50), "p95_ms": float(p95),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "iterations": len(latencies_ms)}


def build(name: str):
    """The model to time, with its weights fixed by a seed."""
    import torch

    torch.manual_seed(0)
    if name == "efficientnet":
        from gps_denied_nav.core.netvlad import build_model

        return build_model()
    from gps_denied_nav.core.netvlad_vgg16 import VGG16NetVLAD

    return VGG16NetVLAD().eval()


def export(spec: dict) -> dict:
    """Build the model, save its checkpoint and export it at each size (in a process of its own, see main)."""
    from gps_denied_nav.core.netvlad import save_checkpoint
    from gps_denied_nav.core.onnx_export import export_onnx

    model = build(spec["model"])
    tmp = Path(spec["dir"])
    model_id = save_checkpoint(model, tmp / f"{spec['model']}.pt")
    exports = {}
    for size_px in spec["sizes"]:
        t0 = time.perf_counter()
        result = export_onnx(model, size_px, tmp / f"{spec['model']}_{size_px}.onnx")
        exports[size_px] = {"path": str(result.path), "max_abs_diff": result.max_abs_diff,
                            "seconds": time.perf_counter() - t0}
    return {"model_id": model_id, "checkpoint": str(tmp / f"{spec['model']}.pt"),
            "descriptor_dim": model.config.descriptor_dim, "exports": exports}


def run(mode: str, spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, mode, json.dumps(spec)], capture_output=True, text=True,
                         check=False)
    if out.returncode:
        raise RuntimeError(f"{mode} {spec} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="about a second per configuration")
    parser.add_argument("--models", nargs="+", default=["efficientnet", "vgg16"], choices=["efficientnet", "vgg16"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 320, 416], help="input sides, px")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="intra-op threads per backend")
    parser.add_argument("--seconds", type=float, default=4.0, help="timed forward passes per configuration")
    parser.add_argument("--markdown", type=Path, help="also write the table here (docs/RUNTIME.md: the README's block)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--export", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child or args.export:
        print(json.dumps(child(json.loads(args.child)) if args.child else export(json.loads(args.export))))
        return

    # This process never imports torch: Linux carries a process's peak RSS over fork and exec into the
    # children's ru_maxrss, so a parent holding the models would set every child's floor.
    seconds, min_iterations = (1.0, 3) if args.quick else (args.seconds, 10)
    header = (f"{'model':13} {'px':>4} {'thr':>3} {'backend':13} {'frames/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
              f"{'peak RSS MiB':>12}  ORT speed / torch traced, eager")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            exported = run("--export", {"model": name, "sizes": args.sizes, "dir": tmp})
            for size_px in args.sizes:
                onnx = exported["exports"][str(size_px)]
                print(f"\n{exported['model_id']} at {size_px} px: exported in {onnx['seconds']:.1f} s, ONNX Runtime "
                      f"vs torch max abs difference {onnx['max_abs_diff']:.1e}\n{header}", flush=True)
                for threads in args.threads:
                    results = {}
                    for backend in BACKENDS:
                        spec = {"backend": backend, "size_px": size_px, "threads": threads, "seconds": seconds,
                                "min_iterations": min_iterations, "checkpoint": exported["checkpoint"],
                                "onnx": onnx["path"], "model_id": exported["model_id"],
                                "descriptor_dim": exported["descriptor_dim"]}
                        r = results[backend] = run("--child", spec)
                        ratio = ""
                        if backend == "onnxruntime":
                            ratio = (f"  x{r['fps'] / results['torch_traced']['fps']:.2f}, "
                                     f"x{r['fps'] / results['torch_eager']['fps']:.2f}")
                        print(f"{name:13} {size_px:4d} {threads:3d} {backend:13} {r['fps']:8.2f} {r['p50_ms']:8.1f} "
                              f"{r['p95_ms']:8.1f} {r['peak_rss_mib']:12.0f}{ratio}", flush=True)
                    rows.append((name, size_px, threads, results, onnx["max_abs_diff"]))
    if args.markdown:
        args.markdown.write_text(markdown(rows, seconds))
        if args.markdown.resolve() == (ROOT / "docs" / "RUNTIME.md").resolve():
            sync_readme(("runtime",))


def markdown(rows, seconds: float) -> str:
    from gps_denied_nav.replay.machine import machine_info

    m = machine_info()
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {m['cpu_model']}, {m['cores']} cores "
             f"(`benchmarks/bench_runtime.py`, batch 1, {seconds:.0f} s of forward passes per row, each in a fresh "
             "process; frames/s and p50/p95 ms; peak RSS of that process):", "",
             "| model | px | threads | torch traced | torch eager | ONNX Runtime | ORT / traced | peak MiB torch -> ORT "
             "| ORT vs torch max abs diff |", "|---|---|---|---|---|---|---|---|---|"]
    for name, size_px, threads, r, diff in rows:
        cell = lambda b: f"{r[b]['fps']:.1f} fps, {r[b]['p50_ms']:.0f}/{r[b]['p95_ms']:.0f} ms"  # noqa: E731
        lines.append(f"| {name} | {size_px} | {threads} | {cell('torch_traced')} | {cell('torch_eager')} | "
                     f"{cell('onnxruntime')} | x{r['onnxruntime']['fps'] / r['torch_traced']['fps']:.2f} | "
                     f"{r['torch_traced']['peak_rss_mib']:.0f} -> {r['onnxruntime']['peak_rss_mib']:.0f} | {diff:.1e} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
