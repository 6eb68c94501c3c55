"""render_frame over a height field: the same picture as the flat renderer over constant ground, marked
ground points on a slope land where the pinhole model projects them (where the flat renderer misses them),
fine texture stays anti-aliased, the sky and the map's outside are black, and flights over a slope keep
their altitude while their height above the ground follows the terrain."""
import cv2
import numpy as np
import pytest

from gps_denied_nav.core.camera import R_BODY_CAM_NADIR, CameraIntrinsics, project_points
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.map_raster import MapRaster, load_geotiff
from gps_denied_nav.core.rotations import quat_from_euler, quat_to_rotmat
from gps_denied_nav.core.terrain import TerrainGrid, flat_terrain
from gps_denied_nav.sim.flight import FlightConfig, simulate_flight
from marked_map import blob_centroids, marked_map

from gps_denied_nav.sim.render import render_frame
from gps_denied_nav.sim.render_terrain import ray_cast_terrain
from gps_denied_nav.sim.terrain_world import sloped_terrain
from gps_denied_nav.sim.world import generate_world

CAM = CameraIntrinsics.from_hfov(640, 480, 60.0)
ORIGIN_ALT_M = 100.0  # the raster frame's origin is not on the ellipsoid: heights must be converted
FRAME = LocalTangentPlane(60.4, 22.46, ORIGIN_ALT_M)
MARKS_EN = np.array([[e, n] for e in (-18.0, 0.0, 18.0) for n in (-12.0, 0.0, 12.0)])  # ENU metres


def _rotation(roll, pitch, yaw) -> np.ndarray:
    return quat_to_rotmat(quat_from_euler(roll, pitch, yaw)) @ R_BODY_CAM_NADIR


