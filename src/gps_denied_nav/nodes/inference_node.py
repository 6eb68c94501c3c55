"""Inference node: camera frame -> NetVLAD global descriptor.

Frames are first warped into a north-up nadir view at the corpus tile's ground sampling distance using
the filter's attitude and altitude, so a query looks like a corpus tile whatever the heading, roll and
pitch. The model is the checkpoint stored in the corpus (descriptors from another model would not be
comparable); it loads in ``on_configure``, and a missing or wrong checkpoint fails that transition.
"""
from __future__ import annotations

import array
import math
import time
from dataclasses import dataclass

import numpy as np
import rclpy
from nav_msgs.msg import Odometry
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image, NavSatFix

from gps_denied_nav.core.camera import camera_mount_rotation
from gps_denied_nav.core.corpus import Corpus, CorpusError
from gps_denied_nav.core.descriptor import DescriptorExtractor, RuntimeUnavailable
from gps_denied_nav.core.rectify import rectify_to_north_up
from gps_denied_nav.core.rotations import quat_to_rotmat
from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.attitude_buffer import PoseBuffer
from gps_denied_nav.nodes.conversions import camera_info_to_intrinsics, image_to_rgb, quat_msg_to_wxyz, stamp_to_s
from gps_denied_nav.nodes.diagnostics import NodeStatus
from gps_denied_nav.nodes.node_main import run_node
from gps_denied_nav.nodes.params import declare_parameters, read_parameters
from gps_denied_nav.nodes.worker import LatestWorker
from gps_denied_nav_interfaces.msg import GlobalDescriptor


@dataclass(frozen=True)
class InferenceParams:
    corpus_dir: str = ""  # provisioned tile corpus; its model.pt is the model used here
    device: str = "auto"  # auto | cpu | cuda | tensorrt (tensorrt is detected, engines are built on the Jetson)
    rectify: bool = True  # warp frames north-up/nadir with the filter attitude before describing them
    query_footprint_m: float = 105.0  # ground side length of the rectified query (tiles are larger)
    frame_stride: int = 1  # describe every n-th frame
    max_attitude_age_s: float = 0.5  # newest filter attitude must be this close to the exposure stamp
    camera_mount_rpy_deg: tuple = (0.0, 0.0, 0.0)  # camera mount relative to straight-down, top to the nose


class InferenceNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__(names.INFERENCE_NODE, **kwargs)
        declare_parameters(self, InferenceParams)
        self._active = False

    # --- lifecycle -------------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        self.params = read_parameters(self, InferenceParams)
        try:
            self._load_model()
        except (CorpusError, RuntimeUnavailable, FileNotFoundError, ValueError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._init_pubsub()
        self.get_logger().info(f"model {self.extractor.model_id} on {self.extractor.device}, corpus {self.params.corpus_dir}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._active = True
        return super().on_activate(state)  # activates the lifecycle publishers

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._active = False
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    # --- setup -----------------------------------------------------------------------------------
    def _load_model(self) -> None:
        if not self.params.corpus_dir:
            raise ValueError("parameter corpus_dir is empty: point it at a corpus made by `gdn provision`")
        corpus = Corpus.load(self.params.corpus_dir)
        self.extractor = DescriptorExtractor(corpus.load_model(), device=self.params.device, input_px=corpus.tile_px)
        self.query_gsd_m = corpus.tile_size_m / corpus.tile_px
        self.ground_alt_m = corpus.ground_alt_m
        self.R_body_cam = camera_mount_rotation(tuple(self.params.camera_mount_rpy_deg))

    def _init_pubsub(self) -> None:
        self.status = NodeStatus(self)
        self.poses = PoseBuffer()
        self.intrinsics = None
        self._frame_count = 0
        self.pub = self.create_lifecycle_publisher(GlobalDescriptor, names.DESCRIPTOR, QoSProfile(depth=10))
        self.worker = LatestWorker("inference", self._describe, lambda: self.status.count("skipped_busy"),
                                   lambda e: self.status.drop("inference_error", e))
        self.subs = [
            self.create_subscription(Image, names.IMAGE, self._on_image, QoSProfile(depth=5)),
            self.create_subscription(CameraInfo, names.CAMERA_INFO, self._on_camera_info, QoSProfile(depth=5)),
            self.create_subscription(Odometry, names.ODOMETRY, self._on_odometry, QoSProfile(depth=50)),
            self.create_subscription(NavSatFix, names.FIX, self._on_fix, QoSProfile(depth=10)),
        ]

    def _release(self) -> None:
        if hasattr(self, "worker"):
            self.worker.stop()
            for sub in self.subs:
                self.destroy_subscription(sub)
            self.destroy_lifecycle_publisher(self.pub)
            self.status.destroy()
            del self.worker, self.extractor

    # --- callbacks -------------------------------------------------------------------------------
    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self.intrinsics = camera_info_to_intrinsics(msg)
        except ValueError as exc:
            self.status.drop("bad_camera_info", exc)

    def _on_odometry(self, msg: Odometry) -> None:
        q = quat_msg_to_wxyz(msg.pose.pose.orientation)
        if np.all(np.isfinite(q)) and abs(np.linalg.norm(q) - 1.0) < 1e-3:
            self.poses.add(stamp_to_s(msg.header.stamp), q)

    def _on_fix(self, msg: NavSatFix) -> None:
        if math.isfinite(msg.altitude):
            self.poses.altitude_m = msg.altitude

    def _on_image(self, msg: Image) -> None:
        if not self._active:
            return
        self.status.count("frames_received")
        self._frame_count += 1
        if (self._frame_count - 1) % max(1, self.params.frame_stride):
            return
        try:
            rgb = image_to_rgb(msg)
        except ValueError as exc:
            self.status.drop("bad_image", exc)
            return
        self.worker.submit((msg.header, rgb))

    def _describe(self, item) -> None:
        header, rgb = item
        stamp_s = stamp_to_s(header.stamp)
        query, rectified = rgb, False
        if self.params.rectify:
            q = self.poses.lookup(stamp_s, self.params.max_attitude_age_s)
            altitude_agl_m = self.poses.altitude_m - self.ground_alt_m
            if q is None or self.intrinsics is None or not altitude_agl_m > 1.0:
                self.status.count("waiting_for_attitude")
                return
            if (self.intrinsics.width_px, self.intrinsics.height_px) != (rgb.shape[1], rgb.shape[0]):
                self.status.drop("camera_info_mismatch", f"image {rgb.shape[1]}x{rgb.shape[0]} vs camera_info "
                                 f"{self.intrinsics.width_px}x{self.intrinsics.height_px}")
                return
            size_px = int(round(self.params.query_footprint_m / self.query_gsd_m))
            query, _valid, _offset = rectify_to_north_up(rgb, self.intrinsics.K, quat_to_rotmat(q) @ self.R_body_cam,
                                                         altitude_agl_m, self.query_gsd_m, size_px)
            rectified = True
        t0 = time.perf_counter()
        descriptor = self.extractor.describe(query[None])[0]
        inference_ms = 1e3 * (time.perf_counter() - t0)
        out = GlobalDescriptor(header=header, model_id=self.extractor.model_id, rectified=rectified,
                               footprint_m=float(self.params.query_footprint_m), inference_ms=inference_ms)
        out.descriptor = array.array("f", descriptor.astype(np.float32).tobytes())
        self.pub.publish(out)
        self.status.count("descriptors_published")
        self.status.set("inference_ms", inference_ms)


def main(args=None) -> None:
    run_node(InferenceNode, args)


if __name__ == "__main__":
    main()
