"""What a drone photo knows about itself: size, focal length, time, GPS fix and DJI attitude.

A photo survey can only be replayed or scored if each frame's intrinsics, stamp and rough pose are known,
and those live in the file: EXIF (read with Pillow's lazy header parser, so the 4000x2250 pixels are never
decoded) and DJI's XMP packet (``drone-dji:RelativeAltitude``, gimbal and airframe angles, read with a
regex). A telemetry CSV can supply or override any of it per file name. Missing or implausible values are
not errors: they land in ``PhotoMetadata.problems``, recomputed from the fields so they never go stale.
Only a file that is not a readable JPEG/TIFF raises ``PhotoMetadataError``.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from PIL import Image

# Sensor widths (mm) by EXIF Model, DJI cameras only. Nominal optical formats: 1/2.3" = 6.17 mm,
# 1/2" = 6.4 mm, 1" = 13.2 mm, 4/3" = 17.3 mm (the widths OpenDroneMap's sensor table uses). The 16:9
# modes of these cameras crop rows, not columns, so the width holds for every image size.
SENSOR_WIDTH_MM = {
    "FC300C": 6.17,  # Phantom 3 Standard
    "FC300S": 6.17,  # Phantom 3 Advanced
    "FC300X": 6.17,  # Phantom 3 Professional
    "FC330": 6.17,  # Phantom 4
    "FC350": 6.17,  # Zenmuse X3 (Inspire 1)
    "FC220": 6.17,  # Mavic Pro
    "FC2103": 6.17,  # Mavic Air
    "FC7303": 6.3,  # Mavic Mini (OpenDroneMap's value for this 1/2.3" sensor)
    "FC3170": 6.4,  # Mavic Air 2, 1/2"
    "FC6310": 13.2,  # Phantom 4 Pro, 1"
    "FC6310S": 13.2,  # Phantom 4 Pro V2.0, 1"
    "FC6510": 13.2,  # Zenmuse X4S, 1"
    "FC3411": 13.2,  # Air 2S, 1"
    "L1D-20c": 13.2,  # Mavic 2 Pro, 1"
    "FC6520": 17.3,  # Zenmuse X5S, 4/3"
    "L2D-20c": 17.3,  # Mavic 3, 4/3"
}
FILM_35MM_WIDTH_MM = 36.0
XMP_SEARCH_BYTES = 1 << 20  # a JPEG's XMP sits in an APP1 segment (<= 64 KiB each) before the pixels
EOI_SEARCH_BYTES = 1 << 16  # room for padding some cameras write after a JPEG's end-of-image marker

_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_MAKE, _MODEL = 271, 272
_DATETIME_ORIGINAL, _OFFSET_TIME, _OFFSET_TIME_ORIGINAL, _SUBSEC_ORIGINAL = 36867, 36880, 36881, 37521
_FOCAL_LENGTH, _FOCAL_35MM = 37386, 41989
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON, _GPS_ALT_REF, _GPS_ALT = 1, 2, 3, 4, 5, 6
_TIFF_STRIPS, _TIFF_TILES = (273, 279), (324, 325)  # (offsets, byte counts)


class PhotoMetadataError(ValueError):
    """A photo or telemetry file that cannot be read at all; the message names the file and the problem."""


@dataclass(frozen=True)
class PhotoMetadata:
    """One photo's metadata. Sizes and K are for the pixel array as stored (EXIF Orientation not applied).

    DJI angles are degrees in the north-east-down convention: yaw clockwise from true north in [-180, 180],
    pitch positive nose (or lens) up, so a nadir gimbal reads pitch -90. DJI's gimbal yaw is absolute
    (north-referenced), not relative to the airframe.
    """

    path: Path
    width_px: int
    height_px: int
    make: str = ""
    model: str = ""
    focal_length_mm: float | None = None
    focal_35mm_mm: float | None = None
    sensor_width_mm: float | None = None
    stamp_s: float | None = None  # DateTimeOriginal, POSIX seconds; UTC unless an EXIF offset tag says otherwise
    lat_deg: float | None = None
    lon_deg: float | None = None
    alt_m: float | None = None  # GPS altitude above mean sea level
    relative_alt_m: float | None = None  # DJI: above the take-off point, not above the ground below
    gimbal_rpy_deg: tuple[float, float, float] | None = None
    flight_rpy_deg: tuple[float, float, float] | None = None
    problems: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "problems", _problems(self))

    @property
    def has_gps(self) -> bool:
        lat, lon = self.lat_deg, self.lon_deg
        return (lat is not None and lon is not None and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0
                and (lat, lon) != (0.0, 0.0))

    @property
    def fx_px(self) -> float | None:
        """Focal length in pixels from the sensor width, else (a few per cent off) the 35 mm equivalent."""
        if self.focal_length_mm is not None and self.sensor_width_mm is not None:
            fx = self.focal_length_mm / self.sensor_width_mm * self.width_px
        elif self.focal_35mm_mm is not None:
            # The 35 mm equivalent is defined on the diagonal, so for a 4:3 sensor this is ~4% short.
            fx = self.focal_35mm_mm / FILM_35MM_WIDTH_MM * self.width_px
        else:
            return None
        return fx if math.isfinite(fx) and fx > 0.0 else None

    @property
    def K(self) -> np.ndarray | None:
        """[3x3] pinhole intrinsics: square pixels, principal point at the image centre."""
        fx = self.fx_px
        if fx is None:
            return None
        cx, cy = 0.5 * (self.width_px - 1), 0.5 * (self.height_px - 1)
        return np.array([[fx, 0.0, cx], [0.0, fx, cy], [0.0, 0.0, 1.0]])

    @property
    def camera_yaw_deg(self) -> float | None:
        """Heading the camera faces, degrees clockwise from true north: the gimbal's yaw, else the airframe's.

        For a nadir photo it is the direction of the image's top edge on the ground.
        """
        rpy = self.gimbal_rpy_deg or self.flight_rpy_deg
        return None if rpy is None else rpy[2]


def _problems(meta: PhotoMetadata) -> tuple[str, ...]:
    problems = []
    if meta.lat_deg is None or meta.lon_deg is None:
        problems.append("no GPS position")
    elif (meta.lat_deg, meta.lon_deg) == (0.0, 0.0):
        problems.append("GPS position is (0, 0): the receiver had no fix")
    elif not meta.has_gps:
        problems.append(f"implausible GPS position ({meta.lat_deg}, {meta.lon_deg})")
    if meta.alt_m is None and meta.relative_alt_m is None:
        problems.append("no altitude (neither GPS altitude nor DJI RelativeAltitude)")
    if meta.focal_length_mm is None and meta.focal_35mm_mm is None:
        problems.append("no focal length")
    for name, value in (("focal length", meta.focal_length_mm), ("35 mm equivalent focal length", meta.focal_35mm_mm),
                        ("sensor width", meta.sensor_width_mm)):
        if value is not None and not value > 0.0:
            problems.append(f"implausible {name} {value} mm")
    if meta.sensor_width_mm is None:
        problems.append(f"unknown sensor width for model {meta.model or '(none)'}: give --sensor-width-mm")
    if meta.stamp_s is None:
        problems.append("no DateTimeOriginal")
    if meta.camera_yaw_deg is None:
        problems.append("no camera yaw (DJI XMP gimbal or flight angles)")
    for name, rpy in (("gimbal", meta.gimbal_rpy_deg), ("flight", meta.flight_rpy_deg)):
        if rpy is not None and not all(abs(a) <= 360.0 for a in rpy):
            problems.append(f"implausible {name} angles {rpy} deg")
    return tuple(problems)


def read_photo_metadata(path: str | Path, sensor_width_mm: float | None = None) -> PhotoMetadata:
    """Read a JPEG/TIFF's EXIF and DJI XMP without decoding its pixels.

    ``sensor_width_mm`` overrides SENSOR_WIDTH_MM[model]. Raises PhotoMetadataError when the file is not
    a readable, complete JPEG or TIFF; missing tags only add to ``problems``.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.format not in ("JPEG", "MPO", "TIFF"):
                raise PhotoMetadataError(f"{path}: not a JPEG or TIFF image ({image.format})")
            _check_complete(path, image)
            width_px, height_px = image.size
            exif = image.getexif()
            exif_ifd, gps_ifd = exif.get_ifd(_EXIF_IFD), exif.get_ifd(_GPS_IFD)
    except PhotoMetadataError:
        raise
    except Exception as exc:  # Pillow reports damaged headers as OSError, SyntaxError, struct.error, ...
        raise PhotoMetadataError(f"{path}: not a readable image: {exc}") from exc
    with path.open("rb") as f:
        xmp = _xmp_packet(f.read(XMP_SEARCH_BYTES))
    model = _text(exif.get(_MODEL))
    altitude_m = _float(gps_ifd.get(_GPS_ALT))
    if altitude_m is not None and gps_ifd.get(_GPS_ALT_REF) in (1, b"\x01"):  # 1: below sea level
        altitude_m = -altitude_m
    return PhotoMetadata(
        path=path, width_px=width_px, height_px=height_px, make=_text(exif.get(_MAKE)), model=model,
        focal_length_mm=_float(exif_ifd.get(_FOCAL_LENGTH)),
        focal_35mm_mm=_float(exif_ifd.get(_FOCAL_35MM)) or None,  # EXIF writes 0 for "unknown"
        sensor_width_mm=sensor_width_mm if sensor_width_mm is not None else SENSOR_WIDTH_MM.get(model),
        stamp_s=_exif_stamp_s(exif_ifd), lat_deg=_gps_deg(gps_ifd, _GPS_LAT, _GPS_LAT_REF, "S"),
        lon_deg=_gps_deg(gps_ifd, _GPS_LON, _GPS_LON_REF, "W"), alt_m=altitude_m,
        relative_alt_m=_float(_xmp_value(xmp, "RelativeAltitude")),
        gimbal_rpy_deg=_xmp_rpy(xmp, "Gimbal"), flight_rpy_deg=_xmp_rpy(xmp, "Flight"))


