"""The lifecycle manager brings the real nodes up over their change_state services, in order, and down again;
a node that fails a transition stops the sequence and is named."""
from __future__ import annotations

import pytest

from gps_denied_nav.nodes import names
from gps_denied_nav.replay.graph import GraphHost
from gps_denied_nav.replay.session import DEFAULT_PARAMS


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
