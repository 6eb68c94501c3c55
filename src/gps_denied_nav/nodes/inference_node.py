"""Inference node: camera frame -> NetVLAD global descriptor.

Frames are first warped into a north-up nadir view at the corpus tile's ground sampling distance using
the filter's attitude and altitude, so a query looks like a corpus tile whatever the heading, roll and
pitch. The model is the checkpoint stored in the corpus (descriptors from another model would not be
comparable); it loads in ``on_configure``, and a missing or wrong checkpoint fails that transition.
"""
from __future__ import annotations

import array
import math
from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, NavSatFix, NavSatStatus

from gps_denied_nav.core.camera import camera_mount_rotation
from gps_denied_nav.core.corpus import Corpus
from gps_denied_nav.core.input_checks import geodetic_problem
from gps_denied_nav.core.rectify import query_footprint_m, rectify_to_north_up
from gps_denied_nav.core.runtime import make_runtime
from gps_denied_nav.core.stage_timing import FrameTimer
from gps_denied_nav.core.rotations import quat_to_rotmat
from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.conversions import image_to_rgb, stamp_to_s
from gps_denied_nav.nodes.node_main import run_node
from gps_denied_nav.core.threads import ThreadBudget
from gps_denied_nav.nodes.extrinsics import Extrinsics
from gps_denied_nav.nodes.stage_node import StageNode, StageParams, require_corpus_dir
from gps_denied_nav.nodes.thermal_limit import ThermalLimitFollower
from gps_denied_nav.nodes.worker import LatestWorker
from gps_denied_nav_interfaces.msg import GlobalDescriptor
from gps_denied_nav_interfaces.srv import Describe


@dataclass(frozen=True)
class InferenceParams(StageParams):
    corpus_dir: str = ""  # provisioned tile corpus; its model.pt is the model used here
    backend: str = "torch"  # torch | onnxruntime (runs CORPUS/model.onnx, from gdn export-onnx)
    device: str = "auto"  # auto | cpu | cuda | tensorrt (tensorrt: onnxruntime's TensorRT provider; torch refuses it)
    fp16: bool = False  # half-precision forward pass (torch on CUDA only; refused elsewhere)
    tensorrt_precision: str = "fp16"  # backend tensorrt: which engine gdn build-engine built (fp32 | fp16 | int8)
    rectify: bool = True  # warp frames north-up/nadir with the filter attitude before describing them
    query_footprint_scale: float = 1.0  # rectified query side / the frame's short ground side (at most a tile)
    frame_stride: int = 1  # describe every n-th frame
    max_attitude_age_s: float = 0.5  # newest filter attitude must be this close to the exposure stamp
    # A filter attitude this much older than the exposure is used without waiting for a newer one: the filter
    # trails the camera by its IMU queue and publish period, and 50 ms of turning (1.5 deg at 30 deg/s) is
    # within the attitude error retrieval is trained for, while the wait is on every frame's critical path.
    attitude_lag_s: float = 0.05
    max_altitude_agl_m: float = 1500.0  # a fused height further above the corpus ground contradicts its terrain
    camera_mount_rpy_deg: tuple = (0.0, 0.0, 0.0)  # camera mount relative to straight-down, top to the nose,
    # used unless TF has base_frame -> the image's frame_id (its optical frame, REP-103)
    base_frame: str = "base_link"
    torch_threads: int = 1  # intra-op threads of the forward pass (process-wide; more than the free cores spins)
    torch_interop_threads: int = 1  # torch's inter-op pool (one model, batch 1: nothing to run beside it)
    onnx_threads: int = 1  # onnxruntime intra-op threads (per session, unlike torch's process-wide pool)
    opencv_threads: int = 1  # rectification warps (process-wide, shared with matching_node when composed)


