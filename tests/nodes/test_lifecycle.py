"""Every node's full lifecycle on real rclpy, a corrupt corpus failing configure, and parameter declarations."""
from __future__ import annotations

import shutil

import pytest
import rclpy
import yaml
from lifecycle_msgs.msg import State
from rclpy.lifecycle import TransitionCallbackReturn

from gps_denied_nav.nodes.params import params_block
from gps_denied_nav.nodes.eskf_node import EskfNode
from gps_denied_nav.nodes.inference_node import InferenceNode
from gps_denied_nav.nodes.matching_node import MatchingNode
from gps_denied_nav.nodes.retrieval_node import RetrievalNode
from gps_denied_nav.replay.graph import ros_args

from gps_denied_nav.replay.session import DEFAULT_PARAMS as PARAMS_FILE

NODE_CLASSES = {"eskf_node": EskfNode, "inference_node": InferenceNode, "retrieval_node": RetrievalNode,
                "matching_node": MatchingNode}


@pytest.fixture
def ros(small_corpus):
    rclpy.init(args=ros_args(PARAMS_FILE, {"corpus_dir": str(small_corpus)}))
    yield small_corpus
    rclpy.shutdown()


def _state(node) -> int:
    return node._state_machine.current_state[0]


@pytest.mark.parametrize("name", sorted(NODE_CLASSES))
def test_full_lifecycle(ros, name):
    node = NODE_CLASSES[name]()
    try:
        assert _state(node) == State.PRIMARY_STATE_UNCONFIGURED
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert _state(node) == State.PRIMARY_STATE_INACTIVE
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert _state(node) == State.PRIMARY_STATE_ACTIVE
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert _state(node) == State.PRIMARY_STATE_UNCONFIGURED
        # A second configure after cleanup must work (resources were really released and re-created).
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
        assert _state(node) == State.PRIMARY_STATE_FINALIZED
    finally:
        node.destroy_node()


@pytest.mark.parametrize("name", sorted(NODE_CLASSES))
def test_declared_parameters_equal_the_yaml_block(ros, name):
    node = NODE_CLASSES[name]()
    try:
        declared = set(node._parameters) - {"use_sim_time", "start_type_description_service"}  # ROS-internal
        block = params_block(yaml.safe_load(PARAMS_FILE.read_text()), name)
        assert declared == set(block)
    finally:
        node.destroy_node()


@pytest.mark.parametrize("name", ["inference_node", "retrieval_node", "matching_node"])
def test_corrupt_corpus_fails_configure_with_the_file_named(small_corpus, tmp_path, name, caplog):
    broken = tmp_path / "corpus"
    shutil.copytree(small_corpus, broken)
    index = broken / "index.faiss"
    index.write_bytes(index.read_bytes()[:100])  # truncated: the checksum no longer verifies
    rclpy.init(args=ros_args(PARAMS_FILE, {"corpus_dir": str(broken)}))
    try:
        node = NODE_CLASSES[name]()
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert _state(node) == State.PRIMARY_STATE_UNCONFIGURED
        node.destroy_node()
    finally:
        rclpy.shutdown()


def test_missing_corpus_dir_fails_configure(tmp_path):
    rclpy.init(args=ros_args(PARAMS_FILE, {"corpus_dir": str(tmp_path / "nowhere")}))
    try:
        node = RetrievalNode()
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        node.destroy_node()
    finally:
        rclpy.shutdown()
