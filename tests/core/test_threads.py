"""Thread budget: values reach the libraries, a disagreement between composed nodes is reported."""
import cv2
import faiss
import pytest
import torch
from threadpoolctl import threadpool_info

from gps_denied_nav.core import threads
from gps_denied_nav.core.threads import ThreadBudget, apply_thread_budget, describe


@pytest.fixture(autouse=True)
def restore():
    saved = (torch.get_num_threads(), cv2.getNumThreads(), faiss.omp_get_max_threads(), dict(threads._applied))
    yield
    torch.set_num_threads(saved[0])
    cv2.setNumThreads(saved[1])
    faiss.omp_set_num_threads(saved[2])
    threads._applied.clear()
    threads._applied.update(saved[3])


def test_budget_reaches_each_library():
    threads._applied.clear()
    in_force, warnings = apply_thread_budget(ThreadBudget(torch_intra_op=1, opencv=1, faiss=1, blas=1), "test")
    assert warnings == []
    assert in_force == {"torch_intra_op": 1, "opencv": 1, "faiss": 1, "blas": 1}
    assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 1 and faiss.omp_get_max_threads() == 1
    assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")
    assert describe(in_force) == "blas=1 faiss=1 opencv=1 torch_intra_op=1"


def test_zero_leaves_a_library_alone():
    threads._applied.clear()
    before = cv2.getNumThreads()
    in_force, _ = apply_thread_budget(ThreadBudget(torch_intra_op=1))
    assert "opencv" not in in_force and cv2.getNumThreads() == before


def test_composed_nodes_that_disagree_are_reported():
    threads._applied.clear()
    apply_thread_budget(ThreadBudget(opencv=1), "inference_node")
    in_force, warnings = apply_thread_budget(ThreadBudget(opencv=2), "matching_node")
    assert in_force["opencv"] == 2 and len(warnings) == 1
    assert "matching_node" in warnings[0] and "another node" in warnings[0]


def test_invalid_counts_are_refused():
    with pytest.raises(ValueError, match="torch_intra_op"):
        ThreadBudget(torch_intra_op=-1)
