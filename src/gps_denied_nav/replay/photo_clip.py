"""``gdn bag import``: a replayable flight clip from a folder of photos (no IMU, no baro).

Each usable photo becomes a camera frame stamped at its capture time (EXIF DateTimeOriginal with sub-seconds,
or the telemetry CSV's), shrunk to ``max_width_px`` with its intrinsics (metadata or telemetry) in
CameraInfo. The photos' own GPS goes to ``/ground_truth/fix`` (for scoring only, with the receiver's sigma as
its covariance: it is consumer GPS, not truth) and, for the first ``gnss_photos`` photos, to ``/gnss/fix``
as well (the initialisation a flight would have had before GNSS was lost). There is no ``/imu/data``: the
graph runs such a clip with the filter's constant-velocity model (params/vision_only.yaml). A photo that
cannot be used gets its reason on the way; the import fails only when no photo is usable.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer

from gps_denied_nav.core.camera import CameraIntrinsics
from gps_denied_nav.core.photo_metadata import PhotoMetadata
from gps_denied_nav.nodes import names
from gps_denied_nav.replay.bag_types import BAG_VERSION
from gps_denied_nav.sim.clip import CAMERA_FRAME, TOPIC_TYPES, _Messages, clip_typestore

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".tif", ".tiff")


@dataclass
class ImportResult:
    path: Path
    frames: int
    skipped: dict = field(default_factory=dict)  # photo -> reason
    duration_s: float = 0.0


def usable(meta: PhotoMetadata) -> str | None:
    """Why a photo cannot be a frame of a clip, or None."""
    if meta.K is None:
        return "no intrinsics (focal length and sensor width, or a telemetry focal_mm)"
    if meta.stamp_s is None:
        return "no capture time (DateTimeOriginal or a telemetry datetime_original)"
    return None


def write_photo_clip(metas: list[PhotoMetadata], out_path, max_width_px: int = 1600, gnss_photos: int = 0,
                     gps_sigma_m: float = 3.0, skipped: dict | None = None) -> ImportResult:
    """Write the usable photos (any order; sorted by capture time) as a rosbag2 MCAP clip at ``out_path``."""
    skipped = dict(skipped or {})
    frames = []
    for meta in metas:
        reason = usable(meta)
        if reason:
            skipped[str(meta.path)] = reason
        else:
            frames.append(meta)
    if not frames:
        raise ValueError(f"no usable photo among {len(metas)}: " + "; ".join(f"{Path(p).name}: {r}"
                                                                           for p, r in list(skipped.items())[:3]))
    frames.sort(key=lambda m: m.stamp_s)
    stamps = [m.stamp_s for m in frames]
    if len(set(stamps)) != len(stamps):
        raise ValueError("photos share a capture time (DateTimeOriginal has whole seconds: give a telemetry CSV "
                         "with distinct datetime_original values)")
    store = clip_typestore()
    m = _Messages(store)
    t = m.t
    writer = Writer(Path(out_path), version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    try:
        conns = {topic: writer.add_connection(topic, TOPIC_TYPES[topic], typestore=store)
                 for topic in (names.IMAGE, names.CAMERA_INFO, names.GNSS_FIX, names.GROUND_TRUTH_FIX)}
        for k, meta in enumerate(frames):
            stamp_ns = int(round(meta.stamp_s * 1e9))
            image = cv2.imread(str(meta.path), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"{meta.path}: cannot decode the image")
            cam = CameraIntrinsics.from_K(np.asarray(meta.K, float), image.shape[1], image.shape[0])
            if image.shape[1] > max_width_px:
                scale = max_width_px / image.shape[1]
                image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                cam = cam.scaled(scale)
            rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            header = m.header(stamp_ns, CAMERA_FRAME)
            K = cam.K
            roi = t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
            info = t["sensor_msgs/msg/CameraInfo"](
                header=header, height=rgb.shape[0], width=rgb.shape[1], distortion_model="plumb_bob", d=np.zeros(5),
                k=K.ravel(), r=np.eye(3).ravel(), p=np.hstack([K, np.zeros((3, 1))]).ravel(), binning_x=0,
                binning_y=0, roi=roi)
            img = t["sensor_msgs/msg/Image"](header=header, height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8",
                                             is_bigendian=0, step=3 * rgb.shape[1], data=np.ascontiguousarray(rgb).ravel())
            writer.write(conns[names.CAMERA_INFO], stamp_ns, m.serialize(info))
            writer.write(conns[names.IMAGE], stamp_ns, m.serialize(img))
            if meta.has_gps and meta.alt_m is not None:
                cov = [gps_sigma_m**2, gps_sigma_m**2, (2.0 * gps_sigma_m) ** 2]
                fix = m.serialize(m.navsatfix(stamp_ns, meta.lat_deg, meta.lon_deg, meta.alt_m, cov))
                writer.write(conns[names.GROUND_TRUTH_FIX], stamp_ns, fix)
                if k < gnss_photos:
                    writer.write(conns[names.GNSS_FIX], stamp_ns, fix)
    finally:
        writer.close()
    return ImportResult(Path(out_path), len(frames), skipped, float(stamps[-1] - stamps[0]))


def photos_in(directory) -> list[Path]:
    """The photo files of a folder, by name."""
    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"photo folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
