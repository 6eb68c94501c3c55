"""Flight data recorder: the graph's inputs, outputs and diagnostics into rotating MCAP splits on the aircraft.

Optional (``record:=true`` in the launch file, ``gdn replay --record DIR``). Everything is taken as raw CDR
bytes and written as it came (receive time on the node's clock, as ``ros2 bag record`` stamps it), except the
camera: frames are decimated to ``image_rate_hz`` and JPEG-compressed (sensor_msgs/CompressedImage on
``<image>/compressed``, as image_transport names it) unless ``image_jpeg_quality`` is 0. recording/writer.py
does the files: splits by size and time, chunks flushed every ``chunk_period_s``, a disk budget, a free-space
floor. A directory it cannot write, a full disk or a write error never fails a transition: the recorder says so
on /diagnostics (ERROR), retries, and the graph navigates on. ``gdn replay RECORDING`` replays a recording;
``gdn recording recover`` salvages the split a crash left open.
"""
from __future__ import annotations

import dataclasses
import traceback
from dataclasses import dataclass

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image

from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.conversions import image_to_rgb
from gps_denied_nav.nodes.node_main import run_node
from gps_denied_nav.nodes.qos import internal_qos, latched_qos
from gps_denied_nav.nodes.stage_node import StageNode, StageParams
from gps_denied_nav.recording.writer import RecordingConfig, RecordingWriter
from gps_denied_nav.replay.lockstep import header_stamp_s

INPUT_TOPICS = {
    names.IMU: "sensor_msgs/msg/Imu",
    names.CAMERA_INFO: "sensor_msgs/msg/CameraInfo",
    names.BARO: "sensor_msgs/msg/FluidPressure",
    names.GNSS_FIX: "sensor_msgs/msg/NavSatFix",
}
OUTPUT_TOPICS = {
    names.ODOMETRY: "nav_msgs/msg/Odometry",
    names.FIX: "sensor_msgs/msg/NavSatFix",
    names.VISUAL_FIX: "gps_denied_nav_interfaces/msg/VisualFix",
    names.CANDIDATES: "gps_denied_nav_interfaces/msg/RetrievalCandidates",
    names.STAGE_TIMING: "gps_denied_nav_interfaces/msg/StageTiming",
    names.MAP_ORIGIN: "sensor_msgs/msg/NavSatFix",
    names.DIAGNOSTICS: "diagnostic_msgs/msg/DiagnosticArray",
}
IMAGE_STAMP_TOLERANCE_S = 0.01  # frame stamps jitter: a frame this close to the decimation period is kept


@dataclass(frozen=True)
class RecorderParams(StageParams):
    output_dir: str = "~/.ros/gdn_recordings"  # one session directory per start (flight_YYYYmmdd_HHMMSS, UTC)
    record_inputs: bool = True  # camera (decimated), camera_info, IMU, baro, GNSS
    record_outputs: bool = True  # odometry, fused and visual fixes, candidates, timing, map origin, /diagnostics
    image_rate_hz: float = 1.0  # camera frames recorded per second (0: none; the camera's rate or more: all)
    image_jpeg_quality: int = 85  # JPEG quality of recorded frames, 1-100; 0 records raw sensor_msgs/Image
    split_size_mb: float = 512.0  # a split is closed (a complete bag) at this size
    split_duration_s: float = 300.0  # ... or after this long
    disk_budget_mb: float = 8192.0  # all recordings under output_dir; the oldest closed splits are deleted first
    min_free_disk_mb: float = 1024.0  # below this free space the recorder pauses (ERROR), never filling the disk
    chunk_period_s: float = 1.0  # chunks flushed at least this often: what a crash or power cut may lose
    fsync: bool = True  # fsync each chunk (a power cut loses no more than a crash)
    queue_messages: int = 5000  # messages waiting for the writer thread; beyond that they are dropped, counted
    retry_s: float = 5.0  # a paused or failed recorder (no permission, disk full) tries again after this long


