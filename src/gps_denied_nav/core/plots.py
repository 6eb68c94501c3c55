"""Replay plots (trajectory over the map, error over time) and the retrieval debug mosaic.

The two plots are written by the replay tool next to report.json; they draw on a bare matplotlib
``Figure`` with the Agg canvas rather than through pyplot, so nothing switches a global backend, needs a
display or keeps figures alive between calls. The mosaic is what the retrieval node publishes as its
debug image for every query, so it is plain numpy + OpenCV: a few milliseconds, and byte-for-byte the
same output for the same input. All coordinates are ENU metres of one frame (``map``), map rasters are
north-up (docs/ARCHITECTURE.md), images are RGB ``uint8``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

COLOR_TRUTH = "#111111"
COLOR_ESTIMATE = "#e4572e"
COLOR_FIX = "#17becf"
COLOR_GNSS = "#7f7f7f"


def _figure(width_in: float, height_in: float):
    # Imported here: the retrieval node imports this module for the mosaic only and should not pay for
    # (or depend on) matplotlib.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _xy(points) -> np.ndarray:
    """Array-like [N, >=2] (or empty) -> float [N, 2] east/north."""
    points = np.asarray(points, dtype=float)
    return points.reshape(-1, points.shape[-1] if points.ndim > 1 else 2)[:, :2]


def plot_trajectory(path_png, map_preview_rgb: np.ndarray | None, map_extent_enu_m, gt_enu, est_enu, fixes_enu,
                    title: str = "Trajectory: ground truth, fused estimate, visual fixes") -> Path:
    """Write a top-down plot of the flight over the map image; returns the PNG path.

    map_preview_rgb [H, W, 3] uint8 north-up raster (or None), map_extent_enu_m (east_min_m, east_max_m,
    north_min_m, north_max_m) of its outer pixel edges; gt_enu [N, 2|3], est_enu [M, 2|3], fixes_enu [F, 2|3]
    in metres of the map's ENU frame (any may be empty). The view is cropped to the tracks plus a margin.
    """
    from matplotlib import patheffects

    gt, est, fixes = _xy(gt_enu), _xy(est_enu), _xy(fixes_enu)
    tracks = np.concatenate([gt, est, fixes])
    tracks = tracks[np.all(np.isfinite(tracks), axis=1)]
    limits = None
    if len(tracks):
        lo, hi = tracks.min(axis=0), tracks.max(axis=0)
        margin = max(50.0, 0.1 * float(np.max(hi - lo)))
        limits = (lo[0] - margin, hi[0] + margin, lo[1] - margin, hi[1] + margin)
    elif map_extent_enu_m is not None:
        limits = tuple(map_extent_enu_m)
    # Figure shaped like the area shown, so an elongated flight does not leave wide empty bands.
    aspect = 1.0 if limits is None else (limits[3] - limits[2]) / (limits[1] - limits[0])
    fig = _figure(8.0, float(np.clip(7.0 * aspect + 1.2, 4.0, 10.0)))
    ax = fig.add_subplot()
    if map_preview_rgb is not None and map_extent_enu_m is not None:
        ax.imshow(map_preview_rgb, extent=tuple(map_extent_enu_m), origin="upper", interpolation="bilinear")
    else:
        ax.grid(True, color="#dddddd")
    # A light halo keeps dark lines readable over dark map areas and vice versa.
    halo = [patheffects.withStroke(linewidth=4.0, foreground="white", alpha=0.8)]
    if len(est):
        ax.plot(est[:, 0], est[:, 1], color=COLOR_ESTIMATE, lw=1.5, path_effects=halo, zorder=2,
                label="fused estimate")
    if len(gt):
        ax.plot(gt[:, 0], gt[:, 1], color=COLOR_TRUTH, lw=1.2, zorder=3, label="ground truth")
    if len(fixes):
        ax.scatter(fixes[:, 0], fixes[:, 1], s=14, c=COLOR_FIX, edgecolors="black", linewidths=0.5, zorder=4,
                   label=f"visual fixes ({len(fixes)})")
    if len(gt):
        ax.plot(*gt[0], marker="^", ms=10, color="#2ca02c", mec="black", ls="none", zorder=5, label="start")
        ax.plot(*gt[-1], marker="s", ms=9, color="#d62728", mec="black", ls="none", zorder=5, label="end")
    if limits is not None:
        ax.set_xlim(limits[0], limits[1])
        ax.set_ylim(limits[2], limits[3])
    ax.set_aspect("equal", adjustable="box")  # keep the cropped limits; the axes box takes their shape
    ax.set_xlabel("east [m]")
    ax.set_ylabel("north [m]")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", framealpha=0.85, fontsize=9)
    fig.savefig(path_png)
    return Path(path_png)


def plot_error_over_time(path_png, t_s, err_m, sigma3_m, fix_times_s, gnss_lost_s: float | None,
                         t0_s: float | None = None,
                         title: str = "Horizontal error of the fused estimate") -> Path:
    """Write horizontal error [m] against time with the filter's 3-sigma envelope; returns the PNG path.

    t_s [K] s, err_m [K] m, sigma3_m [K] m or None (3x the 1-sigma of the reported covariance), fix_times_s
    [F] s (accepted visual fixes, drawn as ticks), gnss_lost_s (a line; earlier time is shaded). Times are
    drawn relative to t0_s (default: the first sample), so bag stamps in Unix seconds stay readable.
    """
    t_s, err_m = np.asarray(t_s, dtype=float), np.asarray(err_m, dtype=float)
    fix_times_s = np.asarray(fix_times_s, dtype=float).reshape(-1)
    if t0_s is None:
        candidates = [t_s[:1], fix_times_s[:1], [] if gnss_lost_s is None else [gnss_lost_s]]
        t0_s = float(min(np.concatenate(candidates), default=0.0))
    fig = _figure(9.0, 4.2)
    ax = fig.add_subplot()
    top_m = float(np.nanmax(err_m)) if np.any(np.isfinite(err_m)) else 1.0
    if sigma3_m is not None and np.any(np.isfinite(sigma3_m)):
        sigma3_m = np.asarray(sigma3_m, dtype=float)
        ax.fill_between(t_s - t0_s, 0.0, sigma3_m, color=COLOR_ESTIMATE, alpha=0.18, lw=0,
                        label="3σ of reported covariance (major axis)")
        # Show the envelope, but not so much of it that a diverged covariance flattens the error curve.
        top_m = max(top_m, min(float(np.nanmax(sigma3_m)), 3.0 * top_m))
    ax.plot(t_s - t0_s, err_m, color=COLOR_ESTIMATE, lw=1.4, label="horizontal error")
    if fix_times_s.size:
        ax.vlines(fix_times_s - t0_s, 0.0, 0.05, transform=ax.get_xaxis_transform(), color=COLOR_FIX, lw=1.0,
                  label=f"accepted visual fix ({fix_times_s.size})")
    if gnss_lost_s is not None:
        ax.axvspan(min(0.0, gnss_lost_s - t0_s), gnss_lost_s - t0_s, color=COLOR_GNSS, alpha=0.15,
                   lw=0, label="GNSS available")
        ax.axvline(gnss_lost_s - t0_s, color=COLOR_GNSS, ls="--", lw=1.2, label="GNSS lost")
    ax.set_ylim(0.0, 1.15 * max(top_m, 1e-3))
    if t_s.size:
        ax.set_xlim(min(0.0, float(t_s[0] - t0_s)), float(t_s[-1] - t0_s))
    else:
        ax.text(0.5, 0.5, "no scored samples", transform=ax.transAxes, ha="center", va="center", color="gray")
    ax.set_xlabel("time since start [s]")
    ax.set_ylabel("horizontal error [m]")
    ax.set_title(title)
    ax.grid(True, color="#e5e5e5")
    if ax.get_legend_handles_labels()[0]:  # outside the axes: the error curve is never hidden
        fig.legend(loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    fig.savefig(path_png)
    return Path(path_png)


def _fit_rgb(image: np.ndarray, box_px: int) -> np.ndarray:
    """Any uint8 image [H, W] / [H, W, 1|3] -> [box_px, box_px, 3], aspect kept, letterboxed in black."""
    image = np.asarray(image, dtype=np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
    h, w = image.shape[:2]
    scale = box_px / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    # INTER_AREA for shrinking (no aliasing on textured aerial imagery); linear when enlarging.
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    small = cv2.resize(image[:, :, :3], (new_w, new_h), interpolation=interp)
    out = np.zeros((box_px, box_px, 3), np.uint8)
    y0, x0 = (box_px - new_h) // 2, (box_px - new_w) // 2
    out[y0:y0 + new_h, x0:x0 + new_w] = small
    return out


def retrieval_mosaic(query_rgb: np.ndarray, tiles_rgb, scores, chosen_index: int | None,
                     thumb_px: int = 160, labels=None) -> np.ndarray:
    """Query beside its top-K tiles, each labelled with rank and score, the chosen tile framed in green.

    query_rgb [H, W, 3] uint8, tiles_rgb K images [h, w, 3] uint8 (best first), scores [K], chosen_index in
    [0, K) or None (no tile accepted), labels K short strings (e.g. tile ids) or None.
    Returns [H, W, 3] uint8 RGB: H = thumb_px plus one text line (two with labels), W about
    (K + 1) * (thumb_px + 6) px.
    """
    scores = np.asarray(scores, dtype=float).reshape(-1)
    if len(tiles_rgb) != scores.size or (labels is not None and len(labels) != scores.size):
        raise ValueError(f"{len(tiles_rgb)} tiles, {scores.size} scores and labels must match")
    pad, gap, frame = 6, 12, 3
    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, 0.42 * thumb_px / 160
    line_px = int(round(18 * thumb_px / 160))
    text_px = line_px * (2 if labels is not None else 1) + pad
    width = pad + (thumb_px + pad) * (scores.size + 1) + gap
    canvas = np.full((pad + thumb_px + pad + text_px, width, 3), 32, np.uint8)

    def put(cell_x: int, image: np.ndarray, lines: list[str], border: tuple[int, int, int], thick: int):
        canvas[pad:pad + thumb_px, cell_x:cell_x + thumb_px] = _fit_rgb(image, thumb_px)
        out = thick // 2 + 1  # the frame goes around the thumbnail, never over it
        cv2.rectangle(canvas, (cell_x - out, pad - out), (cell_x + thumb_px + out - 1, pad + thumb_px + out - 1),
                      border, thick)
        for k, line in enumerate(lines):
            cv2.putText(canvas, line, (cell_x + 2, pad + thumb_px + pad + line_px * (k + 1) - 5), font,
                        font_scale, border if thick > 1 else (230, 230, 230), 1, cv2.LINE_AA)

    put(pad, query_rgb, ["query"], (255, 255, 255), 1)
    for k, tile in enumerate(tiles_rgb):
        chosen = chosen_index is not None and k == chosen_index
        lines = [f"#{k + 1}  {scores[k]:.3f}" + ("  chosen" if chosen else "")]
        if labels is not None:
            lines.append(str(labels[k])[:int(thumb_px / 8)])
        put(pad + (thumb_px + pad) * (k + 1) + gap, tile, lines, (40, 220, 60) if chosen else (120, 120, 120),
            frame if chosen else 1)
    return canvas
