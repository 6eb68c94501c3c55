"""Photo metadata is read faithfully from real DJI photos and from made-up JPEGs, missing tags become problems,
and unreadable photos or telemetry files raise PhotoMetadataError naming the file (and the line and column)."""
from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from gps_denied_nav.core.photo_metadata import (
    PhotoMetadataError,
    apply_telemetry,
    read_photo_metadata,
    read_telemetry_csv,
)

BRIGHTON = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "brighton_beach_part"
BRIGHTON_CSV = BRIGHTON / "exif_metadata.csv"
FC300S_FX_PX = 3.61 / 6.17 * 4000


def _brighton_rows() -> list[dict]:
    if not BRIGHTON_CSV.exists():
        return []
    with BRIGHTON_CSV.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def brighton() -> Path:
    if not BRIGHTON_CSV.exists():
        pytest.skip(f"Brighton Beach photos not found at {BRIGHTON} (shared data folder beside the repository)")
    return BRIGHTON


def _jpeg(path: Path, exif: Image.Exif | None = None, xmp: str | None = None, size=(64, 48)) -> Path:
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, "JPEG", **({"exif": exif} if exif is not None else {}))
    data = buffer.getvalue()
    if xmp is not None:
        payload = b"http://ns.adobe.com/xap/1.0/\x00" + xmp.encode()
        data = data[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + data[2:]
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("row", _brighton_rows() or [None], ids=lambda row: row["filename"] if row else "absent")
def test_brighton_photo_matches_table(brighton, row):
    meta = read_photo_metadata(brighton / "images" / row["filename"])
    assert (meta.width_px, meta.height_px) == (int(row["width"]), int(row["height"]))
    assert (meta.make, meta.model) == ("DJI", "FC300S")
    assert meta.focal_length_mm == pytest.approx(float(row["focal_mm"]))
    assert meta.focal_35mm_mm == pytest.approx(float(row["focal_35mm"]))
    assert meta.lat_deg == pytest.approx(float(row["lat"]), abs=1e-7)
    assert meta.lon_deg == pytest.approx(float(row["lon"]), abs=1e-7)
    assert meta.alt_m == pytest.approx(float(row["abs_alt_m"]), abs=0.01)
    assert meta.relative_alt_m == pytest.approx(float(row["rel_alt_m"]), abs=0.01)
    for prefix, rpy in (("gimbal", meta.gimbal_rpy_deg), ("flight", meta.flight_rpy_deg)):
        expected = [float(row[f"{prefix}_{axis}"]) for axis in ("roll", "pitch", "yaw")]
        assert rpy == pytest.approx(expected, abs=0.01)
    stamp = datetime.strptime(row["datetime_original"], "%Y:%m:%d %H:%M:%S").replace(tzinfo=timezone.utc)
    assert meta.stamp_s == stamp.timestamp()
    assert meta.has_gps and meta.problems == ()
    np.testing.assert_allclose(meta.K, [[FC300S_FX_PX, 0, 1999.5], [0, FC300S_FX_PX, 1124.5], [0, 0, 1]])


def test_brighton_yaw_is_read_as_written(brighton):
    # The image content says about -132 deg; the file says -140, and the file is what this module reports.
    assert read_photo_metadata(brighton / "images" / "DJI_0024.JPG").camera_yaw_deg == pytest.approx(-140.0)


def test_reading_never_decodes_pixels(brighton, monkeypatch):
    def refuse_to_decode(self):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse_to_decode)
    assert read_photo_metadata(brighton / "images" / "DJI_0018.JPG").fx_px == pytest.approx(FC300S_FX_PX)


def test_jpeg_without_exif_lists_problems(tmp_path):
    meta = read_photo_metadata(_jpeg(tmp_path / "plain.jpg"))
    assert (meta.width_px, meta.height_px) == (64, 48)
    assert not meta.has_gps and meta.K is None and meta.camera_yaw_deg is None and meta.stamp_s is None
    assert "no GPS position" in meta.problems and "no focal length" in meta.problems


def test_made_up_exif_and_element_form_xmp(tmp_path):
    exif = Image.Exif()
    exif[272] = "NoSuchCam"
    exif.get_ifd(0x8769).update({37386: 4.5, 41989: 24, 36867: "2020:01:02 03:04:05", 36881: "-05:00"})
    exif.get_ifd(0x8825).update({1: "S", 2: (10.0, 30.0, 0.0), 3: "W", 4: (20.0, 15.0, 36.0), 5: b"\x01", 6: 12.5})
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description>\n  <drone-dji:RelativeAltitude>\n +39.80 '
           "</drone-dji:RelativeAltitude>\n" + "".join(f"<drone-dji:Flight{a}Degree>{v}</drone-dji:Flight{a}Degree>"
           for a, v in (("Roll", "+1.5"), ("Pitch", "-2.0"), ("Yaw", "-170.25"))) + "</rdf:Description></x:xmpmeta>")
    path = _jpeg(tmp_path / "made_up.jpg", exif, xmp)
    meta = read_photo_metadata(path)
    assert (meta.lat_deg, meta.lon_deg, meta.alt_m) == (pytest.approx(-10.5), pytest.approx(-20.26), -12.5)
    assert meta.stamp_s == datetime(2020, 1, 2, 8, 4, 5, tzinfo=timezone.utc).timestamp()
    assert meta.relative_alt_m == 39.8 and meta.gimbal_rpy_deg is None and meta.camera_yaw_deg == -170.25
    assert meta.fx_px == pytest.approx(24 / 36 * 64)  # the 35 mm fallback
    assert meta.problems == ("unknown sensor width for model NoSuchCam: give --sensor-width-mm",)
    assert read_photo_metadata(path, sensor_width_mm=6.0).fx_px == pytest.approx(4.5 / 6.0 * 64)