def _constant(raster: MapRaster, up_m: float) -> TerrainGrid:
    """Constant ground ``up_m`` in the raster frame, as ellipsoidal heights."""
    return flat_terrain(raster.east_min_m - 50.0, raster.north_max_m + 50.0, raster.width_m + 100.0,
                        raster.height_m + 100.0, up_m + raster.frame.origin_alt_m, step_m=25.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> MapRaster:
    return load_geotiff(generate_world(tmp_path_factory.mktemp("world") / "w.tif", seed=2, size_m=(300.0, 300.0),
                                       gsd_m=0.5))


@pytest.mark.parametrize("gsd_m, euler, cam_up_m", [
    (0.5, (0.0, 0.0, 0.4), 120.0),      # map coarser than the frame: plain bilinear
    (0.1, (0.26, -0.08, 2.0), 70.0),    # map finer than the frame (anti-aliased), 15 deg roll
])
def test_constant_terrain_renders_like_the_flat_plane(world, gsd_m, euler, cam_up_m):
    ground_up_m = 3.0
    raster = world
    if gsd_m != world.gsd_m:  # the world upsampled, in a frame whose origin is off the ellipsoid
        image = cv2.resize(world.image_rgb, None, fx=world.gsd_m / gsd_m, fy=world.gsd_m / gsd_m,
                           interpolation=cv2.INTER_CUBIC)
        raster = MapRaster(image, np.ones(image.shape[:2], bool), gsd_m, world.east_min_m, world.north_max_m, FRAME)
    R, cam_pos = _rotation(*euler), np.array([10.0, -5.0, ground_up_m + cam_up_m])
    flat = render_frame(raster, CAM.K, R, cam_pos, 640, 480, ground_up_m=ground_up_m)
    ray_cast = render_frame(raster, CAM.K, R, cam_pos, 640, 480, terrain=_constant(raster, ground_up_m))
    assert (flat.max(axis=2) > 0).mean() > 0.99
    assert np.abs(flat.astype(int) - ray_cast).mean() <= 2.0


@pytest.mark.parametrize("gsd_m, euler", [
    (0.05, (0.0, 0.0, 0.4)),     # map finer than the frame: the anti-aliased path
    (0.2, (0.26, -0.08, 2.0)),   # map coarser than the frame, 15 deg roll
])
def test_marked_points_on_a_slope_land_where_projected(gsd_m, euler):
    raster = marked_map(gsd_m, MARKS_EN, FRAME)
    terrain = sloped_terrain(raster, ORIGIN_ALT_M + 20.0, grade=0.1, grade_azimuth_deg=30.0, hill_m=6.0, seed=1)
    mean_up_m = float(terrain.heights_m.mean()) - ORIGIN_ALT_M
    R, cam_pos = _rotation(*euler), np.array([2.0, -1.0, mean_up_m + 60.0])
    ground_up_m = terrain.height_at(MARKS_EN[:, 0], MARKS_EN[:, 1]) - ORIGIN_ALT_M
    uv, depth = project_points(CAM.K, R, cam_pos, np.column_stack([MARKS_EN, ground_up_m]))
    inside = (depth > 0) & (uv[:, 0] > 40) & (uv[:, 0] < 600) & (uv[:, 1] > 40) & (uv[:, 1] < 440)
    assert inside.sum() >= 4
    frame = render_frame(raster, CAM.K, R, cam_pos, 640, 480, terrain=terrain)
    err = np.linalg.norm(blob_centroids(frame, uv[inside], 40) - uv[inside], axis=1)
    assert err.max() < 0.5, err
    # The flat renderer at the mean height puts the same marks pixels away: the terrain matters here.
    flat = render_frame(raster, CAM.K, R, cam_pos, 640, 480, ground_up_m=mean_up_m)
    flat_err = np.linalg.norm(blob_centroids(flat, uv[inside], 40) - uv[inside], axis=1)
    assert flat_err.max() > 3.0, flat_err


def test_ray_cast_points_lie_on_the_terrain():
    terrain = sloped_terrain(marked_map(0.5, MARKS_EN, FRAME), ORIGIN_ALT_M + 20.0, grade=0.1, hill_m=8.0, seed=3)
    R, cam_pos = _rotation(0.2, 0.1, 1.0), np.array([5.0, 3.0, 100.0])
    east, north, hit = ray_cast_terrain(CAM.K, R, cam_pos, 640, 480, terrain, ORIGIN_ALT_M)
    assert hit.all()
    # Each hit is on its pixel's ray and, within the 1 cm tolerance, on the ground.
    rays = (R @ np.linalg.solve(CAM.K, np.array([[0.0, 639.0, 320.0], [0.0, 479.0, 240.0], [1.0, 1.0, 1.0]]))).T
    for (u, v), ray in zip([(0, 0), (639, 479), (320, 240)], rays):
        offset_en = np.array([east[v, u], north[v, u]]) - cam_pos[:2]
        t = offset_en @ ray[:2] / (ray[:2] @ ray[:2])
        np.testing.assert_allclose(t * ray[:2], offset_en, atol=1e-3)
        ground_up_m = terrain.height_at(east[v, u], north[v, u]) - ORIGIN_ALT_M
        assert abs(cam_pos[2] + t * ray[2] - ground_up_m) < 0.02


def test_fine_texture_over_terrain_is_anti_aliased():
    """A 1-px checkerboard seen 8x coarser must come out flat grey, not as moire."""
    n = 4000
    checker = ((np.indices((n, n)).sum(axis=0) % 2) * 255).astype(np.uint8)
    raster = MapRaster(np.repeat(checker[..., None], 3, axis=2), np.ones((n, n), bool), 0.025, -50.0, 50.0,
                       FRAME, "checker")
    terrain = sloped_terrain(raster, ORIGIN_ALT_M, grade=0.05, hill_m=3.0, step_m=10.0)
    frame = render_frame(raster, CAM.K, _rotation(0.0, 0.0, 0.3), np.array([0.0, 0.0, 110.0]), 640, 480,
                         terrain=terrain)
    centre = frame[140:340, 220:420, 0].astype(float)
    assert abs(centre.mean() - 127.5) < 3.0 and centre.std() < 4.0


def test_outside_the_map_and_the_sky_are_black():
    raster = marked_map(0.2, MARKS_EN, FRAME)
    raster.valid[:, :50] = False  # a nodata strip on the west edge (east < -90 m)
    terrain = sloped_terrain(raster, ORIGIN_ALT_M, grade=0.05, seed=2)
    # Nose north: image right is east, so the left part sees nodata and beyond the map.
    frame = render_frame(raster, CAM.K, _rotation(0.0, 0.0, np.pi / 2), np.array([-95.0, 0.0, 60.0]), 640, 480,
                         terrain=terrain)
    assert frame[:, :200].max() == 0 and (frame[:, 400:, 0] > 0).all()
    # Pitched 80 deg nose-up: the top of the image sees sky (black), the bottom still sees ground.
    frame = render_frame(raster, CAM.K, _rotation(0.0, -np.radians(80.0), 0.0), np.array([0.0, 0.0, 25.0]), 640,
                         480, terrain=terrain)
    assert frame[:100].max() == 0 and (frame[-50:, :, 0] > 0).mean() > 0.9
    # Below the ground nothing is seen.
    assert render_frame(raster, CAM.K, _rotation(0.0, 0.0, 0.0), np.array([0.0, 0.0, -50.0]), 640, 480,
                        terrain=terrain).max() == 0


def test_flight_over_a_slope_holds_altitude_while_its_height_above_ground_varies(world):
    terrain = sloped_terrain(world, 35.0, grade=0.1, grade_azimuth_deg=90.0, seed=0)
    kw = dict(seed=1, duration_s=4.0, altitude_agl_m=60.0, speed_mps=8.0, margin_m=90.0)
    config = FlightConfig.over_terrain(terrain, world.frame, **kw)
    assert config.ground_up_m == pytest.approx(35.0) and config.terrain is terrain
    flight = simulate_flight(world, config)
    assert flight.images_rgb.shape == (8, 480, 640, 3)
    assert all((img.max(axis=2) > 0).mean() > 0.99 for img in flight.images_rgb)
    pos = flight.truth_camera.pos_enu_m
    assert np.all(np.abs(pos[:, 2] - (35.0 + 60.0)) < 2.5)  # baro altitude held (plus the gentle wave)
    ground_up_m = terrain.height_at(pos[:, 0], pos[:, 1]) - world.frame.origin_alt_m
    agl_m = pos[:, 2] - ground_up_m
    assert np.ptp(agl_m) > 1.0 and np.corrcoef(agl_m, ground_up_m)[0, 1] < -0.9
    # Same seed and path without the terrain: same sensors, different pictures.
    flat = simulate_flight(world, FlightConfig(ground_up_m=35.0, **kw))
    np.testing.assert_array_equal(flat.imu.accel_body_mps2, flight.imu.accel_body_mps2)
    assert np.abs(flat.images_rgb[-1].astype(int) - flight.images_rgb[-1]).mean() > 5.0
