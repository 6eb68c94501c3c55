"""A short simulated flight over the small world, written as the MCAP clip of interfaces.md and read back:
sensor rates and counts, frames and conventions, stamps, and image bytes equal to the rendered frames."""
import numpy as np
import pytest
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from gps_denied_nav.core.baro import pressure_to_altitude_m
from gps_denied_nav.core.map_raster import load_geotiff
from gps_denied_nav.core.rotations import quat_to_rotmat_batch
from gps_denied_nav.core.report_state import StateTrack, state_error_series, truth_odometry_frame
from gps_denied_nav.sim.clip import (CLIP_EPOCH_NS, TOPIC_TYPES, _Messages, clip_typestore, read_clip,
                                     read_ground_truth, read_ground_truth_odom, write_clip)
from gps_denied_nav.sim.flight import FlightConfig, simulate_flight


@pytest.fixture(scope="module")
def flight(small_world):
    raster = load_geotiff(small_world)
    return raster, simulate_flight(raster, FlightConfig(seed=1, duration_s=5.0))


@pytest.fixture(scope="module")
def clip(flight, tmp_path_factory):
    return write_clip(flight[1], tmp_path_factory.mktemp("clip") / "clip.mcap")


def test_flight_sensors_follow_the_truth(flight):
    raster, f = flight
    assert f.images_rgb.shape == (10, 480, 640, 3) and len(f.imu.t_s) == 1001
    assert len(f.baro.t_s) == 126 and len(f.gnss_stamps_s) == 26
    np.testing.assert_allclose(f.image_stamps_s, 0.0137 + 0.5 * np.arange(10))
    truth = f.truth_camera
    assert np.all(np.abs(truth.pos_enu_m[:, 2] - 120.0) < 3.0)
    lat, lon, alt = raster.frame.to_geodetic(truth.pos_enu_m)
    np.testing.assert_allclose([truth.lat_deg, truth.lon_deg, truth.alt_m], [lat, lon, alt])
    assert all((img.max(axis=2) > 0).mean() > 0.99 for img in f.images_rgb)  # the path keeps the view on the map
    gnss_enu = raster.frame.to_enu(f.gnss_lat_deg, f.gnss_lon_deg, f.gnss_alt_m)
    truth_gnss = np.array([np.interp(f.gnss_stamps_s, f.truth_imu.t_s, f.truth_imu.pos_enu_m[:, i])
                           for i in range(3)]).T
    assert np.abs(gnss_enu - truth_gnss)[:, :2].max() < 6.0 and np.abs(gnss_enu - truth_gnss)[:, :2].std() > 0.5
    baro_alt = pressure_to_altitude_m(f.baro.pressure_pa, f.baro_reference_pa) - f.baro.true_bias_m
    truth_up = np.interp(f.baro.t_s, f.truth_imu.t_s, f.truth_imu.pos_enu_m[:, 2])
    assert np.abs(baro_alt - truth_up).max() < 1.5
    specific_force = np.linalg.norm(f.imu.accel_body_mps2, axis=1)
    assert abs(np.mean(specific_force) - 9.81) < 0.2


def test_clip_has_the_interface_topics_rates_and_stamps(flight, clip):
    _, f = flight
    with Reader(clip) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == TOPIC_TYPES
        assert reader.start_time == CLIP_EPOCH_NS + round(f.imu.t_s[0] * 1e9)
    messages = list(read_clip(clip))
    stamps = np.array([m[1] for m in messages])
    assert np.all(np.diff(stamps) >= 0)
    by_topic = {}
    store = clip_typestore()
    for topic, stamp_ns, raw, msgtype in messages:
        msg = store.deserialize_cdr(raw, msgtype)
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp_ns  # bag time = header stamp
        by_topic.setdefault(topic, []).append((stamp_ns, msg))
    counts = {t: len(v) for t, v in by_topic.items()}
    assert counts == {"/camera/image_raw": 10, "/camera/camera_info": 10, "/imu/data": 1001, "/baro/pressure": 126,
                      "/gnss/fix": 26, "/ground_truth/fix": 101, "/ground_truth/odom": 101}
    periods = {t: np.median(np.diff([s for s, _ in v])) * 1e-9 for t, v in by_topic.items()}
    assert periods == pytest.approx({"/camera/image_raw": 0.5, "/camera/camera_info": 0.5, "/imu/data": 0.005,
                                     "/baro/pressure": 0.04, "/gnss/fix": 0.2, "/ground_truth/fix": 0.05,
                                     "/ground_truth/odom": 0.05})
    assert by_topic["/gnss/fix"][-1][0] - CLIP_EPOCH_NS == pytest.approx(5.0e9)  # GNSS to the end of this short flight

    for (_, img), expected in zip(by_topic["/camera/image_raw"], f.images_rgb):
        assert (img.encoding, img.header.frame_id, img.step) == ("rgb8", "camera_optical", 640 * 3)
        np.testing.assert_array_equal(np.asarray(img.data).reshape(480, 640, 3), expected)
    info = by_topic["/camera/camera_info"][0][1]
    np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), f.camera.K)
    imu = by_topic["/imu/data"][7][1]
    assert imu.header.frame_id == "base_link" and imu.orientation_covariance[0] == -1.0
    np.testing.assert_allclose([imu.linear_acceleration.x, imu.linear_acceleration.y, imu.linear_acceleration.z],
                               f.imu.accel_body_mps2[7])
    gnss = by_topic["/gnss/fix"][0][1]
    assert gnss.position_covariance_type == 2 and gnss.position_covariance[0] == pytest.approx(1.5**2)
    assert by_topic["/baro/pressure"][0][1].fluid_pressure == pytest.approx(f.baro.pressure_pa[0])


