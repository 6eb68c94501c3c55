"""Retrieval narrows to the fused position, and goes global when the filter reports NO_FIX (lost) or an
operator forces it: the re-initialisation path of the graph, over real DDS."""
from __future__ import annotations

import array
import time

import numpy as np
import pytest
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image, NavSatFix, NavSatStatus
from std_srvs.srv import SetBool

from gps_denied_nav.core.corpus import Corpus
from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.conversions import s_to_stamp
from gps_denied_nav.nodes.retrieval_node import RetrievalNode
from gps_denied_nav_interfaces.msg import GlobalDescriptor, RetrievalCandidates
from rclpy_harness import ros_context, spinning


@pytest.fixture(scope="module")
def retrieval(small_corpus):
    with ros_context({"corpus_dir": str(small_corpus)}):
        node = RetrievalNode()
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        probe = Node("retrieval_probe")
        received: list[RetrievalCandidates] = []
        probe.create_subscription(RetrievalCandidates, names.CANDIDATES, received.append, QoSProfile(depth=10))
        with spinning(node, probe):
            yield Corpus.load(small_corpus), probe, received, node


def _ask(probe, received, corpus, tile: int, fix: NavSatFix | None) -> RetrievalCandidates:
    if not hasattr(probe, "test_pubs"):
        probe.test_pubs = (probe.create_publisher(NavSatFix, names.FIX, QoSProfile(depth=5)),
                           probe.create_publisher(GlobalDescriptor, names.DESCRIPTOR, QoSProfile(depth=5)))
        time.sleep(1.0)  # discovery both ways before the first message
    fix_pub, desc_pub = probe.test_pubs
    deadline = time.monotonic() + 5.0
    while (fix_pub.get_subscription_count() == 0 or desc_pub.get_subscription_count() == 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    if fix is not None:
        fix_pub.publish(fix)
        time.sleep(0.3)
    msg = GlobalDescriptor(model_id=corpus.model_id)
    msg.header.stamp = s_to_stamp(100.0)
    msg.descriptor = array.array("f", corpus.descriptors[tile].tobytes())
    before = len(received)
    desc_pub.publish(msg)
    deadline = time.monotonic() + 5.0
    while len(received) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(received) > before, "no candidates published"
    return received[-1]


def _fix_at(corpus, tile: int, status: int, sigma_m: float) -> NavSatFix:
    lat, lon = corpus.tile_latlon_deg[tile]
    fix = NavSatFix(latitude=float(lat), longitude=float(lon), altitude=float(corpus.frame.origin_alt_m) + 120.0)
    fix.header.stamp = s_to_stamp(100.0)
    fix.status.status = status
    fix.position_covariance = [sigma_m**2, 0.0, 0.0, 0.0, sigma_m**2, 0.0, 0.0, 0.0, 1.0]
    fix.position_covariance_type = NavSatFix.COVARIANCE_TYPE_KNOWN
    return fix


def test_prior_narrows_and_no_fix_goes_global(retrieval):
    corpus, probe, received, _node = retrieval
    tile = corpus.num_tiles // 2
    narrowed = _ask(probe, received, corpus, tile, _fix_at(corpus, tile, NavSatStatus.STATUS_FIX, 5.0))
    assert not narrowed.global_search and narrowed.prior_radius_m > 0
    centre = corpus.tile_centres_enu_m[tile]
    for cand in narrowed.candidates:
        offset = corpus.tile_centres_enu_m[cand.index] - centre
        assert np.hypot(*offset) <= narrowed.prior_radius_m + 1e-6
    assert narrowed.candidates[0].index == tile  # its own descriptor ranks first
    # No fixed floor: 3x the fused fix's horizontal sigma (sqrt(var_e + var_n)) + half a tile + half the
    # footprint (a tile's when the message gives none).
    assert narrowed.prior_radius_m == pytest.approx(3.0 * 5.0 * 2**0.5 + corpus.tile_size_m, rel=1e-5)
    wider = _ask(probe, received, corpus, tile, _fix_at(corpus, tile, NavSatStatus.STATUS_FIX, 40.0))
    assert wider.prior_radius_m == pytest.approx(3.0 * 40.0 * 2**0.5 + corpus.tile_size_m, rel=1e-5)

    lost = _ask(probe, received, corpus, tile, _fix_at(corpus, tile, NavSatStatus.STATUS_NO_FIX, 5.0))
    assert lost.global_search and lost.prior_radius_m == 0.0
    # Lost, the matcher verifies more candidates (global_top_k) than it tries around a prior (top_k)
    assert len(narrowed.candidates) <= 5 < len(lost.candidates) == min(20, corpus.num_tiles)
    assert lost.candidates[0].index == tile


def test_operator_can_force_global_search(retrieval):
    corpus, probe, received, _node = retrieval
    client = probe.create_client(SetBool, f"/{names.RETRIEVAL_NODE}/set_global_search")
    assert client.wait_for_service(timeout_sec=5.0)
    future = client.call_async(SetBool.Request(data=True))
    deadline = time.monotonic() + 5.0
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert future.result().success
    tile = 0
    forced = _ask(probe, received, corpus, tile, _fix_at(corpus, tile, NavSatStatus.STATUS_FIX, 5.0))
    assert forced.global_search


def test_rviz_mosaic_only_while_subscribed(retrieval):
    """Frames are neither kept nor drawn for the debug mosaic until something subscribes to it."""
    corpus, probe, received, node = retrieval
    tile = 1
    image_pub = probe.create_publisher(Image, names.IMAGE, QoSProfile(depth=5))
    frame = Image(height=48, width=64, encoding="rgb8", step=64 * 3)
    frame.header.stamp = s_to_stamp(100.0)
    frame.data = np.full((48, 64, 3), 120, np.uint8).tobytes()

    def ask_with_frame():
        deadline = time.monotonic() + 5.0
        while node.count_subscribers(names.IMAGE) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        image_pub.publish(frame)
        time.sleep(0.3)
        _ask(probe, received, corpus, tile, None)
        time.sleep(0.3)

    ask_with_frame()
    assert not node.images and node.status.snapshot().get("debug_images_published", 0) == 0
    mosaics: list[Image] = []
    probe.create_subscription(Image, names.DEBUG_IMAGE, mosaics.append, QoSProfile(depth=5))
    deadline = time.monotonic() + 5.0
    while node.debug_pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    ask_with_frame()
    deadline = time.monotonic() + 5.0
    while not mosaics and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mosaics and mosaics[-1].width > frame.width, "no mosaic published to a subscriber"
