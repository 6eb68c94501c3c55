"""Building blocks of the HTML report pages: style, summary cards, tables, embedded images, the fix timeline.

Everything returns an HTML fragment as a string, with every value from a report escaped. The pages must
open from a mail attachment or an archived CI artefact years later, so nothing refers outside the file:
images are ``data:`` URIs, charts are inline SVG whose tooltips are SVG ``<title>`` elements (no script).
"""
from __future__ import annotations

import base64
import html
import math
import numbers
from collections import Counter
from pathlib import Path

COLOR_ACCEPTED = "#2e7d32"
COLOR_FUSED_OTHERWISE = "#81c784"  # the filter used the fix, not as an update: it (re)initialised from it
FUSED_OUTCOMES = frozenset({"accepted", "initialised", "reinitialised_accepted", "reinitialised_from_scratch"})
# Failure colours in the order reasons are met, most frequent first; saturated so they stand out of green.
COLORS_REJECTED = ("#d32f2f", "#f9a825", "#6a1b9a", "#1565c0", "#ef6c00", "#ad1457", "#00838f", "#5d4037",
                   "#9e9d24", "#546e7a")

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1240px; padding: 16px; color: #222; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 26px 0 8px; border-bottom: 1px solid #ddd; }
.sub { color: #555; } .warn { background: #fff3cd; border-left: 6px solid #f0ad4e; padding: 10px 14px; margin: 12px 0; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; min-width: 120px; background: #fafafa; }
.card .v { font-size: 20px; font-weight: 600; } .card .k { color: #555; font-size: 12px; }
.figs { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; } .figs img, .wide { max-width: 100%; }
table { border-collapse: collapse; font-size: 13px; } td, th { border-bottom: 1px solid #eee; padding: 3px 10px; }
th { text-align: left; background: #f3f3f3; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.legend span.sw { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 14px; vertical-align: -1px; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
.item { border: 1px solid #ddd; border-radius: 6px; padding: 8px; width: 380px; }
.item img { max-width: 100%; display: block; margin: 4px 0; } .bad { color: #c62828; font-weight: 600; }
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def fmt(value, digits: int = 2, unit: str = "") -> str:
    """A number for the page: fixed digits, '–' for missing or non-finite values."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return "–"
    text = str(int(value)) if isinstance(value, numbers.Integral) else f"{float(value):.{digits}f}"
    return f"{text} {unit}".rstrip()


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def section(section_id: str, heading: str, content: str) -> str:
    return f"<section id=\"{esc(section_id)}\"><h2>{esc(heading)}</h2>\n{content}\n</section>\n"


def cards(items: list[tuple[str, str]]) -> str:
    """Summary cards from (label, formatted value) pairs."""
    return "<div class=\"cards\">" + "".join(
        f"<div class=\"card\"><div class=\"v\">{esc(v)}</div><div class=\"k\">{esc(k)}</div></div>"
        for k, v in items) + "</div>"


def table(header: list[str], rows: list[list], numeric_columns=()) -> str:
    """A table; cells in ``numeric_columns`` (indexes) are right-aligned. Cells are escaped unless given as
    ``("html", fragment)``."""
    def cell(i: int, v) -> str:
        inner = v[1] if isinstance(v, tuple) and v[0] == "html" else esc(v)
        return f"<td class=\"n\">{inner}</td>" if i in numeric_columns else f"<td>{inner}</td>"
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(i, v) for i, v in enumerate(r)) + "</tr>\n" for r in rows)
    return f"<table><tr>{head}</tr>\n{body}</table>"


def image_mime(data: bytes, name: str = "") -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    return {".webp": "image/webp", ".gif": "image/gif", ".svg": "image/svg+xml"}.get(Path(name).suffix.lower(),
                                                                                     "image/png")


def image_bytes(source, base_dir: Path | None = None) -> bytes | None:
    """Bytes of an image given as bytes or as a path (relative ones under ``base_dir``); None when missing."""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source) or None
    if source is None:
        return None
    path = Path(source)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path.read_bytes() if path.is_file() else None


def img(source, alt: str, base_dir: Path | None = None, css_class: str = "") -> str:
    """An ``<img>`` with the image inlined as a data URI, or '' when there is no image."""
    data = image_bytes(source, base_dir)
    if data is None:
        return ""
    mime = image_mime(data, "" if isinstance(source, (bytes, bytearray)) else str(source))
    uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    cls = f" class=\"{esc(css_class)}\"" if css_class else ""
    return f"<img{cls} alt=\"{esc(alt)}\" src=\"{uri}\">"


def reason_key(entry: dict) -> str:
    """How a frame ended, as in report.json's ``frame_ends``: '<stage>: <outcome>'."""
    return f"{entry.get('stage', '?')}: {entry.get('outcome', '?')}"


def is_accepted(entry: dict) -> bool:
    """The frame's fix was used by the filter (an update or a (re)initialisation)."""
    return entry.get("outcome") in FUSED_OUTCOMES


def reason_colors(entries: list[dict]) -> dict[str, str]:
    """One colour per way of ending: greens for fixes the filter used, the failure palette by frequency for the
    rest."""
    colors = {reason_key(e): COLOR_ACCEPTED if e.get("outcome") == "accepted" else COLOR_FUSED_OTHERWISE
              for e in entries if is_accepted(e)}
    failures = Counter(reason_key(e) for e in entries if not is_accepted(e))
    for i, (key, _n) in enumerate(failures.most_common()):
        colors[key] = COLORS_REJECTED[i % len(COLORS_REJECTED)]
    return colors


def timeline_svg(entries: list[dict], marker_s: float | None = None, marker_label: str = "",
                 width_px: int = 1200, strip_px: int = 44) -> str:
    """An SVG strip, one mark per frame at its stamp coloured by how it ended, a time axis in seconds from the
    first frame and an optional vertical marker (e.g. GNSS lost). Hovering a mark shows the frame."""
    if not entries:
        return "<p>No frames were recorded.</p>"
    colors = reason_colors(entries)
    t = [float(e["stamp_s"]) for e in entries]
    t0, span_s = min(t), max(max(t) - min(t), 1e-9)
    pad = 10
    usable = width_px - 2 * pad
    mark_w = max(1.0, min(8.0, usable / len(entries)))

    def x_of(ts: float) -> float:
        return pad + (ts - t0) / span_s * (usable - mark_w)

    height_px = strip_px + 34
    parts = [f"<svg viewBox=\"0 0 {width_px} {height_px}\" width=\"100%\" role=\"img\" aria-label=\"fix timeline\">",
             f"<rect x=\"0\" y=\"0\" width=\"{width_px}\" height=\"{strip_px}\" fill=\"#f4f4f4\"/>"]
    # Accepted first, failures last, so that a failure is never hidden under its neighbours' marks.
    for e in sorted(entries, key=is_accepted, reverse=True):
        tip = f"t = {float(e['stamp_s']) - t0:.2f} s: {reason_key(e)}"
        if e.get("error_m") is not None:
            tip += f", error {fmt(e['error_m'], 2, 'm')}"
        parts.append(f"<rect x=\"{x_of(float(e['stamp_s'])):.1f}\" y=\"2\" width=\"{mark_w:.1f}\" "
                     f"height=\"{strip_px - 4}\" fill=\"{colors[reason_key(e)]}\"><title>{esc(tip)}</title></rect>")
    step = _tick_step_s(span_s)
    tick = 0.0
    while tick <= span_s + 1e-9:
        x = x_of(t0 + tick) + mark_w / 2
        parts.append(f"<line x1=\"{x:.1f}\" x2=\"{x:.1f}\" y1=\"{strip_px}\" y2=\"{strip_px + 5}\" stroke=\"#555\"/>"
                     f"<text x=\"{x:.1f}\" y=\"{strip_px + 18}\" font-size=\"11\" text-anchor=\"middle\" "
                     f"fill=\"#333\">{tick:g}</text>")
        tick += step
    parts.append(f"<text x=\"{width_px - pad}\" y=\"{strip_px + 31}\" font-size=\"11\" text-anchor=\"end\" "
                 f"fill=\"#333\">s since the first frame</text>")
    if marker_s is not None and t0 <= marker_s <= t0 + span_s:
        x = x_of(marker_s) + mark_w / 2
        parts.append(f"<line x1=\"{x:.1f}\" x2=\"{x:.1f}\" y1=\"0\" y2=\"{strip_px + 8}\" stroke=\"#000\" "
                     f"stroke-width=\"2\" stroke-dasharray=\"4 3\"/><text x=\"{x + 4:.1f}\" y=\"{strip_px + 31}\" "
                     f"font-size=\"11\" fill=\"#000\">{esc(marker_label)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _tick_step_s(span_s: float) -> float:
    """A round tick spacing giving 5 to 12 ticks over span_s."""
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600):
        if span_s / step <= 12:
            return float(step)
    return span_s / 10


def legend(entries: list[dict]) -> str:
    """Colour swatch and frame count per way of ending, most frequent first."""
    colors, counts = reason_colors(entries), Counter(reason_key(e) for e in entries)
    return "<p class=\"legend\">" + "".join(
        f"<span class=\"sw\" style=\"background:{colors[k]}\"></span>{esc(k)}: <b>{n}</b>"
        for k, n in counts.most_common()) + "</p>"


def worst_first(entries: list[dict], limit: int) -> list[dict]:
    """Up to ``limit`` entries worth a look: failures (one of each way of failing before repeats) for half the
    slots, then the largest errors, then more failures if slots are left."""
    firsts, repeats, seen = [], [], set()
    for e in entries:
        if not is_accepted(e):
            (repeats if reason_key(e) in seen else firsts).append(e)
            seen.add(reason_key(e))
    failed = firsts + repeats
    errors = sorted((e for e in entries if is_accepted(e) and e.get("error_m") is not None),
                    key=lambda e: -float(e["error_m"]))
    n_failed = min(len(failed), max(limit // 2, limit - len(errors)))
    chosen = failed[:n_failed] + errors[:limit - n_failed]
    return chosen + failed[n_failed:n_failed + limit - len(chosen)]


def gallery_item(caption: str, detail_rows: list[tuple[str, str]], images: dict | None, base_dir: Path | None,
                 failed: bool) -> str:
    """One gallery entry: a caption, a few label/value lines and whichever images the entry has."""
    lines = "".join(f"<div>{esc(k)}: {esc(v)}</div>" for k, v in detail_rows)
    pictures = "".join(f"<div class=\"sub\">{esc(name)}</div>{tag}" for name, tag in
                       ((n, img(src, n, base_dir)) for n, src in (images or {}).items()) if tag)
    head = f"<div class=\"bad\">{esc(caption)}</div>" if failed else f"<div><b>{esc(caption)}</b></div>"
    return f"<div class=\"item\">{head}{lines}{pictures}</div>"
