"""Real photos located on a map made from other real photos of the same flight (the outbound leg's
orthophoto, the return leg's photos, whose metadata yaw is 180 deg off), and the scoring of fixes."""
from pathlib import Path

import numpy as np
import pytest

from gps_denied_nav.core.locate import PhotoFix
from gps_denied_nav.core.locate_report import geojson, score_fixes
from gps_denied_nav.core.photo_metadata import PhotoMetadata

PHOTOS = Path(__file__).resolve().parents[3] / "shared" / "data" / "brighton_beach_part" / "images"


def test_scores_count_the_reference_gps_in_the_nees():
    meta = PhotoMetadata(path=Path("a.jpg"), width_px=4000, height_px=2250, lat_deg=46.84, lon_deg=-91.99, alt_m=198.0)
    east_4m = -91.99 + 4.0 / (111320.0 * np.cos(np.radians(46.84)))
    fix = PhotoFix("a.jpg", True, "accepted", 46.84, east_4m, 198.0, (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    missed = PhotoFix("b.jpg", False, "too few inliers: 3")
    report, per_photo = score_fixes([fix, missed], [meta, meta], reference_sigma_m=3.0)
    assert report["photos"] == 2 and report["fixes_accepted"] == 1 and report["fix_rate"] == 0.5
    assert report["rmse_m"] == pytest.approx(4.0, abs=0.05)
    assert per_photo[0]["nees"] == pytest.approx(16.0 / 10.0, rel=0.02)  # 4 m over sqrt(1 + 9) m
    assert geojson([fix, missed])["features"][0]["geometry"]["coordinates"][:2] == [east_4m, 46.84]


@pytest.mark.skipif(not PHOTOS.is_dir(), reason="the real photos (../shared/data/brighton_beach_part) are absent")
def test_return_leg_photos_are_fixed_on_the_outbound_legs_orthophoto(tmp_path):
    from gps_denied_nav.core.corpus import Corpus
    from gps_denied_nav.core.corpus_build import ProvisionConfig, provision
    from gps_denied_nav.core.descriptor import DescriptorExtractor
    from gps_denied_nav.core.locate import locate_photo
    from gps_denied_nav.core.photo_metadata import read_photo_metadata
    from gps_denied_nav.core.photo_ortho import build_orthophoto

    ortho = build_orthophoto([read_photo_metadata(PHOTOS / f"DJI_00{i}.JPG") for i in range(18, 24)],
                             tmp_path / "ortho.tif")
    yaw_fix_deg = np.array(ortho.yaw_used_deg) - [read_photo_metadata(PHOTOS / f"DJI_00{i}.JPG").camera_yaw_deg
                                                  for i in range(18, 24)]
    assert np.all(np.abs(yaw_fix_deg) < 10.0), ortho.yaw_note  # this leg's metadata is nearly right
    provision(ortho.path, tmp_path / "corpus", ProvisionConfig(tile_size_m=40.0, stride_m=10.0, init_sample_size=5000,
                                                               ground_alt_m=ortho.ground_alt_m, map_registration_sigma_m=3.0))
    corpus = Corpus.load(tmp_path / "corpus")
    extractor = DescriptorExtractor(corpus.load_model(), device="cpu", input_px=corpus.tile_px)
    metas = [read_photo_metadata(PHOTOS / f"DJI_00{i}.JPG") for i in (24, 25, 26)]
    fixes = [locate_photo(meta, corpus, extractor) for meta in metas]
    report, per_photo = score_fixes(fixes, metas, reference_sigma_m=3.0)
    assert report["fixes_accepted"] == 3, [f.reason for f in fixes]
    # Within 3 sigma of the photos' own GPS (fix covariance + 3 m of consumer GPS), ~5-8 m off it: the two legs'
    # GPS disagree by about that much with the images themselves (docs/BRIGHTON.md).
    assert all(p["nees"] < 9.0 for p in per_photo) and report["max_error_m"] < 12.0, per_photo
    assert all(abs(abs(f.heading_vs_metadata_deg) - 180.0) < 25.0 for f in fixes)  # the metadata's 180 deg lie
    assert all(abs(f.agl_m - f.agl_metadata_m) < 5.0 for f in fixes)
