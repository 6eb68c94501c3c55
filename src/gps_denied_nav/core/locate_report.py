"""What ``gdn locate`` writes: per-photo records, a GeoJSON of the fixes, the scored report, an error plot and
report.html (``core.report_html``).

When the photos carry GPS, each accepted fix is scored against it. That GPS is itself a consumer
receiver's (a few metres), so the covariance a fix is judged by is its own plus the reference's
(``reference_sigma_m`` per horizontal axis): a fix whose error leaves that 3-sigma ellipse (NEES > 9, 2 dof)
claimed more than it knew. ``nees_mean`` is tested against the chi-square bounds for that many fixes.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from scipy.stats import chi2

from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.locate import PhotoFix
from gps_denied_nav.core.photo_metadata import PhotoMetadata
from gps_denied_nav.core.report_html import write_locate_html


def score_fixes(fixes: list[PhotoFix], metas: list[PhotoMetadata], reference_sigma_m: float) -> tuple[dict, list]:
    """(report.json fields, per-photo scores [{photo, error_m, error_en_m, nees}]) of fixes vs the photos' GPS."""
    accepted = [(f, m) for f, m in zip(fixes, metas) if f.accepted]
    report = {"photos": len(fixes), "fixes_accepted": len(accepted),
              "fix_rate": len(accepted) / len(fixes) if fixes else 0.0, "reference_sigma_m": reference_sigma_m}
    scored = [(f, m) for f, m in accepted if m.has_gps]
    per_photo = []
    if scored:
        frame = LocalTangentPlane(scored[0][1].lat_deg, scored[0][1].lon_deg, 0.0)
        for f, m in scored:
            err = (frame.to_enu(f.lat_deg, f.lon_deg, 0.0) - frame.to_enu(m.lat_deg, m.lon_deg, 0.0))[:2]
            cov = np.asarray(f.cov_enu_m2).reshape(3, 3)[:2, :2] + reference_sigma_m**2 * np.eye(2)
            per_photo.append({"photo": Path(f.photo).name, "error_m": float(np.hypot(*err)),
                              "error_en_m": [float(v) for v in err], "nees": float(err @ np.linalg.solve(cov, err))})
        errors = np.array([p["error_m"] for p in per_photo])
        nees = np.array([p["nees"] for p in per_photo])
        n = len(nees)
        report.update(rmse_m=float(np.sqrt(np.mean(errors**2))), cep50_m=float(np.percentile(errors, 50)),
                      cep95_m=float(np.percentile(errors, 95)), max_error_m=float(errors.max()),
                      nees_mean=float(nees.mean()), nees_bounds_95=[float(v) for v in chi2.ppf([0.025, 0.975], 2 * n) / n],
                      fixes_beyond_3sigma=int(np.sum(nees > 9.0)))
    return report, per_photo


def geojson(fixes: list[PhotoFix]) -> dict:
    """A FeatureCollection: one Point per accepted fix (lon, lat), properties as in locate.json."""
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [f.lon_deg, f.lat_deg, f.alt_m]},
                 "properties": {k: v for k, v in asdict(f).items() if k not in ("lat_deg", "lon_deg")}}
                for f in fixes if f.accepted]
    return {"type": "FeatureCollection", "features": features}


def write_locate_outputs(out_dir, fixes: list[PhotoFix], metas: list[PhotoMetadata], report: dict,
                         per_photo: list) -> Path:
    """locate.json, fixes.geojson, report.json and errors.png into out_dir; returns report.json's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scores = {p["photo"]: p for p in per_photo}
    records = [{**asdict(f), "metadata_problems": list(m.problems), "gps": [m.lat_deg, m.lon_deg, m.alt_m]
                if m.has_gps else None, **{k: v for k, v in scores.get(Path(f.photo).name, {}).items() if k != "photo"}}
               for f, m in zip(fixes, metas)]
    (out / "locate.json").write_text(json.dumps({"photos": records}, indent=1) + "\n")
    (out / "fixes.geojson").write_text(json.dumps(geojson(fixes), indent=1) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    if per_photo:
        plot_errors(out / "errors.png", fixes, per_photo, report["reference_sigma_m"])
    write_locate_html(out, report, records, {Path(m.path).name: thumbnail for m in metas
                                             if (thumbnail := _thumbnail_jpeg(m.path)) is not None})
    return out / "report.json"


def _thumbnail_jpeg(path, width_px: int = 320) -> bytes | None:
    """A small JPEG of the photo for report.html, or None when it cannot be decoded."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_8)
    if image is None:
        return None
    image = cv2.resize(image, (width_px, max(1, round(image.shape[0] * width_px / image.shape[1]))),
                       interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return bytes(buf) if ok else None


def plot_errors(path_png, fixes: list[PhotoFix], per_photo: list, reference_sigma_m: float) -> None:
    """Bar per scored photo: error vs its GPS, and the 3-sigma radius (fix + reference) it claimed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_name = {Path(f.photo).name: f for f in fixes}
    names = [p["photo"] for p in per_photo]
    sigma3 = [3.0 * np.sqrt(0.5 * np.trace(np.asarray(by_name[n].cov_enu_m2).reshape(3, 3)[:2, :2])
                            + reference_sigma_m**2) for n in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(names) + 2.0), 3.2), dpi=100)
    x = np.arange(len(names))
    ax.bar(x, [p["error_m"] for p in per_photo], color="tab:blue", label="error vs photo GPS")
    ax.scatter(x, sigma3, color="tab:red", marker="_", s=400, label="3σ (fix + GPS reference)")
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("horizontal error, m")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path_png)
    plt.close(fig)
