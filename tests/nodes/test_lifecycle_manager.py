"""The lifecycle manager brings the real nodes up over their change_state services, in order, and down again;
a node that fails a transition stops the start-up and is named, and shutdown still brings down every node that
came up (asking each for its state), going on past a node that refuses."""
from __future__ import annotations

import pytest
from lifecycle_msgs.msg import State
from rclpy.lifecycle import TransitionCallbackReturn

from gps_denied_nav.nodes import names
from gps_denied_nav.replay.graph import GraphHost
from gps_denied_nav.replay.session import DEFAULT_PARAMS
from rclpy_harness import wait_for


def test_manager_brings_the_graph_up_and_down(small_corpus):
    host = GraphHost(DEFAULT_PARAMS, {"corpus_dir": str(small_corpus)}).start()
    try:
        host.wait_until_active(timeout_s=120.0)
        assert host.manager.node_states == {n: "active" for n in names.MANAGED_NODES}
    finally:
        host.close()
    assert host.manager.node_states == {n: "unconfigured" for n in names.MANAGED_NODES}


def test_manager_names_the_node_that_fails(tmp_path):
    host = GraphHost(DEFAULT_PARAMS, {"corpus_dir": str(tmp_path / "no_corpus_here")}).start()
    try:
        with pytest.raises(RuntimeError, match="inference_node: transition 'configure' failed"):
            host.wait_until_active(timeout_s=120.0)
        # The filter came before it in the order and was configured; nothing after it was touched.
        assert host.manager.node_states[names.ESKF_NODE] == "active"
        assert host.manager.node_states[names.RETRIEVAL_NODE] == "unknown"
    finally:
        host.close()


def _real_states(host: GraphHost) -> dict[str, str]:
    """Each node's own lifecycle state (not what the manager believes)."""
    return {node.get_name(): node._state_machine.current_state[1] for node in host.graph_nodes}


def _graph_failing_at_retrieval(small_corpus, tmp_path) -> GraphHost:
    """The graph with only retrieval_node pointed at a missing corpus: the filter and inference come up first."""
    params = tmp_path / "retrieval_fails.yaml"
    params.write_text("".join(f"{node}:\n  ros__parameters:\n    corpus_dir: '{corpus}'\n" for node, corpus in (
        (names.INFERENCE_NODE, small_corpus), (names.RETRIEVAL_NODE, tmp_path / "no_corpus_here"),
        (names.MATCHING_NODE, small_corpus))))
    host = GraphHost([DEFAULT_PARAMS, params]).start()
    with pytest.raises(RuntimeError, match="retrieval_node: transition 'configure' failed"):
        host.wait_until_active(timeout_s=120.0)
    assert _real_states(host) == {names.ESKF_NODE: "active", names.INFERENCE_NODE: "active",
                                  names.RETRIEVAL_NODE: "unconfigured", names.MATCHING_NODE: "unconfigured"}
    return host


def test_shutdown_after_a_failed_start_up_brings_down_what_came_up(small_corpus, tmp_path):
    host = _graph_failing_at_retrieval(small_corpus, tmp_path)
    try:
        host.manager.shutdown()
        assert wait_for(lambda: not host.manager.busy, 30.0)
        assert _real_states(host) == {n: "unconfigured" for n in names.MANAGED_NODES}
        # matching_node was never sent a transition, so the manager still does not know its state.
        assert host.manager.node_states == {names.ESKF_NODE: "unconfigured", names.INFERENCE_NODE: "unconfigured",
                                            names.RETRIEVAL_NODE: "unconfigured", names.MATCHING_NODE: "unknown"}
    finally:
        host.close()


def test_a_node_that_refuses_to_come_down_does_not_stop_the_others(small_corpus, tmp_path):
    host = _graph_failing_at_retrieval(small_corpus, tmp_path)
    inference = next(node for node in host.graph_nodes if node.get_name() == names.INFERENCE_NODE)
    callbacks = inference._callbacks  # rclpy binds the transition callbacks at construction
    on_deactivate = callbacks[State.TRANSITION_STATE_DEACTIVATING]
    callbacks[State.TRANSITION_STATE_DEACTIVATING] = lambda _state: TransitionCallbackReturn.FAILURE
    try:
        host.manager.shutdown()
        assert wait_for(lambda: not host.manager.busy, 30.0)
        states = _real_states(host)
        assert states[names.INFERENCE_NODE] == "active" and states[names.ESKF_NODE] == "unconfigured"
        assert host.manager.node_states[names.INFERENCE_NODE] == "failed to deactivate"
        # Both failures stay on /diagnostics (ERROR): the start-up's and the shutdown's.
        assert "retrieval_node: transition 'configure' failed" in host.manager.failure
        assert "inference_node: transition 'deactivate' failed" in host.manager.failure
    finally:
        callbacks[State.TRANSITION_STATE_DEACTIVATING] = on_deactivate
        host.close()
    assert host.manager.node_states[names.INFERENCE_NODE] == "unconfigured"


def test_heartbeat_puts_the_graph_in_error_when_a_node_dies(small_corpus):
    """A node whose process died stops answering get_state: the manager says which, ~/is_active says false,
    and shutdown still brings the others down."""
    from std_srvs.srv import Trigger

    host = GraphHost(DEFAULT_PARAMS, {"corpus_dir": str(small_corpus), "heartbeat_timeout_s": 3.0}).start()
    dead = next(n for n in host.graph_nodes if n.get_name() == names.MATCHING_NODE)
    try:
        host.wait_until_active(timeout_s=120.0)
        client = host.manager.create_client(Trigger, "lifecycle_manager/is_active")
        assert client.wait_for_service(timeout_sec=10.0)
        future = client.call_async(Trigger.Request())
        assert wait_for(future.done, timeout_s=10.0) and future.result().success, future.result()
        # "Kill" the matching node: its executor stops and the node is gone, as if its process had died.
        executor = next(e for n, e in host._executors if n is dead)
        executor.shutdown(timeout_sec=5.0)
        dead.destroy_node()
        assert wait_for(lambda: not host.manager.active, timeout_s=20.0)
        assert host.manager.failure.startswith(f"{names.MATCHING_NODE}: heartbeat"), host.manager.failure
        future = client.call_async(Trigger.Request())
        assert wait_for(future.done, timeout_s=10.0)
        assert future.result().success is False and names.MATCHING_NODE in future.result().message
    finally:
        host._executors = [(n, e) for n, e in host._executors if n is not dead]
        host.close()
    assert host.manager.node_states[names.ESKF_NODE] == "unconfigured"
