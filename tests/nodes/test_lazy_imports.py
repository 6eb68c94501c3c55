"""A node that runs no model must not load one: the filter's process carries no torch, FAISS or OpenCV, and
retrieval and matching, which read corpora but run no network, no torch."""
import subprocess
import sys

import pytest

HEAVY = ("torch", "faiss", "cv2", "scipy.stats", "matplotlib")


@pytest.mark.parametrize("module", ["gps_denied_nav.nodes.eskf_node", "gps_denied_nav.nodes.lifecycle_manager"])
def test_light_nodes_import_nothing_heavy(module):
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"{module} imports {loaded}"


@pytest.mark.parametrize("module, unneeded", [("gps_denied_nav.nodes.retrieval_node", ("torch",)),
                                              ("gps_denied_nav.nodes.matching_node", ("torch",))])
def test_corpus_readers_import_no_torch(module, unneeded):
    code = f"import sys, {module}; print(','.join(m for m in {unneeded!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"{module} imports {loaded}"