def _check_complete(path: Path, image: Image.Image) -> None:
    """Catch a cut-off copy, which Pillow's lazy open cannot see: the pixels would fail to decode later."""
    size = path.stat().st_size
    if image.format == "TIFF":
        tags = image.tag_v2
        offsets_tag, counts_tag = _TIFF_TILES if _TIFF_TILES[0] in tags else _TIFF_STRIPS
        ends = [o + c for o, c in zip(tags.get(offsets_tag, ()), tags.get(counts_tag, ()))]
        if ends and max(ends) > size:
            raise PhotoMetadataError(f"{path}: truncated: image data runs to byte {max(ends)} of {size}")
        return
    with path.open("rb") as f:
        f.seek(max(0, size - EOI_SEARCH_BYTES))
        tail = f.read()
    # Entropy-coded JPEG data never holds FF D9 (a data byte FF is always followed by 00), so this is an EOI.
    if b"\xff\xd9" not in tail:
        raise PhotoMetadataError(f"{path}: truncated: no JPEG end-of-image marker near the end of the file")


def _float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) else None


def _text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return "" if value is None else str(value).strip("\x00 \t\r\n")


def _gps_deg(gps_ifd, value_tag: int, ref_tag: int, negative_ref: str) -> float | None:
    """EXIF degrees/minutes/seconds rationals and an N/S or E/W reference to signed degrees."""
    dms = gps_ifd.get(value_tag)
    parts = [_float(p) for p in (dms if isinstance(dms, tuple) else (dms,))] if dms is not None else []
    if not parts or None in parts:
        return None
    degrees = sum(p / 60.0**i for i, p in enumerate(parts))
    return -degrees if _text(gps_ifd.get(ref_tag)).upper() == negative_ref else degrees


