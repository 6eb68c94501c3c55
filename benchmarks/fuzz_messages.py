"""Fuzzed messages for every input topic of the graph, each with the refusals it should cause (fuzz_graph.py).

The fuzz runs on the reference clip's own time base, over a valid carrier: a 100 Hz IMU and 5 Hz GNSS of
straight and level flight due east from the clip's first fix, so that the filter can initialise and track
while garbage arrives. Between the carrier's samples go NaN/Inf, finite but absurd values, wrong encodings
and sizes, empty messages, stamps far ahead or behind, a flood of visual fixes an hour ahead, and a few
valid messages, on the sensor topics and on the inter-stage ones. What a message should be refused for is
known from how it was built; IMU stamps run through the node's own ``StampGuard`` in send order, since
whether a stamp is "backwards" depends on the ones before it. Refusals that happen only in some state of the
graph (baro is read only by an initialised filter) name that condition; the sender judges it.
"""
from __future__ import annotations

import array

import numpy as np
from builtin_interfaces.msg import Time
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, FluidPressure, Image, Imu, NavSatFix
from std_msgs.msg import Header

from gps_denied_nav.core.baro import altitude_to_pressure_pa
from gps_denied_nav.core.geodesy import LocalTangentPlane
from gps_denied_nav.core.input_checks import StampGuard
from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.conversions import s_to_stamp, stamp_to_s
from gps_denied_nav.nodes.eskf_params import EskfParams
from gps_denied_nav_interfaces.msg import GlobalDescriptor, RetrievalCandidates, TileCandidate, VisualFix

ESKF, INF, RET, MATCH = names.ESKF_NODE, names.INFERENCE_NODE, names.RETRIEVAL_NODE, names.MATCHING_NODE
CAMERA = (INF, MATCH)  # both decode every image and camera_info, and both keep the filter's attitudes
INITIALISED, POSES_KNOWN = "filter_initialised", "pose_buffer_not_empty"  # conditions the sender judges
CARRIER_VEL_ENU_MPS = np.array([10.0, 0.0, 0.0])  # above init_min_speed_mps: the filter initialises on it
CARRIER_IMU_HZ, CARRIER_GNSS_HZ = 100.0, 5.0
G, NAN, INF_ = 9.80665, float("nan"), float("inf")
ZERO, LEVEL = (0.0, 0.0, 0.0), (0.0, 0.0, G)  # gyro at rest; specific force of level flight
UNMATCHED_S = 0.000777  # added to inter-stage stamps so that they never name a camera frame
TOPIC_TYPES = {names.IMU: Imu, names.GNSS_FIX: NavSatFix, names.BARO: FluidPressure, names.VISUAL_FIX: VisualFix,
               names.IMAGE: Image, names.CAMERA_INFO: CameraInfo, names.DESCRIPTOR: GlobalDescriptor,
               names.CANDIDATES: RetrievalCandidates, names.FIX: NavSatFix, names.ODOMETRY: Odometry,
               names.MAP_ORIGIN: NavSatFix}


class Planned:
    """A message, its refusals [(node, reason)], conditional ones [(node, reason, condition)], and ``restart``
    ("burst"/"sporadic") where the IMU guard re-anchors on it: the filter restarts there."""

    def __init__(self, topic: str, msg, refusals=(), conditional=(), restart: str = ""):
        self.topic, self.msg, self.kind = topic, msg, ""
        self.refusals, self.conditional, self.restart = list(refusals), list(conditional), restart


class ClipContext:
    """What the fuzz borrows from the clip and corpus: time base, place, camera, descriptor model."""

    def __init__(self, start_s, lat_deg, lon_deg, alt_m, camera_info: CameraInfo, model_id, descriptor_dim):
        self.start_s, self.lat_deg, self.lon_deg, self.alt_m = start_s, lat_deg, lon_deg, alt_m
        self.camera_info, self.model_id, self.descriptor_dim = camera_info, model_id, descriptor_dim


def _cov9(diag=(4.0, 4.0, 9.0), off: float = 0.0) -> list:
    c = np.diag(np.asarray(diag, float))
    c[0, 1] = c[1, 0] = off
    return [float(v) for v in c.ravel()]


