"""Flight clip bag: write a simulated flight as the ROS 2 bag of interfaces.md, and read bags back.

The clip is what ``ros2 bag record`` on the aircraft would have written (a rosbag2 directory with an
MCAP file and metadata.yaml), so replay treats simulated and real flights alike. Messages are built and
CDR-serialised with rosbags' typestore for ROS 2 Kilted (the rclpy this project runs on; the message
definitions used here hash identically in Humble), with no ROS installation needed. Header stamps are
a fixed epoch plus the flight time, and every bag timestamp equals its message's header stamp.
"""
from __future__ import annotations

import heapq
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from gps_denied_nav.core.baro import altitude_to_pressure_pa
from gps_denied_nav.core.rotations import quat_to_rotmat_batch
from gps_denied_nav.nodes import names
from gps_denied_nav.replay.bag_types import BAG_VERSION
from gps_denied_nav.sim.flight import FlightData, GroundTruth

CLIP_EPOCH_NS = 1_700_000_000 * 10**9  # flight time 0 (2023-11-14), fixed so that clips are reproducible
CAMERA_FRAME = "camera_optical"
TOPIC_TYPES = {
    names.IMAGE: "sensor_msgs/msg/Image",
    names.CAMERA_INFO: "sensor_msgs/msg/CameraInfo",
    names.IMU: "sensor_msgs/msg/Imu",
    names.BARO: "sensor_msgs/msg/FluidPressure",
    names.GNSS_FIX: "sensor_msgs/msg/NavSatFix",
    names.GROUND_TRUTH_FIX: "sensor_msgs/msg/NavSatFix",
    names.GROUND_TRUTH_ODOM: "nav_msgs/msg/Odometry",
}


def clip_typestore():
    """The rosbags typestore the clip's messages are (de)serialised with."""
    return get_typestore(Stores.ROS2_KILTED)


class _Messages:
    """Builds the clip's messages from numpy values with one typestore."""

    def __init__(self, store):
        self.store, self.t = store, store.types

    def header(self, stamp_ns: int, frame_id: str):
        sec, nanosec = divmod(int(stamp_ns), 10**9)
        return self.t["std_msgs/msg/Header"](stamp=self.t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                             frame_id=frame_id)

    def vector3(self, v):
        return self.t["geometry_msgs/msg/Vector3"](x=float(v[0]), y=float(v[1]), z=float(v[2]))

    def quaternion(self, q_wxyz):
        return self.t["geometry_msgs/msg/Quaternion"](x=float(q_wxyz[1]), y=float(q_wxyz[2]), z=float(q_wxyz[3]),
                                                      w=float(q_wxyz[0]))

    def navsatfix(self, stamp_ns, lat, lon, alt, cov_diag_m2=None):
        t = self.t
        status = t["sensor_msgs/msg/NavSatStatus"](status=0, service=1)  # STATUS_FIX, SERVICE_GPS
        known = cov_diag_m2 is not None
        cov = np.diag(cov_diag_m2).ravel() if known else np.zeros(9)
        return t["sensor_msgs/msg/NavSatFix"](header=self.header(stamp_ns, names.BODY_FRAME), status=status,
                                              latitude=float(lat), longitude=float(lon), altitude=float(alt),
                                              position_covariance=cov.astype(np.float64),
                                              position_covariance_type=2 if known else 0)

    def serialize(self, msg) -> bytes:
        return bytes(self.store.serialize_cdr(msg, msg.__msgtype__))


def _stamp_ns(t_s) -> np.ndarray:
    return CLIP_EPOCH_NS + np.round(np.asarray(t_s, float) * 1e9).astype(np.int64)


def _camera_stream(m: _Messages, flight: FlightData):
    cam, t = flight.camera, m.t
    K = cam.K
    P = np.hstack([K, np.zeros((3, 1))])
    d = np.zeros(5) if not cam.distortion else np.asarray(cam.distortion, float)
    roi = t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    for stamp, image in zip(_stamp_ns(flight.image_stamps_s), flight.images_rgb):
        header = m.header(stamp, CAMERA_FRAME)
        info = t["sensor_msgs/msg/CameraInfo"](header=header, height=cam.height_px, width=cam.width_px,
                                               distortion_model="plumb_bob", d=d, k=K.ravel(), r=np.eye(3).ravel(),
                                               p=P.ravel(), binning_x=0, binning_y=0, roi=roi)
        img = t["sensor_msgs/msg/Image"](header=header, height=cam.height_px, width=cam.width_px, encoding="rgb8",
                                         is_bigendian=0, step=3 * cam.width_px,
                                         data=np.ascontiguousarray(image).ravel())
        yield int(stamp), names.CAMERA_INFO, m.serialize(info)
        yield int(stamp), names.IMAGE, m.serialize(img)