@pytest.mark.parametrize("make_file, reason", [
    (lambda p: p.write_text("not a photo"), "not a readable image"),
    (lambda p: p.write_bytes(_jpeg(p, size=(400, 300)).read_bytes()[:300]), "not a readable image"),
    (lambda p: p.write_bytes(_jpeg(p, size=(400, 300)).read_bytes()[:-4000]), "truncated"),
    (lambda p: Image.new("RGB", (8, 8)).save(p, "PNG"), "not a JPEG or TIFF"),
    (lambda p: (Image.new("RGB", (64, 64)).save(p, "TIFF"), p.write_bytes(p.read_bytes()[:4000])), "truncated"),
], ids=["text", "jpeg_cut_in_header", "jpeg_cut_in_pixels", "png", "tiff_cut"])
def test_unreadable_photo_raises_naming_it(tmp_path, make_file, reason):
    path = tmp_path / "photo.jpg"
    make_file(path)
    with pytest.raises(PhotoMetadataError, match=re.escape(f"{path}: {reason}")):
        read_photo_metadata(path)


def test_complete_tiff_reads(tmp_path):
    Image.new("RGB", (64, 64)).save(tmp_path / "photo.tif", "TIFF")
    assert read_photo_metadata(tmp_path / "photo.tif").width_px == 64


def test_brighton_table_reads_as_telemetry(brighton):
    rows = read_telemetry_csv(BRIGHTON_CSV)
    assert sorted(rows) == [f"DJI_00{n}.JPG" for n in range(18, 27)]
    assert rows["DJI_0024.JPG"]["gimbal_yaw"] == -140.0 and rows["DJI_0024.JPG"]["rel_alt_m"] == 39.9
    stamp = datetime(2016, 6, 23, 16, 31, 59, tzinfo=timezone.utc)
    assert rows["DJI_0018.JPG"]["datetime_original"] == stamp.timestamp()


@pytest.mark.parametrize("text, match", [
    ("name,lat\na.jpg,1\n", r"line 1: no 'filename' column"),
    ("filename,lat\na.jpg,1\nb.jpg,north\n", r"line 3, column 'lat': cannot parse 'north'"),
    ("filename,gimbal_yaw\na.jpg,1\nb.jpg,nan\n", r"line 3, column 'gimbal_yaw'"),
    ("filename,datetime_original\na.jpg,yesterday\n", r"line 2, column 'datetime_original'"),
    ("filename,lat\na.jpg,1\na.jpg,2\n", r"line 3, column 'filename': 'a.jpg' already on line 2"),
])
def test_bad_telemetry_raises_naming_file_line_and_column(tmp_path, text, match):
    path = tmp_path / "telemetry.csv"
    path.write_text(text)
    with pytest.raises(PhotoMetadataError, match=re.escape(f"{path}, ") + match):
        read_telemetry_csv(path)


def test_telemetry_overrides_and_problems_follow(tmp_path):
    path = tmp_path / "telemetry.csv"
    path.write_text("filename,lat,lon,flight_yaw,flight_roll,flight_pitch,datetime_original,extra\n"
                    "plain.jpg,46.8,-92.0,-132.5,0,0,2016-06-23T16:31:59-05:00,ignored\n")
    meta = read_photo_metadata(_jpeg(tmp_path / "plain.jpg"))
    updated = apply_telemetry(meta, read_telemetry_csv(path)["plain.jpg"])
    assert updated.has_gps and updated.camera_yaw_deg == -132.5 and updated.lat_deg == 46.8
    assert updated.stamp_s == datetime(2016, 6, 23, 21, 31, 59, tzinfo=timezone.utc).timestamp()
    assert "no GPS position" in meta.problems and "no GPS position" not in updated.problems
    with pytest.raises(PhotoMetadataError, match="gimbal"):
        apply_telemetry(meta, {"gimbal_yaw": 10.0})


def test_telemetry_yaw_overrides_brighton_gimbal(brighton):
    meta = read_photo_metadata(brighton / "images" / "DJI_0024.JPG")
    updated = apply_telemetry(meta, {"gimbal_yaw": -132.0})
    assert updated.camera_yaw_deg == -132.0 and updated.gimbal_rpy_deg[:2] == meta.gimbal_rpy_deg[:2]
    assert meta.camera_yaw_deg == -140.0