def _exif_stamp_s(exif_ifd) -> float | None:
    text = _text(exif_ifd.get(_DATETIME_ORIGINAL))
    offset = _text(exif_ifd.get(_OFFSET_TIME_ORIGINAL)) or _text(exif_ifd.get(_OFFSET_TIME))
    try:
        stamp = datetime.strptime(text, "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    zone = timezone.utc
    match = re.fullmatch(r"([+-])(\d{2}):(\d{2})", offset)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        zone = timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))
    subsec = _text(exif_ifd.get(_SUBSEC_ORIGINAL))
    fraction = float("0." + subsec) if subsec.isdigit() else 0.0
    return stamp.replace(tzinfo=zone).timestamp() + fraction


def _xmp_packet(head: bytes) -> str:
    start = head.find(b"<x:xmpmeta")
    end = head.find(b"</x:xmpmeta>", start)
    return "" if start < 0 or end < 0 else head[start:end].decode("utf-8", errors="replace")


def _xmp_value(xmp: str, name: str) -> str | None:
    """A drone-dji property, written as an attribute (name="+39.80") or as an element (<name>+39.80</name>)."""
    tag = re.escape(f"drone-dji:{name}")
    match = (re.search(rf"(?<![\w:-]){tag}\s*=\s*([\"'])(.*?)\1", xmp, re.DOTALL)
             or re.search(rf"<{tag}(?:\s[^>]*)?>\s*([^<]*?)\s*</{tag}\s*>", xmp))
    return None if match is None else match.group(match.lastindex).strip()