def _imu_stream(m: _Messages, flight: FlightData):
    noise, t = flight.config.imu_noise, m.t
    rate_hz = 1.0 / np.median(np.diff(flight.imu.t_s)) if len(flight.imu.t_s) > 1 else 1.0
    # Per-sample white-noise variances of the sampled densities; REP-145: orientation unknown -> cov[0] = -1.
    gyro_cov = np.eye(3).ravel() * noise.gyro_noise_density_radps_rthz**2 * rate_hz
    accel_cov = np.eye(3).ravel() * noise.accel_noise_density_mps2_rthz**2 * rate_hz
    no_orientation = np.zeros(9)
    no_orientation[0] = -1.0
    zero_q = t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=0.0)
    imu = flight.imu
    for stamp, f, w in zip(_stamp_ns(imu.t_s), imu.accel_body_mps2, imu.gyro_body_radps):
        msg = t["sensor_msgs/msg/Imu"](header=m.header(stamp, names.BODY_FRAME), orientation=zero_q,
                                       orientation_covariance=no_orientation, angular_velocity=m.vector3(w),
                                       angular_velocity_covariance=gyro_cov, linear_acceleration=m.vector3(f),
                                       linear_acceleration_covariance=accel_cov)
        yield int(stamp), names.IMU, m.serialize(msg)


def _baro_stream(m: _Messages, flight: FlightData):
    p, sigma_m = flight.baro.pressure_pa, flight.config.baro_noise.noise_sigma_m
    ref_pa = flight.baro_reference_pa
    pa_per_m = float(altitude_to_pressure_pa(-0.5, ref_pa) - altitude_to_pressure_pa(0.5, ref_pa))
    for stamp, pressure in zip(_stamp_ns(flight.baro.t_s), p):
        msg = m.t["sensor_msgs/msg/FluidPressure"](header=m.header(stamp, names.BODY_FRAME),
                                                   fluid_pressure=float(pressure), variance=(sigma_m * pa_per_m) ** 2)
        yield int(stamp), names.BARO, m.serialize(msg)


def _gnss_stream(m: _Messages, flight: FlightData):
    c = flight.config
    cov = [c.gnss_sigma_h_m**2, c.gnss_sigma_h_m**2, c.gnss_sigma_v_m**2]
    for stamp, lat, lon, alt in zip(_stamp_ns(flight.gnss_stamps_s), flight.gnss_lat_deg, flight.gnss_lon_deg,
                                    flight.gnss_alt_m):
        yield int(stamp), names.GNSS_FIX, m.serialize(m.navsatfix(stamp, lat, lon, alt, cov))


