"""Country-scale corpus sizing from measured inputs: tile counts, bytes per tile, provisioning hours, and what
one mission area puts on the Jetson. Prints the tables of docs/SIZING.md (``--write`` replaces its block).

Measured inputs: a provisioned corpus (``--corpus``: bytes per SIFT keypoint, keypoints per cell, preview
bytes per pixel, tiles.json bytes per tile, model bytes) and `bench_provision_ray.py`'s per-tile CPU costs
(``--bench``). Stated assumptions (flags, printed with the tables): the GPU descriptor throughput and the CPU
cores per GPU node, because no GPU was measured here. Everything else is arithmetic on the grid:
150 m tiles every 50 m are one tile and one SIFT cell per 50 m x 50 m, 400 per km^2.
Run: ``.venv/bin/python benchmarks/sizing.py [--corpus DIR] [--bench docs/provision_bench.json] [--write]``.
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- sizing.py: begin -->", "<!-- sizing.py: end -->"
AREAS_KM = {"mission area 20 km x 20 km": (20.0, 20.0), "100 km x 100 km": (100.0, 100.0),
            "country, 300 000 km^2": (math.sqrt(3.0e5), math.sqrt(3.0e5))}
DESCRIPTOR_BYTES = {"4096-d float32 (default NetVLAD)": 4096 * 4, "256-d float32 (PCA, gdn train-vpr)": 256 * 4,
                    "IVF-PQ 64 B codes + 8 B id": 64 + 8}


def measure_corpus(corpus: Path) -> dict:
    manifest = json.loads((corpus / "manifest.json").read_text())
    files = {name: record["bytes"] for name, record in manifest["files"].items()}
    with np.load(corpus / "features.npz") as npz:
        per_cell = np.diff(npz["cell_offsets"])
        bytes_per_kp = (npz["keypoints_enu_m"].itemsize * 2 + npz["descriptors"].itemsize * 128)
    preview = manifest["preview_geometry"]
    return {"corpus": corpus.name, "tiles": manifest["num_tiles"], "cells": len(per_cell),
            "kp_per_cell_median": float(np.median(per_cell)), "bytes_per_kp": int(bytes_per_kp),
            "features_bytes_per_cell": files["features.npz"] / len(per_cell),
            "tiles_json_bytes_per_tile": files["tiles.json"] / manifest["num_tiles"],
            "preview_bytes_per_px": files["map.png"] / (preview["width_px"] * preview["height_px"]),
            "model_bytes": files["model.pt"], "stride_m": manifest["tile_stride_m"],
            "tile_size_m": manifest["tile_size_m"], "terrain_step_m": manifest["provision_config"]["terrain_step_m"],
            "gsd_m": manifest["map_geometry"]["gsd_m"]}


def grid_count(side_km: float, size_m: float, stride_m: float) -> int:
    return max(0, math.floor((1000.0 * side_km - size_m) / stride_m + 1e-9) + 1)


def tables(m: dict, bench: dict, gpu_tiles_per_s: float, cores_per_gpu: int, gpus: list[int], area_km: float) -> str:
    stride, size = m["stride_m"], m["tile_size_m"]
    kp_bytes_per_cell = m["kp_per_cell_median"] * m["bytes_per_kp"]
    out = [f"Measured on corpus `{m['corpus']}` ({m['tiles']} tiles, {m['cells']} cells): "
           f"{m['kp_per_cell_median']:.0f} SIFT keypoints per interior {stride:g} m cell (median), "
           f"{m['bytes_per_kp']} B per keypoint (ENU float32 x 2 + float32 x 128), "
           f"{m['tiles_json_bytes_per_tile']:.0f} B of tiles.json per tile, {m['preview_bytes_per_px']:.2f} B per "
           f"map.png pixel. CPU costs from `{bench['map']}` ({bench['tiles']} tiles, {bench['tile_px']} px, one "
           f"thread, {bench['cpu']}): {1e3 * bench['descriptor_s_per_tile_1thread']:.0f} ms per tile descriptor, "
           f"{1e3 * bench['sift_s_per_cell_1thread']:.0f} ms per SIFT cell of {stride / m['gsd_m']:.0f} px "
           f"({m['gsd_m']:.3f} m/px imagery; SIFT's cost grows with the pixels, so 0.25 m/px would be about "
           f"{(m['gsd_m'] / 0.25) ** 2:.1f}x of it).", "",
           f"| area | tiles ({size:g} m / {stride:g} m) | SIFT cells | " + " | ".join(DESCRIPTOR_BYTES) + " | SIFT |",
           "|---|---:|---:|" + "---:|" * (len(DESCRIPTOR_BYTES) + 1)]
    counts = {}
    for name, (east_km, north_km) in AREAS_KM.items():
        tiles = grid_count(east_km, size, stride) * grid_count(north_km, size, stride)
        cells = round(1e6 * east_km * north_km / stride ** 2)
        counts[name] = (tiles, cells)
        out.append(f"| {name} | {tiles:,} | {cells:,} | "
                   + " | ".join(_bytes(tiles * b) for b in DESCRIPTOR_BYTES.values())
                   + f" | {_bytes(cells * kp_bytes_per_cell)} |")
    out += ["", "A flat or IVF-Flat index.faiss holds a second copy of the float32 descriptors (IVF-PQ replaces "
                "both). SIFT at 520 B per keypoint is the bulk; stored as uint8 RootSIFT (128 B) with float16 "
                "cell-relative positions (4 B) it would be 132 B, a quarter.", ""]

    d_s, s_s = bench["descriptor_s_per_tile_1thread"], bench["sift_s_per_cell_1thread"]
    out += [f"Provisioning hours. CPU: one core per worker, measured costs. GPU: **assumed** {gpu_tiles_per_s:g} "
            f"descriptors/s per GPU (not measured here) with {cores_per_gpu} CPU cores per GPU for SIFT and tile "
            "cutting; a node's rate is the slower of the two.", "",
            "| area | CPU core-hours | " + " | ".join(f"{n} GPU{'s' * (n > 1)}" for n in gpus) + " | bound by |",
            "|---|---:|" + "---:|" * len(gpus) + "---|"]
    for name, (tiles, cells) in counts.items():
        core_h = (tiles * d_s + cells * s_s) / 3600.0
        sift_per_s = cores_per_gpu / s_s  # cells/s per node; one cell per tile on the grid
        node_per_s = min(gpu_tiles_per_s, sift_per_s)
        hours = [tiles / (n * node_per_s) / 3600.0 for n in gpus]
        bound = "SIFT (CPU)" if sift_per_s < gpu_tiles_per_s else "descriptors (GPU)"
        out.append(f"| {name} | {core_h:,.0f} | " + " | ".join(_duration(h) for h in hours) + f" | {bound} |")

    side_m = 1000.0 * area_km
    tiles, cells = counts["mission area 20 km x 20 km"]
    terrain_nodes = (side_m / m["terrain_step_m"] + 1) ** 2
    preview_px = 2048 ** 2  # ProvisionConfig.preview_max_px on the longer side
    rows = [("descriptors 4096-d float32 + flat/IVF-Flat index copy", 2 * tiles * 4096 * 4),
            ("descriptors 256-d float32 + index copy", 2 * tiles * 256 * 4),
            (f"SIFT features ({m['bytes_per_kp']} B/keypoint, as stored now)", cells * kp_bytes_per_cell),
            ("SIFT features as uint8 + float16 (132 B/keypoint)", cells * m["kp_per_cell_median"] * 132),
            ("tiles.json", tiles * m["tiles_json_bytes_per_tile"]),
            ("map.png preview (2048 px side)", preview_px * m["preview_bytes_per_px"]),
            (f"terrain.npz ({m['terrain_step_m']:g} m float32 grid)", terrain_nodes * 4),
            ("model.pt", m["model_bytes"])]
    out += ["", f"On board, one mission area of {area_km:g} km x {area_km:g} km ({tiles:,} tiles):", "",
            "| file | bytes |", "|---|---:|"] + [f"| {name} | {_bytes(b)} |" for name, b in rows]
    as_stored = sum(b for name, b in rows if "256-d" not in name and "uint8" not in name)
    compact = sum(b for name, b in rows if "4096-d" not in name and "as stored" not in name)
    out += [f"| **total as stored today** | **{_bytes(as_stored)}** |",
            f"| **total with 256-d descriptors and compact SIFT** | **{_bytes(compact)}** |"]
    n_east = math.ceil((1000 * AREAS_KM["100 km x 100 km"][0] - (size + stride)) / (side_m - (size + stride)))
    out += ["", f"Split (`gdn provision --split-area-km {area_km:g}`, overlap one tile + one stride = "
                f"{size + stride:g} m): 100 km x 100 km is {n_east} x {n_east} = {n_east ** 2} areas; the country "
                f"at least {math.ceil(3.0e5 / ((side_m - size - stride) / 1000) ** 2):,} (more along its "
                "coasts and borders)."]
    return "\n".join(out)


def _duration(hours: float) -> str:
    return f"{hours:,.1f} h" if hours >= 1.0 else f"{60.0 * hours:.0f} min" if hours >= 1 / 60 else "< 1 min"


def _bytes(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:.0f} B"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path(tempfile.gettempdir()) / "bench_provision_ray" / "single_1t",
                        help="a provisioned corpus of real imagery with the default config")
    parser.add_argument("--bench", type=Path, default=ROOT / "docs" / "provision_bench.json")
    parser.add_argument("--gpu-tiles-per-s", type=float, default=1000.0,
                        help="ASSUMED descriptor throughput of one GPU (320 px, fp16, batch 64)")
    parser.add_argument("--cores-per-gpu", type=int, default=16, help="CPU cores per GPU for SIFT")
    parser.add_argument("--area-km", type=float, default=20.0)
    parser.add_argument("--write", action="store_true", help="replace the block in docs/SIZING.md")
    args = parser.parse_args()
    measured = measure_corpus(args.corpus)
    text = tables(measured, json.loads(args.bench.read_text()), args.gpu_tiles_per_s, args.cores_per_gpu,
                  [1, 8, 64], args.area_km)
    print(text)
    if args.write:
        doc = ROOT / "docs" / "SIZING.md"
        body = doc.read_text()
        start, end = body.index(BEGIN) + len(BEGIN), body.index(END)
        doc.write_text(body[:start] + "\n" + text + "\n" + body[end:])


if __name__ == "__main__":
    main()
