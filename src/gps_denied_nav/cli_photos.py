"""``gdn ortho``, ``gdn locate``, ``gdn bag import``: photos without an IMU -- an orthophoto from a survey pass,
photos geolocated one by one, a replayable clip. Heavy imports wait for the handler."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _progress(stage: str):
    from gps_denied_nav.replay.session import print_progress

    return lambda done, total: print_progress(stage, done, total)


def _photo_metadata(args, unreadable: dict | None = None) -> list:
    """The photos' metadata, telemetry applied. A photo that cannot be read at all ends the command, unless
    ``unreadable`` collects it (path -> reason, with an empty PhotoMetadata in the list); none readable: error."""
    from gps_denied_nav.core.photo_metadata import (PhotoMetadata, PhotoMetadataError, apply_telemetry,
                                                    read_photo_metadata, read_telemetry_csv)

    telemetry = read_telemetry_csv(args.telemetry) if args.telemetry else {}
    metas = []
    for photo in args.photos:
        try:
            meta = read_photo_metadata(photo, sensor_width_mm=args.sensor_width_mm)
        except PhotoMetadataError as exc:
            if unreadable is None:
                raise
            unreadable[str(photo)] = f"unreadable photo: {exc}"
            metas.append(PhotoMetadata(path=Path(photo), width_px=0, height_px=0))
            continue
        row = telemetry.get(Path(photo).name)
        metas.append(apply_telemetry(meta, row) if row else meta)
    if unreadable is not None and len(unreadable) == len(metas):
        raise ValueError(f"none of the {len(metas)} photos is readable, e.g. {next(iter(unreadable.values()))}")
    return metas


def cmd_ortho(args) -> int:
    from gps_denied_nav.core.photo_ortho import OrthoConfig, build_orthophoto

    result = build_orthophoto(_photo_metadata(args), args.out, OrthoConfig(gsd_m=args.gsd_m))
    sidecar = {"ground_alt_m": result.ground_alt_m, "yaw_used_deg": result.yaw_used_deg, "yaw_note": result.yaw_note,
               "photos": [str(p) for p in args.photos], "size_px": list(result.size_px)}
    Path(str(args.out) + ".json").write_text(json.dumps(sidecar, indent=1) + "\n")
    print(f"orthophoto {args.out}: {result.size_px[0]} x {result.size_px[1]} px at {args.gsd_m} m; yaw: {result.yaw_note}")
    print(f"take-off ground {result.ground_alt_m:.2f} m (ellipsoidal); its registration is the photos' GPS: "
          f"gdn provision --ortho {args.out} --ground-alt-m {result.ground_alt_m:.2f} --map-sigma-m 3 ...")
    return 0


def cmd_locate(args) -> int:
    from gps_denied_nav.core.corpus import Corpus
    from gps_denied_nav.core.descriptor import DescriptorExtractor
    from gps_denied_nav.core.locate import locate_photo
    from gps_denied_nav.core.locate_report import score_fixes, write_locate_outputs

    from gps_denied_nav.core.locate import PhotoFix

    unreadable: dict = {}
    metas = _photo_metadata(args, unreadable)
    corpus = Corpus.load(Path(args.corpus))
    extractor = DescriptorExtractor(corpus.load_model(), device="cpu", input_px=corpus.tile_px)
    fixes = []
    for k, meta in enumerate(metas):
        reason = unreadable.get(str(meta.path))
        fixes.append(PhotoFix(str(meta.path), False, reason) if reason else locate_photo(meta, corpus, extractor))
        _progress("locate")(k + 1, len(metas))
        print(f"  {Path(meta.path).name}: {fixes[-1].reason}", file=sys.stderr)
    report, per_photo = score_fixes(fixes, metas, args.reference_sigma_m)
    path = write_locate_outputs(args.out, fixes, metas, report, per_photo)
    print(json.dumps(report, indent=2))
    print(f"report: {path}")
    return 0


def cmd_bag_import(args) -> int:
    from gps_denied_nav.replay.photo_clip import photos_in, write_photo_clip

    args.photos = photos_in(args.images)
    unreadable: dict = {}
    result = write_photo_clip(_photo_metadata(args, unreadable), args.out, args.max_width_px, args.gnss_photos,
                              skipped=unreadable)
    for photo, reason in result.skipped.items():
        print(f"  skipped {Path(photo).name}: {reason}", file=sys.stderr)
    print(f"clip {result.path}: {result.frames} frames over {result.duration_s:.1f} s, no IMU: replay it with "
          f"--params params/gps_denied_nav.yaml --params params/vision_only.yaml")
    return 0


def _photo_arguments(p) -> None:
    p.add_argument("--telemetry", help="CSV supplying or overriding metadata per file name (columns: filename, lat, "
                   "lon, abs_alt_m, rel_alt_m, gimbal_roll/pitch/yaw, flight_roll/pitch/yaw, focal_mm, datetime_original)")
    p.add_argument("--sensor-width-mm", type=float, help="sensor width when the camera model is not in the table")


def add_parser(sub) -> None:
    """Register ``ortho``, ``locate`` and ``bag import`` on ``gdn``'s subparsers."""
    p = sub.add_parser("ortho", help="an orthophoto GeoTIFF from overlapping nadir photos (EXIF/XMP or telemetry)")
    p.add_argument("photos", nargs="+", help="JPEG photos of one flight, in flight order")
    p.add_argument("--out", required=True, help="GeoTIFF to write (OUT.json beside it: take-off ground, yaw check)")
    p.add_argument("--gsd-m", type=float, default=0.05, help="output pixel size, m")
    _photo_arguments(p)
    p.set_defaults(func=cmd_ortho)

    p = sub.add_parser("locate", help="geolocate photos one by one against a corpus (no IMU)")
    p.add_argument("photos", nargs="+", help="JPEG photos (EXIF/XMP: focal length, DJI relative altitude, attitude)")
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True, help="directory for locate.json, fixes.geojson, report.json, errors.png")
    p.add_argument("--reference-sigma-m", type=float, default=3.0,
                   help="1-sigma of the photos' own GPS, per axis, when scoring against it (consumer GPS: ~3 m)")
    _photo_arguments(p)
    p.set_defaults(func=cmd_locate)

    p = sub.add_parser("bag", help="flight clip bags")
    bag = p.add_subparsers(dest="bag_command", required=True)
    p = bag.add_parser("import", help="a replayable clip (no IMU) from a folder of photos")
    p.add_argument("--images", required=True, help="folder of JPEG photos (EXIF/XMP, or --telemetry)")
    p.add_argument("--out", required=True, help="clip to write (a rosbag2 MCAP directory)")
    p.add_argument("--max-width-px", type=int, default=1600, help="frames are shrunk to this width")
    p.add_argument("--gnss-photos", type=int, default=0,
                   help="the first N photos' GPS also goes to /gnss/fix (the initialisation before GNSS is lost)")
    _photo_arguments(p)
    p.set_defaults(func=cmd_bag_import)