def _truth_streams(m: _Messages, truth: GroundTruth, every: int):
    t = m.t
    R = quat_to_rotmat_batch(truth.q_world_body)
    vel_body = np.einsum("nji,nj->ni", R, truth.vel_enu_mps)  # REP-105: twist in child frame
    zero36 = np.zeros(36)
    for i in range(0, len(truth.t_s), every):
        stamp = int(_stamp_ns(truth.t_s[i]))
        yield int(stamp), names.GROUND_TRUTH_FIX, m.serialize(
            m.navsatfix(stamp, truth.lat_deg[i], truth.lon_deg[i], truth.alt_m[i]))
        p = truth.pos_enu_m[i]
        point = t["geometry_msgs/msg/Point"](x=float(p[0]), y=float(p[1]), z=float(p[2]))
        pose = t["geometry_msgs/msg/Pose"](position=point, orientation=m.quaternion(truth.q_world_body[i]))
        twist = t["geometry_msgs/msg/Twist"](linear=m.vector3(vel_body[i]),
                                             angular=m.vector3(truth.omega_body_radps[i]))
        odom = t["nav_msgs/msg/Odometry"](
            header=m.header(stamp, names.MAP_FRAME), child_frame_id=names.BODY_FRAME,
            pose=t["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=zero36),
            twist=t["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=zero36))
        yield int(stamp), names.GROUND_TRUTH_ODOM, m.serialize(odom)


def write_clip(flight: FlightData, bag_path, progress: Callable[[float, float], None] | None = None,
               truth_rate_hz: float = 20.0) -> Path:
    """Write ``flight`` as a rosbag2 directory (MCAP) at ``bag_path`` (must not exist); returns the path.

    Ground truth is the IMU-rate truth thinned to about ``truth_rate_hz``; ``progress(flight_s_done,
    flight_s_total)`` follows the writing.
    """
    bag_path = Path(bag_path)
    store = clip_typestore()
    m = _Messages(store)
    streams = [_camera_stream(m, flight), _imu_stream(m, flight), _baro_stream(m, flight), _gnss_stream(m, flight),
               _truth_streams(m, flight.truth_imu, max(1, int(round(flight.config.imu_rate_hz / truth_rate_hz))))]
    writer = Writer(bag_path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    try:
        conns = {topic: writer.add_connection(topic, msgtype, typestore=store)
                 for topic, msgtype in TOPIC_TYPES.items()}
        last_report = -1.0
        for stamp, topic, data in heapq.merge(*streams, key=lambda item: item[0]):
            writer.write(conns[topic], stamp, data)
            done_s = (stamp - CLIP_EPOCH_NS) * 1e-9
            if progress is not None and done_s - last_report >= 1.0:
                progress(min(done_s, flight.duration_s), flight.duration_s)
                last_report = done_s
    finally:
        writer.close()
    if progress is not None:
        progress(flight.duration_s, flight.duration_s)
    return bag_path


def read_clip(bag_path) -> Iterator[tuple[str, int, bytes, str]]:
    """Yield ``(topic, stamp_ns, raw_cdr_bytes, msgtype)`` in time order from a rosbag2 directory or an
    .mcap/.db3 file; msgtype is ROS 2 style (``sensor_msgs/msg/Image``), as rclpy's get_message wants."""
    with Reader(Path(bag_path)) as reader:
        for conn, stamp_ns, raw in reader.messages():
            yield conn.topic, int(stamp_ns), bytes(raw), conn.msgtype


def _read_rows(bag_path, topic: str, row: Callable) -> list:
    """``row(msg)`` for every message on ``topic``, in bag order; ``bag_path`` may be a list of bags (a
    recording's splits, in order)."""
    store = clip_typestore()
    rows = []
    for path in bag_path if isinstance(bag_path, (list, tuple)) else [bag_path]:
        with Reader(Path(path)) as reader:
            conns = [c for c in reader.connections if c.topic == topic]
            if conns:  # messages(()) would mean every topic
                rows += [row(store.deserialize_cdr(raw, conn.msgtype)) for conn, _stamp, raw in reader.messages(conns)]
    return rows


def _header_s(msg) -> float:
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec


def read_ground_truth(bag_path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``/ground_truth/fix`` -> (t_s [N] header stamps in epoch seconds, lat_deg, lon_deg, alt_m)."""
    rows = _read_rows(bag_path, names.GROUND_TRUTH_FIX, lambda m: (_header_s(m), m.latitude, m.longitude, m.altitude))
    t, lat, lon, alt = (np.array(col, float) for col in zip(*rows)) if rows else (np.zeros(0),) * 4
    return t, lat, lon, alt


def read_ground_truth_odom(bag_path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``/ground_truth/odom`` -> (t_s [N] epoch s, pos_enu_m [N, 3], q_world_body [N, 4] wxyz, vel_world_mps
    [N, 3]) in the truth's ENU frame (the map raster's; the message does not carry its origin, the fix at the
    same stamp pins it down). The twist is in the body frame (REP-105); it is rotated into the world here."""
    def row(m):
        p, q, v = m.pose.pose.position, m.pose.pose.orientation, m.twist.twist.linear
        return _header_s(m), p.x, p.y, p.z, q.w, q.x, q.y, q.z, v.x, v.y, v.z
    a = np.array(_read_rows(bag_path, names.GROUND_TRUTH_ODOM, row), dtype=float).reshape(-1, 11)
    q = a[:, 4:8]
    vel_world = np.einsum("nij,nj->ni", quat_to_rotmat_batch(q), a[:, 8:11])
    return a[:, 0], a[:, 1:4], q, vel_world