class FuzzPlan:
    """Iterates ``Planned`` messages in send order; the nominal clock advances one slot (1/rate_hz) per message."""

    def __init__(self, clip: ClipContext, seed: int, rate_hz: float, messages: int, future_fixes: int,
                 exclude: tuple = ()):
        """``exclude``: kinds (prefixes) left out, to tell which one a finding needs; none by default."""
        self.clip, self.rng, self.slot_s, self.n = clip, np.random.default_rng(seed), 1.0 / rate_hz, messages
        kept = lambda kind: not (exclude and kind.startswith(tuple(exclude)))  # noqa: E731
        self.future_fixes = future_fixes if kept("visual_fix_1h_ahead") else 0
        self.frame = LocalTangentPlane(clip.lat_deg, clip.lon_deg, clip.alt_m)
        p = EskfParams()  # its defaults are the YAML's (tests/nodes/test_params.py)
        self.guard = StampGuard(max_step_s=p.history_s, reanchor_samples=p.imu_reanchor_samples)
        self.max_accel, self.max_gyro = p.max_accel_mps2, p.max_gyro_radps
        self.last_image_s, self._burst = clip.start_s, []  # stamp of the last valid image; a clock jump's rest
        self.table = [row for row in self._table() if kept(row[0])]
        weights = np.array([w for _k, w, _b in self.table])
        self.p = weights / weights.sum()

    def carrier(self, t_s: float, sigma_m: float = 0.0) -> tuple[float, float, float]:
        """The carrier's WGS84 position at ``t_s``, with ``sigma_m`` of horizontal noise."""
        e, n = self.rng.normal(0.0, sigma_m, 2) if sigma_m else (0.0, 0.0)
        return tuple(float(v) for v in self.frame.to_geodetic(CARRIER_VEL_ENU_MPS * (t_s - self.clip.start_s)
                                                              + np.array([e, n, 0.0])))

    def __iter__(self):
        next_imu, next_gnss = self.clip.start_s, self.clip.start_s + 0.05
        fuzz_slots = self.n * (1.0 - self.slot_s * (CARRIER_IMU_HZ + CARRIER_GNSS_HZ))
        p_future = min(1.0, self.future_fixes / max(fuzz_slots, 1.0))
        for i in range(self.n):
            t = self.clip.start_s + i * self.slot_s
            if t >= next_imu:
                next_imu += 1.0 / CARRIER_IMU_HZ
                kind, planned = "carrier_imu", self._imu(t, LEVEL, ZERO)
            elif t >= next_gnss:
                next_gnss += 1.0 / CARRIER_GNSS_HZ
                kind, planned = "carrier_gnss", self._gnss(t, *self.carrier(t, 1.0))
            elif self._burst:
                kind, planned = "imu_clock_jump_burst", self._imu(self._burst.pop(0), LEVEL, ZERO, burst=True)
            elif self.rng.random() < p_future:
                kind = "visual_fix_1h_ahead"
                planned = self._visual(t + 3600.0, *self.carrier(t, 2.0), refusals=["visual_fix_too_new"])
            else:
                kind, _w, build = self.table[self.rng.choice(len(self.table), p=self.p)]
                planned = build(t)
            planned.kind = kind
            yield planned

    def _table(self):
        """(kind, weight, build(t) -> Planned): the share of the fuzz slots beside the carrier and the flood."""
        c, info_k, imu, gnss, baro, vis = self.carrier, self._info_k, self._imu, self._gnss, self._baro, self._visual
        img, info, desc, cand, fused, odom = self._image, self._info, self._descriptor, self._candidates, \
            self._fused, self._odometry
        p_alt = float(altitude_to_pressure_pa(self.clip.alt_m))
        dim, model, q1 = self.clip.descriptor_dim, self.clip.model_id, (0.0, 0.0, 0.0, 1.0)
        gnss_implausible, vf = "gnss_covariance_implausible", "visual_fix_"
        gnss_npd, vis_npd = ["gnss_covariance_not_positive_definite"], ["visual_fix_covariance_not_positive_definite"]
        no_frame, mismatch, too_old = [(MATCH, "no_frame_for_candidates")], [(RET, "model_mismatch")], \
            [(ESKF, "gnss_too_old", INITIALISED)]

        def both(reason, condition=None):
            return [(n, reason) if condition is None else (n, reason, condition) for n in CAMERA]
        return [
            ("imu_nan", 3, lambda t: imu(t, (NAN, 0.0, G), ZERO)),
            ("imu_inf", 2, lambda t: imu(t, LEVEL, (0.0, -INF_, 0.0))),
            ("imu_accel_1e12", 3, lambda t: imu(t, (1e12, 0.0, G), ZERO)),
            ("imu_gyro_1e12", 3, lambda t: imu(t, LEVEL, (0.0, 0.0, 1e12))),
            ("imu_2h_ahead", 3, lambda t: imu(t + 7200.0, LEVEL, ZERO)),  # a constant offset, as a flipped bit gives
            ("imu_2h_behind", 2, lambda t: imu(t - 7200.0, LEVEL, ZERO)),
            ("imu_0.5s_behind", 2, lambda t: imu(t - 0.5, LEVEL, ZERO)),
            ("imu_ahead_within_history", 0.3, lambda t: imu(t + self.rng.uniform(0.5, 2.9), LEVEL, ZERO)),
            ("imu_empty", 1, lambda t: imu(None, ZERO, ZERO, stamp=Time())),
            ("imu_stamp_int32_max", 0.5, lambda t: imu(None, LEVEL, ZERO, stamp=Time(sec=2**31 - 1))),
            ("imu_nanosec_uint32_max", 0.5, lambda t: imu(None, LEVEL, ZERO, stamp=Time(sec=int(t), nanosec=2**32-1))),
            ("imu_clock_jump_burst", 0.05, self._clock_jump),
            ("gnss_nan", 1, lambda t: gnss(t, NAN, 22.46, 100.0, refusals=["gnss_position_not_finite"])),
            ("gnss_lat_200", 1, lambda t: gnss(t, 200.0, 22.46, 100.0, refusals=["gnss_latlon_out_of_range"])),
            ("gnss_alt_1e12", 1, lambda t: gnss(t, *c(t)[:2], 1e12, refusals=["gnss_altitude_out_of_range"])),
            ("gnss_negative_variance", 1, lambda t: gnss(t, *c(t), cov=(-1.0, 2.0, 9.0), refusals=gnss_npd)),
            ("gnss_nan_variance", 0.5, lambda t: gnss(t, *c(t), cov=(NAN, 2.0, 9.0), refusals=gnss_npd)),
            ("gnss_non_pd", 1, lambda t: gnss(t, *c(t), cov=(1.0, 1.0, 9.0), off=5.0, cov_type=3, refusals=gnss_npd)),
            ("gnss_variance_1e12", 0.5, lambda t: gnss(t, *c(t), cov=(1e12,) * 3, refusals=[gnss_implausible])),
            # NO_FIX says "no fix here": ignored by design, not a refusal.
            ("gnss_no_fix_garbage", 0.5, lambda t: gnss(t, NAN, INF_, -1e12, cov=(NAN,) * 3, status=-1)),
            ("gnss_1h_ahead", 1, lambda t: gnss(t + 3600.0, *c(t), conditional=["gnss_too_new"])),
            ("gnss_2h_behind", 1, lambda t: gnss(t - 7200.0, *c(t), conditional=["gnss_too_old"])),
            ("gnss_empty", 0.5, lambda t: Planned(names.GNSS_FIX, NavSatFix(), [], too_old)),
            ("baro_nan", 1, lambda t: baro(t, NAN, "baro_out_of_range")),
            ("baro_negative", 1, lambda t: baro(t, -101325.0, "baro_out_of_range")),
            ("baro_1e12", 1, lambda t: baro(t, 1e12, "baro_out_of_range")),
            ("baro_1h_ahead", 1, lambda t: baro(t + 3600.0, p_alt, "baro_too_new")),
            ("baro_2h_behind", 1, lambda t: baro(t - 7200.0, p_alt, "baro_too_old")),
            ("baro_valid", 2, lambda t: baro(t, p_alt, "")),
            ("visual_fix_nan", 1, lambda t: vis(t, NAN, 22.46, 100.0, refusals=["visual_fix_position_not_finite"])),
            ("visual_fix_lat_200", 1, lambda t: vis(t, 200.0, 22.46, 100.0, refusals=[vf + "latlon_out_of_range"])),
            ("visual_fix_alt_1e12", 1, lambda t: vis(t, *c(t)[:2], 1e12, refusals=[vf + "altitude_out_of_range"])),
            ("visual_fix_negative_variance", 1, lambda t: vis(t, *c(t), cov=_cov9((4.0, -4.0, 9.0)), refusals=vis_npd)),
            ("visual_fix_non_pd", 1, lambda t: vis(t, *c(t), cov=_cov9((1.0, 1.0, 1.0), off=3.0), refusals=vis_npd)),
            ("visual_fix_variance_1e-300", 0.5, lambda t: vis(t, *c(t), cov=_cov9((1e-300,) * 3),
                                                              refusals=["visual_fix_covariance_implausible"])),
            ("visual_fix_heading_nan", 1, lambda t: vis(t, *c(t), heading=NAN, refusals=[vf + "heading_invalid"])),
            ("visual_fix_heading_variance_negative", 1, lambda t: vis(t, *c(t), heading_var=-1.0,
                                                                      refusals=["visual_fix_heading_invalid"])),
            ("visual_fix_empty", 0.5, lambda t: Planned(names.VISUAL_FIX, VisualFix(), [(ESKF, vis_npd[0])])),
            ("visual_fix_2h_behind", 1, lambda t: vis(t - 7200.0, *c(t, 2.0), refusals=["visual_fix_too_old"])),
            ("visual_fix_valid", 1, lambda t: vis(t, *c(t, 2.0))),
            ("image_yuv422", 1, lambda t: img(t, 48, 64, "yuv422", 128, bytes(128 * 48))),
            ("image_empty", 1, lambda t: img(t, 0, 0, "", 0, b"")),
            ("image_step_too_small", 1, lambda t: img(t, 48, 64, "rgb8", 10, bytes(480))),
            ("image_short_data", 1, lambda t: img(t, 48, 64, "rgb8", 192, bytes(100))),
            ("image_claims_100000px", 0.5, lambda t: img(t, 100000, 100000, "rgb8", 300000, bytes(1000))),
            ("image_valid_small_noise", 1, lambda t: img(t, 48, 64, "rgb8", 192, self._noise(9216), bad=False)),
            ("image_valid_full_noise", 0.5, self._full_noise_image),  # the clip's size: the whole pipeline runs
            ("camera_info_fx_1e-300", 1, lambda t: info(info_k(0, 1e-300))),
            ("camera_info_nan", 1, lambda t: info(info_k(4, NAN))),
            ("camera_info_negative_fx", 0.5, lambda t: info(info_k(0, -500.0))),
            ("camera_info_empty", 0.5, lambda t: Planned(names.CAMERA_INFO, CameraInfo(), both("bad_camera_info"))),
            ("camera_info_distortion_nan", 0.5, lambda t: info(None, d=[NAN, 0.0, 0.0, 0.0, 0.0])),
            ("camera_info_principal_point_1e6", 0.5, lambda t: info(info_k(2, 1e6))),
            ("camera_info_valid", 1, lambda t: info(None, bad=False)),
            ("descriptor_wrong_model", 1, lambda t: desc(t, "another-model", self._unit(dim), mismatch)),
            ("descriptor_wrong_length", 1, lambda t: desc(t, model, np.ones(3), mismatch)),
            ("descriptor_nan", 1, lambda t: desc(t, model, np.full(dim, np.nan), [(RET, "bad_descriptor")])),
            ("descriptor_empty", 0.5, lambda t: Planned(names.DESCRIPTOR, GlobalDescriptor(), mismatch)),
            # Finite descriptors are searched; their candidates then name no frame matching has.
            ("descriptor_1e30", 0.5, lambda t: desc(t, model, np.full(dim, 1e30), no_frame)),
            ("descriptor_valid", 1, lambda t: desc(t, model, self._unit(dim), no_frame)),
            ("candidates_empty", 1, lambda t: Planned(names.CANDIDATES, RetrievalCandidates(), no_frame)),
            ("candidates_tile_out_of_range", 1, lambda t: cand(t + UNMATCHED_S, 2**32 - 1, no_frame)),
            # Stamped like the last valid image: matching looks the tile up (counted if it fails, not if busy).
            ("candidates_tile_out_of_range_for_last_image", 0.5, lambda t: cand(self.last_image_s, 2**32 - 1, [])),
            ("fused_fix_nan_latlon", 1, lambda t: fused(t, NAN, NAN, 100.0, [(RET, "bad_fix")])),
            ("fused_fix_nan_altitude", 0.5, lambda t: fused(t, *c(t)[:2], NAN, [(INF, "fused_altitude_not_finite")])),
            ("fused_fix_lat_200", 0.5, lambda t: fused(t, 200.0, 22.46, 100.0, [])),
            ("fused_fix_alt_1e12", 0.5, lambda t: fused(t, *c(t)[:2], 1e12, [])),
            ("odometry_nan_quaternion", 0.5, lambda t: odom(t, (NAN, 0.0, 0.0, 1.0), both("odometry_not_finite"))),
            ("odometry_quaternion_norm_2", 0.5, lambda t: odom(t, (0.0, 0.0, 0.0, 2.0), both("odometry_not_unit"))),
            ("odometry_2h_ahead", 0.2, lambda t: odom(t + 7200.0, q1, both("odometry_stamp_jump"))),
            ("odometry_2h_behind", 0.3, lambda t: odom(t - 7200.0, q1, [], both("odometry_backwards", POSES_KNOWN))),
            ("map_origin_nan", 0.1, lambda t: self._origin(NAN, NAN, NAN, "map_origin_not_finite")),
            ("map_origin_lat_200", 0.1, lambda t: self._origin(200.0, 22.46, 0.0, "map_origin_out_of_range")),
        ]

    def _imu(self, t, accel, gyro, stamp: Time | None = None, burst: bool = False) -> Planned:
        """The node's read checks come first (by construction here), then its stamp guard (simulated)."""
        msg = Imu(header=Header(stamp=s_to_stamp(t) if stamp is None else stamp))
        a, w = msg.linear_acceleration, msg.angular_velocity
        a.x, a.y, a.z = (float(v) for v in accel)
        w.x, w.y, w.z = (float(v) for v in gyro)
        values = np.array([*accel, *gyro], float)
        if not np.all(np.isfinite(values)):
            return Planned(names.IMU, msg, [(ESKF, "imu_not_finite")])
        if np.max(np.abs(values[:3])) > self.max_accel:
            return Planned(names.IMU, msg, [(ESKF, "imu_accel_out_of_range")])
        if np.max(np.abs(values[3:])) > self.max_gyro:
            return Planned(names.IMU, msg, [(ESKF, "imu_gyro_out_of_range")])
        verdict = self.guard.check(stamp_to_s(msg.header.stamp))
        if verdict == "reanchored":
            return Planned(names.IMU, msg, restart="burst" if burst else "sporadic")
        return Planned(names.IMU, msg, [] if verdict == "ok" else [(ESKF, f"imu_{verdict}")])

    def _clock_jump(self, t) -> Planned:
        """25 samples on a base 2 h ahead, one per fuzz slot: a clock that really jumped (then jumps back)."""
        self._burst = [t + 7200.0 + 0.01 * k for k in range(1, 25)]
        return self._imu(t + 7200.0, LEVEL, ZERO, burst=True)

    def _gnss(self, t, lat, lon, alt, cov=(2.25, 2.25, 9.0), off=0.0, cov_type=2, status=0, refusals=(),
              conditional=()) -> Planned:
        msg = NavSatFix(header=Header(stamp=s_to_stamp(t)), latitude=lat, longitude=lon, altitude=alt,
                        position_covariance_type=cov_type, position_covariance=_cov9(cov, off))
        msg.status.status = status
        return Planned(names.GNSS_FIX, msg, [(ESKF, r) for r in refusals],
                       [(ESKF, r, INITIALISED) for r in conditional])

    def _baro(self, t, pressure_pa, reason) -> Planned:  # the node reads baro only once the filter is initialised
        msg = FluidPressure(header=Header(stamp=s_to_stamp(t)), fluid_pressure=float(pressure_pa), variance=1.0)
        return Planned(names.BARO, msg, [], [(ESKF, reason, INITIALISED)] if reason else [])

    def _visual(self, t, lat, lon, alt, cov=None, heading=0.0, heading_var=0.003, refusals=()) -> Planned:
        msg = VisualFix(latitude_deg=lat, longitude_deg=lon, altitude_m=alt, heading_rad=float(heading),
                        heading_variance_rad2=float(heading_var), tile_id="fuzz", inliers=80)
        msg.header.stamp, msg.header.frame_id = s_to_stamp(t), names.MAP_FRAME
        msg.position_covariance_enu_m2 = _cov9() if cov is None else cov
        return Planned(names.VISUAL_FIX, msg, [(ESKF, r) for r in refusals])

    def _image(self, t, h, w, encoding, step, data, bad: bool = True) -> Planned:
        msg = Image(header=Header(stamp=s_to_stamp(t)), height=h, width=w, encoding=encoding, step=step, data=data)
        if not bad:
            self.last_image_s = t
        return Planned(names.IMAGE, msg, [(n, "bad_image") for n in CAMERA] if bad else [])

    def _full_noise_image(self, t) -> Planned:
        ci = self.clip.camera_info
        return self._image(t, ci.height, ci.width, "mono8", ci.width, self._noise(ci.height * ci.width), bad=False)

    def _noise(self, n: int) -> bytes:
        return self.rng.integers(0, 256, n, dtype=np.uint8).tobytes()

    def _unit(self, dim: int) -> np.ndarray:  # a plausible descriptor: unit length
        return (lambda v: v / np.linalg.norm(v))(self.rng.normal(size=dim))

    def _info_k(self, index: int, value: float) -> list:
        return [value if i == index else float(v) for i, v in enumerate(self.clip.camera_info.k)]

    def _info(self, k, d=None, bad: bool = True) -> Planned:
        ci = self.clip.camera_info
        msg = CameraInfo(header=Header(stamp=s_to_stamp(self.last_image_s)), width=ci.width, height=ci.height,
                         distortion_model=ci.distortion_model, k=[float(v) for v in (ci.k if k is None else k)],
                         d=[float(v) for v in (ci.d if d is None else d)])
        return Planned(names.CAMERA_INFO, msg, [(n, "bad_camera_info") for n in CAMERA] if bad else [])

    def _descriptor(self, t, model_id, values, refusals) -> Planned:
        msg = GlobalDescriptor(header=Header(stamp=s_to_stamp(t + UNMATCHED_S)), model_id=model_id, rectified=True)
        msg.descriptor = array.array("f", np.asarray(values, np.float32).tobytes())
        return Planned(names.DESCRIPTOR, msg, refusals)

    def _candidates(self, t, index, refusals) -> Planned:
        msg = RetrievalCandidates(header=Header(stamp=s_to_stamp(t)), global_search=True)
        msg.candidates = [TileCandidate(tile_id="nowhere", index=index, score=float("nan"))]
        return Planned(names.CANDIDATES, msg, refusals)

    def _fused(self, t, lat, lon, alt, refusals) -> Planned:
        msg = NavSatFix(header=Header(stamp=s_to_stamp(t)), latitude=lat, longitude=lon, altitude=alt,
                        position_covariance_type=3, position_covariance=_cov9((-5.0, 1e300, 1.0)))
        return Planned(names.FIX, msg, refusals)

    def _odometry(self, t, xyzw, refusals, conditional=()) -> Planned:
        msg = Odometry(header=Header(stamp=s_to_stamp(t), frame_id=names.MAP_FRAME), child_frame_id=names.BODY_FRAME)
        q = msg.pose.pose.orientation
        q.x, q.y, q.z, q.w = (float(v) for v in xyzw)
        return Planned(names.ODOMETRY, msg, refusals, conditional)

    def _origin(self, lat, lon, alt, reason) -> Planned:
        return Planned(names.MAP_ORIGIN, NavSatFix(latitude=lat, longitude=lon, altitude=alt), [(RET, reason)])
