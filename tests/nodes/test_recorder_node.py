"""recorder_node on real rclpy/DDS: what it records (inputs raw, camera decimated and JPEG, outputs), and a
directory it cannot write: the transitions succeed, /diagnostics says ERROR with the path, nothing raises."""
from __future__ import annotations

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import Image, Imu, NavSatFix

from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.conversions import rgb_to_image, s_to_stamp
from gps_denied_nav.nodes.recorder_node import RecorderNode
from gps_denied_nav.recording.salvage import recording_bags
from gps_denied_nav.replay.bag_types import typestore
from gps_denied_nav.replay.player import decompressed_image
from rclpy_harness import ros_context, spinning, wait_for


def _bring_up(node: RecorderNode) -> None:
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS


def _frame(t_s: float) -> Image:
    """A smooth picture (JPEG keeps it within a few grey levels), different for every frame."""
    y, x = np.mgrid[0:48, 0:64]
    rgb = np.stack([x * 4, y * 5, (x + y + int(t_s * 10)) % 256], axis=2)
    return rgb_to_image(rgb.astype(np.uint8), s_to_stamp(t_s), "camera")


def test_records_inputs_outputs_and_decimated_jpeg_frames(tmp_path):
    with ros_context({"output_dir": str(tmp_path), "image_rate_hz": 2.0, "chunk_period_s": 0.2,
                      "sensor_qos_reliability": "reliable"}):
        recorder, probe = RecorderNode(), Node("probe")
        image_pub = probe.create_publisher(Image, names.relative(names.IMAGE), QoSProfile(depth=50))
        imu_pub = probe.create_publisher(Imu, names.relative(names.IMU), QoSProfile(depth=500))
        fix_pub = probe.create_publisher(NavSatFix, names.relative(names.FIX), QoSProfile(depth=50))
        with spinning(recorder, probe):
            _bring_up(recorder)
            assert wait_for(lambda: image_pub.get_subscription_count() and imu_pub.get_subscription_count()
                            and fix_pub.get_subscription_count())
            frames = [_frame(100.0 + 0.1 * i) for i in range(20)]  # 10 Hz for 2 s: 2 Hz keeps every 5th
            for i, frame in enumerate(frames):
                image_pub.publish(frame)
                for k in range(10):
                    imu = Imu()
                    imu.header.stamp = s_to_stamp(100.0 + 0.1 * i + 0.01 * k)
                    imu_pub.publish(imu)
                fix_pub.publish(NavSatFix(latitude=60.0 + i))
                wait_for(lambda: False, 0.02)
            assert wait_for(lambda: recorder.writer.status()["messages_written"] >= 20 + 200 + 4, 10.0)
            recorder.trigger_deactivate()
        recorder.trigger_cleanup()
        bags = recording_bags(next(tmp_path.iterdir()))
        with AnyReader(bags, default_typestore=typestore()) as reader:
            counts = {c.topic: c.msgcount for c in reader.connections}
            jpeg = [raw for c, _t, raw in reader.messages() if c.topic == names.COMPRESSED_IMAGE]
    assert counts[names.IMU] == 200 and counts[names.FIX] == 20
    assert counts[names.COMPRESSED_IMAGE] == 4 and names.IMAGE not in counts
    from rclpy.serialization import deserialize_message

    first = deserialize_message(decompressed_image(bytes(jpeg[0])), Image)
    sent = np.frombuffer(bytes(frames[0].data), np.uint8).reshape(48, 64, 3)
    got = np.frombuffer(bytes(first.data), np.uint8).reshape(48, 64, 3)[:, :, ::-1]  # bgr8 -> rgb
    assert (first.header.stamp.sec, first.width, first.height) == (100, 64, 48)
    assert np.abs(got.astype(int) - sent).mean() < 6  # lossy, but the same picture, colours in order


def test_unwritable_directory_is_an_error_on_diagnostics_not_a_failed_transition(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    statuses: list[DiagnosticStatus] = []
    with ros_context({"output_dir": str(blocker / "recordings"), "retry_s": 0.2}):
        recorder, probe = RecorderNode(), Node("probe")
        probe.create_subscription(DiagnosticArray, names.DIAGNOSTICS,
                                  lambda m: statuses.extend(s for s in m.status if "recorder_node" in s.name),
                                  QoSProfile(depth=50))
        fix_pub = probe.create_publisher(NavSatFix, names.relative(names.FIX), QoSProfile(depth=50))
        with spinning(recorder, probe):
            _bring_up(recorder)
            for _ in range(20):
                fix_pub.publish(NavSatFix())
                wait_for(lambda: False, 0.05)
            assert wait_for(lambda: any(s.level == DiagnosticStatus.ERROR for s in statuses), 10.0)
            assert recorder.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        recorder.trigger_cleanup()
    error = next(s for s in statuses if s.level == DiagnosticStatus.ERROR)
    assert "cannot write" in error.message and "recordings" in error.message