class InferenceNode(StageNode):
    params_cls = InferenceParams

    def __init__(self, **kwargs):
        super().__init__(names.INFERENCE_NODE, **kwargs)

    def configure_stage(self) -> None:
        corpus = Corpus.load(require_corpus_dir(self.params.corpus_dir))
        p = self.params
        self.runtime = make_runtime(p.backend, corpus, device=p.device, fp16=p.fp16, threads=p.onnx_threads,
                                    tensorrt_precision=p.tensorrt_precision)
        self.query_gsd_m, self.tile_size_m = corpus.tile_size_m / corpus.tile_px, corpus.tile_size_m
        # The ground under the latest fused position (the corpus mean until there is one): rectification
        # and the query's ground resolution need the height above *this* ground, not above the ellipsoid.
        self.terrain, self.corpus_frame, self.ground_alt_m = corpus.terrain, corpus.frame, corpus.ground_alt_m
        self.R_body_cam = camera_mount_rotation(tuple(self.params.camera_mount_rpy_deg))
        self.extrinsics = Extrinsics(self, self.params.base_frame, self.status)
        self._frame_count = 0
        self.pub = self.publisher(GlobalDescriptor, names.DESCRIPTOR)
        self.enable_timing("inference")
        self.worker = LatestWorker("inference", self._describe, self._on_skip,
                                   self._on_error)
        self.subscribe_sensor(Image, names.IMAGE, self._on_image)
        self.subscribe_sensor(CameraInfo, names.CAMERA_INFO, self.on_camera_info)
        self.track_attitude()
        self.subscribe(NavSatFix, names.FIX, self._on_fix)
        # The telemetry node's allowed processed rate (latched): frames beyond it are shed before the SoC
        # reaches its own throttle, which would slow every node at once. No telemetry node: no limit.
        self.thermal, self._last_described_s = ThermalLimitFollower(self), -math.inf
        self.describe_srv = self.create_service(Describe, "~/describe", self._on_describe)
        self.get_logger().info(f"model {self.runtime.model_id} on {self.runtime.name} ({self.runtime.device})")

    def thread_budget(self) -> ThreadBudget:
        p = self.params
        torch_threads = (p.torch_threads, p.torch_interop_threads) if p.backend == "torch" else (0, 0)  # else no torch
        return ThreadBudget(torch_intra_op=torch_threads[0], torch_inter_op=torch_threads[1],
                            opencv=p.opencv_threads, blas=p.blas_threads)

    def release_stage(self) -> None:
        if hasattr(self, "worker"):
            self.worker.stop()
            del self.worker
        self.__dict__.pop("runtime", None)
        if getattr(self, "describe_srv", None) is not None:
            self.destroy_service(self.describe_srv)
            self.describe_srv = None

    # --- callbacks -------------------------------------------------------------------------------
    def _on_describe(self, request, response):
        """~/describe: the corpus model's descriptor of an image as it is (a tile, a view rectified elsewhere):
        for tools that query the corpus, e.g. checking a new camera's frames against it."""
        if not self.active:
            response.success, response.message = False, "the node is not active"
            return response
        try:
            rgb = image_to_rgb(request.image)
        except ValueError as exc:
            self.status.drop("bad_image", exc)
            response.success, response.message = False, f"bad image: {exc}"
            return response
        timer = FrameTimer()
        descriptor = self.runtime.describe(rgb[None])[0]
        response.descriptor = GlobalDescriptor(header=request.image.header, model_id=self.runtime.model_id,
                                               rectified=False, footprint_m=0.0, inference_ms=timer.mark("forward"))
        response.descriptor.descriptor = array.array("f", descriptor.astype(np.float32).tobytes())
        response.success, response.message = True, f"{descriptor.size}-d, model {self.runtime.model_id}"
        self.status.count("describe_calls")
        return response

    def _on_fix(self, msg: NavSatFix) -> None:
        if geodetic_problem(msg.latitude, msg.longitude, msg.altitude):
            self.status.drop("bad_fix", f"latitude/longitude/altitude {msg.latitude}, {msg.longitude}, {msg.altitude}")
            return
        self.poses.altitude_m = msg.altitude
        east, north, _ = self.corpus_frame.to_enu(msg.latitude, msg.longitude, 0.0)
        self.ground_alt_m = float(self.terrain.height_at(east, north))
        agl_m = msg.altitude - self.ground_alt_m
        if msg.status.status != NavSatStatus.STATUS_NO_FIX and not 1.0 < agl_m < self.params.max_altitude_agl_m:
            # GNSS (or the filter) and the corpus' terrain disagree by more than any flight height: one is wrong.
            self.status.drop("altitude_contradicts_terrain", f"fused altitude {msg.altitude:.1f} m is {agl_m:+.1f} m "
                             f"above the corpus ground {self.ground_alt_m:.1f} m (terrain: {self.terrain.source}); "
                             "wrong --ground-alt-m, --dem or --geoid-offset-m?")

    def _on_image(self, msg: Image) -> None:
        if not self.active:
            return
        timer = FrameTimer()
        self.status.count("frames_received")
        self._frame_count += 1
        if (self._frame_count - 1) % max(1, self.params.frame_stride):
            self.finish_frame(msg.header, timer, "frame_stride", forwarded=False)
            return
        stamp_s = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        if 0.0 <= stamp_s - self._last_described_s < 1.0 / self.frame_rate_limit_hz - 0.01:  # 10 ms: stamp jitter
            self.status.count("skipped_thermal_limit")
            self.finish_frame(msg.header, timer, "thermal_limit", forwarded=False)
            return
        self._last_described_s = stamp_s
        try:
            rgb = image_to_rgb(msg)
        except ValueError as exc:
            self.status.drop("bad_image", exc)
            self.finish_frame(msg.header, timer, "bad_image", forwarded=False)
            return
        timer.mark("decode")
        self.worker.submit((msg.header, rgb, timer))

    @property
    def frame_rate_limit_hz(self) -> float:
        return self.thermal.frame_rate_limit_hz

    def _on_skip(self, item) -> None:
        self.status.count("skipped_busy")
        self.finish_frame(item[0], item[2], "skipped_busy", forwarded=False)

    def _on_error(self, item, exc: Exception) -> None:
        self.status.drop("inference_error", exc)
        self.finish_frame(item[0], item[2], "inference_error", forwarded=False)

    def _describe(self, item) -> None:
        header, rgb, timer = item
        timer.mark("queue_wait")
        stamp_s = stamp_to_s(header.stamp)
        query, rectified, footprint_m = rgb, False, 0.0  # 0: not rectified, the frame as it is
        if self.params.rectify and self.poses.empty:
            # Cold start without GNSS: no attitude yet, so describe the frame as it is; retrieval searches
            # globally and the first visual fix initialises the filter.
            self.status.count("unrectified_cold_start")
        elif self.params.rectify:
            q = self.poses.lookup(stamp_s, self.params.max_attitude_age_s, wait_s=self.params.max_attitude_age_s,
                                  lag_s=self.params.attitude_lag_s)
            timer.mark("attitude_wait")
            altitude_agl_m = self.poses.altitude_m - self.ground_alt_m
            if altitude_agl_m <= 1.0:  # finite and not above the ground: the corpus' terrain contradicts the filter
                self.status.drop("below_corpus_ground", f"fused altitude {self.poses.altitude_m:.1f} m is not above "
                                 f"the corpus ground {self.ground_alt_m:.1f} m (wrong --ground-alt-m or --dem?)")
            if q is None or self.intrinsics is None or not altitude_agl_m > 1.0:
                self.status.count("waiting_for_attitude")
                self.finish_frame(header, timer, "waiting_for_attitude", forwarded=False)
                return
            if (self.intrinsics.width_px, self.intrinsics.height_px) != (rgb.shape[1], rgb.shape[0]):
                self.status.drop("camera_info_mismatch", f"image {rgb.shape[1]}x{rgb.shape[0]} vs camera_info "
                                 f"{self.intrinsics.width_px}x{self.intrinsics.height_px}")
                self.finish_frame(header, timer, "camera_info_mismatch", forwarded=False)
                return
            footprint_m = query_footprint_m(self.intrinsics.K, rgb.shape[1], rgb.shape[0], altitude_agl_m,
                                            self.params.query_footprint_scale, self.tile_size_m)
            size_px = max(32, int(round(footprint_m / self.query_gsd_m)))
            R_body_cam = self.extrinsics.rotation(header.frame_id, self.R_body_cam, "camera")
            query, _valid, _offset = rectify_to_north_up(rgb, self.intrinsics.K, quat_to_rotmat(q) @ R_body_cam,
                                                         altitude_agl_m, self.query_gsd_m, size_px)
            rectified = True
            timer.mark("rectify")
        descriptor = self.runtime.describe(query[None])[0]
        inference_ms = timer.mark("forward")
        out = GlobalDescriptor(header=header, model_id=self.runtime.model_id, rectified=rectified,
                               footprint_m=footprint_m, inference_ms=inference_ms)
        out.descriptor = array.array("f", descriptor.astype(np.float32).tobytes())
        self.pub.publish(out)
        timer.mark("publish")
        self.finish_frame(header, timer)
        self.status.count("descriptors_published")
        self.status.set("inference_ms", inference_ms)


def main(args=None) -> None:
    run_node(InferenceNode, args)


if __name__ == "__main__":
    main()