class RecorderNode(StageNode):
    params_cls = RecorderParams

    def __init__(self, **kwargs):
        super().__init__(names.RECORDER_NODE, **kwargs)
        self.writer: RecordingWriter | None = None

    def configure_stage(self) -> None:
        p = self.params
        if not 0 <= p.image_jpeg_quality <= 100:
            raise ValueError(f"image_jpeg_quality must be 0 (raw) to 100, got {p.image_jpeg_quality}")
        if p.image_rate_hz < 0:
            raise ValueError(f"image_rate_hz must be >= 0, got {p.image_rate_hz}")
        self.config = RecordingConfig(**{f.name: getattr(p, f.name) for f in dataclasses.fields(RecordingConfig)})
        self.config.check()  # ValueError: configure fails, naming the parameter
        self.image_topic = names.COMPRESSED_IMAGE if p.image_jpeg_quality else names.IMAGE
        self.topics = {**(INPUT_TOPICS if p.record_inputs else {}), **(OUTPUT_TOPICS if p.record_outputs else {})}
        if p.record_inputs and p.image_rate_hz > 0:
            self.topics[self.image_topic] = ("sensor_msgs/msg/CompressedImage" if p.image_jpeg_quality
                                             else "sensor_msgs/msg/Image")
            self.subscribe_sensor(Image, names.IMAGE, self._on_image)
        self.last_image_s = -float("inf")
        for topic in INPUT_TOPICS if p.record_inputs else ():
            self.subscribe_sensor(None, topic, self._record(topic), depth=2000 if topic == names.IMU else None)
        for topic in OUTPUT_TOPICS if p.record_outputs else ():
            qos = latched_qos() if topic == names.MAP_ORIGIN else internal_qos(200)
            self.subscribe(None, topic, self._record(topic), qos=qos)
        self.status.add_source(lambda: self.writer.status() if self.writer is not None else {})
        self.status.set_health(self._health)

    def subscribe(self, msg_type, topic: str, callback, depth: int = 10, qos=None):
        """Raw CDR subscriptions (recording costs no deserialisation), guarded like every stage's."""
        def guarded(raw: bytes) -> None:
            try:
                callback(raw)
            except Exception as exc:  # noqa: BLE001 - one bad message must not stop the recorder
                self.status.drop("callback_error", f"{topic}: {type(exc).__name__}: {exc}")
                self.get_logger().error(traceback.format_exc(), throttle_duration_sec=10.0)

        msg_type = msg_type or _message_class({**INPUT_TOPICS, **OUTPUT_TOPICS}[topic])
        self._subs.append(self.create_subscription(msg_type, names.relative(topic), guarded,
                                                   qos or internal_qos(depth), raw=True))
        return self._subs[-1]

    def on_activate(self, state):
        self.writer = RecordingWriter(self.params.output_dir, self.topics, self.config).start()
        self.status.set("recording", str(self.writer.root / self.writer.session))
        return super().on_activate(state)

    def on_deactivate(self, state):
        result = super().on_deactivate(state)
        self._close_writer()
        return result

    def release_stage(self) -> None:
        self._close_writer()

    def _close_writer(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()

    def _now_ns(self) -> int | None:
        """Receive time on the node's clock; None while sim time has no /clock yet (a bag stamp of 0 would make
        the recording start in 1970)."""
        now_ns = self.get_clock().now().nanoseconds
        if now_ns == 0:
            self.status.count("dropped_before_clock")
            return None
        return now_ns

    def _record(self, topic: str):
        def on_raw(raw: bytes) -> None:
            if self.active and self.writer is not None and (now_ns := self._now_ns()) is not None:
                self.writer.put(topic, now_ns, raw)
        return on_raw

    def _on_image(self, raw: bytes) -> None:
        now_ns = self._now_ns() if self.active and self.writer is not None else None
        if now_ns is None:
            return
        stamp_s = header_stamp_s(raw)
        if stamp_s - self.last_image_s < 1.0 / self.params.image_rate_hz - IMAGE_STAMP_TOLERANCE_S:
            return  # decimated
        self.last_image_s = stamp_s
        if self.params.image_jpeg_quality:
            raw = jpeg_compressed(raw, self.params.image_jpeg_quality)
        self.writer.put(self.image_topic, now_ns, raw)
        self.status.count("images_recorded")

    def _health(self):
        state = self.writer.status()["state"] if self.writer is not None else "inactive"
        if state.startswith("error"):
            return DiagnosticStatus.ERROR, f"recorder {state}: {self.writer.status()['last_error']}"
        if state.startswith("paused"):
            return DiagnosticStatus.ERROR, f"recorder {state}"
        return None


def jpeg_compressed(raw_image: bytes, quality: int) -> bytes:
    """A raw sensor_msgs/Image (rgb8, bgr8, mono8) -> raw sensor_msgs/CompressedImage, JPEG, same header; the
    format string is image_transport's ("<encoding>; jpeg compressed bgr8")."""
    msg = deserialize_message(raw_image, Image)
    rgb = image_to_rgb(msg)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for a {msg.width}x{msg.height} {msg.encoding} frame")
    out = CompressedImage(header=msg.header, format=f"{msg.encoding}; jpeg compressed bgr8")
    out.data = buf.tobytes()
    return serialize_message(out)


def _message_class(msgtype: str):
    from gps_denied_nav.replay.player import message_class

    return message_class(msgtype)


def main(args=None) -> None:
    run_node(RecorderNode, args)


if __name__ == "__main__":
    main()