def _xmp_rpy(xmp: str, prefix: str) -> tuple[float, float, float] | None:
    rpy = tuple(_float(_xmp_value(xmp, f"{prefix}{axis}Degree")) for axis in ("Roll", "Pitch", "Yaw"))
    return None if None in rpy else rpy


# Telemetry CSV columns that override metadata (those of exif_metadata.csv); other columns are ignored.
TELEMETRY_COLUMNS = ("lat", "lon", "abs_alt_m", "rel_alt_m", "gimbal_roll", "gimbal_pitch", "gimbal_yaw",
                     "flight_roll", "flight_pitch", "flight_yaw", "focal_mm", "datetime_original")


def read_telemetry_csv(path: str | Path) -> dict[str, dict[str, float]]:
    """Rows of a telemetry CSV by photo file name: {column: value} for the non-empty TELEMETRY_COLUMNS cells.

    Angles in degrees, altitudes in metres, focal_mm in mm; datetime_original ("YYYY:MM:DD HH:MM:SS" or
    ISO 8601, UTC unless it carries an offset) becomes POSIX seconds. Raises PhotoMetadataError naming
    the file, line and column for a missing ``filename`` column, an unparsable cell or a repeated file name.
    """
    path = Path(path)
    rows: dict[str, dict[str, float]] = {}
    first_line: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "filename" not in [name.strip() for name in reader.fieldnames]:
            raise PhotoMetadataError(f"{path}, line 1: no 'filename' column (columns: {reader.fieldnames})")
        for raw in reader:
            line = reader.line_num
            cells = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if isinstance(v, str)}
            name = cells.get("filename", "")
            if not name:
                raise PhotoMetadataError(f"{path}, line {line}, column 'filename': empty file name")
            if name in rows:
                raise PhotoMetadataError(f"{path}, line {line}, column 'filename': {name!r} already on line "
                                         f"{first_line[name]}")
            row = {}
            for column in TELEMETRY_COLUMNS:
                if cells.get(column):
                    row[column] = _parse_cell(path, line, column, cells[column])
            rows[name], first_line[name] = row, line
    return rows


def _parse_cell(path: Path, line: int, column: str, text: str) -> float:
    if column == "datetime_original":
        try:
            stamp = datetime.strptime(text, "%Y:%m:%d %H:%M:%S")
        except ValueError:
            try:  # Python 3.10's fromisoformat does not take a "Z" suffix
                stamp = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
            except ValueError:
                raise PhotoMetadataError(f"{path}, line {line}, column {column!r}: cannot parse {text!r} as a "
                                         "date and time") from None
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()
    number = _float(text)
    if number is None:
        raise PhotoMetadataError(f"{path}, line {line}, column {column!r}: cannot parse {text!r} as a finite number")
    return number


def apply_telemetry(meta: PhotoMetadata, row: dict[str, float]) -> PhotoMetadata:
    """A copy of ``meta`` with the values of one read_telemetry_csv row overriding its own."""
    overrides = {field_name: row[column] for column, field_name in (
        ("lat", "lat_deg"), ("lon", "lon_deg"), ("abs_alt_m", "alt_m"), ("rel_alt_m", "relative_alt_m"),
        ("focal_mm", "focal_length_mm"), ("datetime_original", "stamp_s")) if column in row}
    for prefix, field_name in (("gimbal", "gimbal_rpy_deg"), ("flight", "flight_rpy_deg")):
        columns = [f"{prefix}_{axis}" for axis in ("roll", "pitch", "yaw")]
        if not any(c in row for c in columns):
            continue
        current = getattr(meta, field_name)
        if current is None and not all(c in row for c in columns):
            raise PhotoMetadataError(f"{meta.path}: telemetry gives only some of {columns} and the photo has "
                                     f"no {prefix} angles to complete them")
        overrides[field_name] = tuple(float(row[c]) if c in row else current[i] for i, c in enumerate(columns))
    return dataclasses.replace(meta, **overrides)
