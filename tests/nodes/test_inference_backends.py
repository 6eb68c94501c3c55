"""inference_node on the onnxruntime backend: it configures on a corpus with an exported model and answers
~/describe with the torch backend's descriptor; on a corpus without model.onnx configure fails with the reason."""
from __future__ import annotations

import numpy as np
import pytest
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node

from gps_denied_nav.core.corpus import Corpus
from gps_denied_nav.core.map_raster import load_geotiff
from gps_denied_nav.core.runtime import make_runtime
from gps_denied_nav.nodes.conversions import rgb_to_image, s_to_stamp
from gps_denied_nav.nodes.inference_node import InferenceNode
from gps_denied_nav_interfaces.srv import Describe
from rclpy_harness import ros_context, spinning, wait_for


def test_onnxruntime_backend_describes_like_torch(small_world, onnx_corpus):
    corpus = Corpus.load(onnx_corpus)
    image = load_geotiff(small_world).image_rgb[200:500, 150:450].copy()
    expected = make_runtime("torch", corpus, device="cpu").describe(image[None])[0]
    with ros_context({"corpus_dir": str(onnx_corpus), "backend": "onnxruntime", "device": "cpu", "onnx_threads": 2}):
        node, probe = InferenceNode(), Node("probe")
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.runtime.name == "onnxruntime"
        node.trigger_activate()
        client = probe.create_client(Describe, "inference_node/describe")
        with spinning(node, probe):
            assert client.wait_for_service(timeout_sec=10.0)
            future = client.call_async(Describe.Request(image=rgb_to_image(image, s_to_stamp(5.0), "map")))
            assert wait_for(future.done, 30.0), "no answer from ~/describe"
        node.trigger_deactivate()
        node.trigger_cleanup()
    answer = future.result()
    assert answer.success, answer.message
    got = np.asarray(answer.descriptor.descriptor, dtype=np.float32)
    difference = float(np.abs(got - expected).max())
    assert difference <= 1e-4, f"onnxruntime node vs torch: max abs difference {difference:.2e}"
    assert answer.descriptor.model_id == corpus.model_id


@pytest.mark.parametrize("overrides, reason", [
    ({"backend": "onnxruntime"}, "gdn export-onnx"),  # provisioned, never exported
    ({"backend": "tflite"}, "backend must be one of"),
])
def test_an_unavailable_backend_fails_configure_with_the_reason(small_corpus, overrides, reason, capfd):
    with ros_context({"corpus_dir": str(small_corpus), "device": "cpu", **overrides}):
        node = InferenceNode()
        try:
            assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        finally:
            node.destroy_node()
    assert reason in capfd.readouterr().err


def test_the_thermal_frame_rate_limit_sheds_frames(small_world, small_corpus):
    """A latched 1 Hz limit from the telemetry node: of frames stamped 4 Hz apart over 3 s, those at most
    1 s after the last described one are shed (counted), the rest described; a bad limit is dropped."""
    from std_msgs.msg import Float32

    from gps_denied_nav.nodes import names
    from gps_denied_nav.nodes.qos import latched_qos
    from gps_denied_nav_interfaces.msg import GlobalDescriptor

    image = load_geotiff(small_world).image_rgb[200:500, 150:450].copy()
    with ros_context({"corpus_dir": str(small_corpus), "device": "cpu", "rectify": False}):
        node, probe = InferenceNode(), Node("probe")
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        node.trigger_activate()
        limit = probe.create_publisher(Float32, names.relative(names.THERMAL_RATE_LIMIT), latched_qos())
        frames = probe.create_publisher(type(rgb_to_image(image, s_to_stamp(0.0), "camera")),
                                        names.relative(names.IMAGE), 10)
        described = []
        probe.create_subscription(GlobalDescriptor, names.relative(names.DESCRIPTOR), described.append, 50)
        with spinning(node, probe):
            limit.publish(Float32(data=1.0))
            assert wait_for(lambda: node.frame_rate_limit_hz == 1.0, 10.0), "the latched limit never arrived"
            limit.publish(Float32(data=float("nan")))  # dropped, counted: the limit stays as it was
            assert wait_for(lambda: node.status.snapshot().get("dropped_bad_frame_rate_limit") == 1, 10.0)
            for k in range(13):  # 0, 0.25, ... 3.0 s
                frames.publish(rgb_to_image(image, s_to_stamp(100.0 + 0.25 * k), "camera"))
                count = len(described)
                wait_for(lambda: len(described) > count, 0.6)  # one frame in flight at a time: nothing skipped busy
            wait_for(lambda: len(described) >= 4, 5.0)
        counts = node.status.snapshot()
        node.trigger_deactivate()
        node.trigger_cleanup()
    stamps = [d.header.stamp.sec + 1e-9 * d.header.stamp.nanosec - 100.0 for d in described]
    assert np.allclose(stamps, [0.0, 1.0, 2.0, 3.0], atol=1e-6), stamps
    assert counts.get("skipped_thermal_limit") == 9 and counts.get("dropped_bad_frame_rate_limit") == 1, counts