def test_ground_truth_reads_back(flight, clip):
    _, f = flight
    t_s, lat, lon, alt = read_ground_truth(clip)
    truth = f.truth_imu
    np.testing.assert_allclose(t_s - CLIP_EPOCH_NS * 1e-9, truth.t_s[::10], atol=1e-6)
    np.testing.assert_allclose(lat, truth.lat_deg[::10], atol=1e-12)
    np.testing.assert_allclose(lon, truth.lon_deg[::10], atol=1e-12)
    np.testing.assert_allclose(alt, truth.alt_m[::10], atol=1e-9)
    store = clip_typestore()
    odom = [store.deserialize_cdr(raw, mt) for topic, _, raw, mt in read_clip(clip) if topic == "/ground_truth/odom"]
    assert (odom[3].header.frame_id, odom[3].child_frame_id) == ("map", "base_link")
    p, q = odom[3].pose.pose.position, odom[3].pose.pose.orientation
    np.testing.assert_allclose([p.x, p.y, p.z], truth.pos_enu_m[30])
    np.testing.assert_allclose([q.w, q.x, q.y, q.z], truth.q_world_body[30])
    v_body = quat_to_rotmat_batch(truth.q_world_body[30]).T @ truth.vel_enu_mps[30]
    lin = odom[3].twist.twist.linear
    np.testing.assert_allclose([lin.x, lin.y, lin.z], v_body, atol=1e-9)
    assert lin.x > 11.0  # forward flight, body frame


def test_ground_truth_odom_reads_back_in_the_world_frame(flight, clip):
    raster, f = flight
    t_s, pos_enu_m, q_world_body, vel_world_mps = read_ground_truth_odom(clip)
    truth = f.truth_imu
    np.testing.assert_allclose(t_s - CLIP_EPOCH_NS * 1e-9, truth.t_s[::10], atol=1e-6)
    np.testing.assert_allclose(pos_enu_m, truth.pos_enu_m[::10])
    np.testing.assert_allclose(q_world_body, truth.q_world_body[::10])
    np.testing.assert_allclose(vel_world_mps, truth.vel_enu_mps[::10], atol=1e-9)  # body twist rotated back
    # The odometry carries no origin; the fix at the same stamp recovers the raster's frame.
    fix_t, lat, lon, alt = read_ground_truth(clip)
    frame = truth_odometry_frame(fix_t, lat, lon, alt, t_s, pos_enu_m)
    np.testing.assert_allclose(frame.to_enu(lat, lon, alt), pos_enu_m, atol=1e-3)
    assert frame.origin_lat_deg == pytest.approx(raster.frame.origin_lat_deg, abs=1e-9)
    # Scored against the simulator's own truth in the raster's frame, the clip's truth has no error.
    exact = StateTrack.from_arrays(raster.frame, t_s, truth.pos_enu_m[::10], truth.q_world_body[::10],
                                   truth.vel_enu_mps[::10])
    series = state_error_series(StateTrack.from_arrays(frame, t_s, pos_enu_m, q_world_body, vel_world_mps), exact)
    assert series.t_s.size == t_s.size
    assert max(np.abs(series.pos_m).max(), np.abs(series.vel_mps).max(), np.abs(series.att_rad).max()) < 1e-6


def test_truth_readers_give_empty_arrays_for_a_bag_without_truth(tmp_path):
    store = clip_typestore()
    writer = Writer(tmp_path / "no_truth", version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    conn = writer.add_connection("/gnss/fix", "sensor_msgs/msg/NavSatFix", typestore=store)
    m = _Messages(store)
    writer.write(conn, CLIP_EPOCH_NS, m.serialize(m.navsatfix(CLIP_EPOCH_NS, 60.0, 22.0, 30.0)))
    writer.close()
    t_s, pos_enu_m, q_world_body, vel_world_mps = read_ground_truth_odom(tmp_path / "no_truth")
    assert (t_s.shape, pos_enu_m.shape, q_world_body.shape, vel_world_mps.shape) == ((0,), (0, 3), (0, 4), (0, 3))
    assert read_ground_truth(tmp_path / "no_truth")[0].shape == (0,)


def test_fresh_sensor_draws_fly_the_same_trajectory(flight):
    """Monte Carlo runs reuse one flight's frames with new sensor noise: same truth, other IMU/baro/GNSS."""
    raster, f = flight
    again = simulate_flight(raster, FlightConfig(seed=1, duration_s=5.0, sensor_seed=7, render_frames=False))
    other = simulate_flight(raster, FlightConfig(seed=1, duration_s=5.0, sensor_seed=8, render_frames=False))
    assert again.images_rgb.shape[0] == 0
    np.testing.assert_array_equal(again.truth_imu.pos_enu_m, f.truth_imu.pos_enu_m)
    np.testing.assert_array_equal(again.image_stamps_s, f.image_stamps_s)
    assert not np.allclose(again.imu.accel_body_mps2, other.imu.accel_body_mps2)
    assert np.abs(again.gnss_lat_deg - other.gnss_lat_deg).max() > 1e-6  # ~0.1 m: other GNSS noise
    with pytest.raises(ValueError, match="sensor_seed"):
        simulate_flight(raster, FlightConfig(seed=1, duration_s=5.0, render_frames=False))
