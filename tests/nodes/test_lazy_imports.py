"""A node that runs no model must not load one: eskf_node's process carries no torch, FAISS or OpenCV."""
import subprocess
import sys

import pytest

HEAVY = ("torch", "faiss", "cv2", "scipy.stats", "matplotlib")


@pytest.mark.parametrize("module", ["gps_denied_nav.nodes.eskf_node", "gps_denied_nav.nodes.lifecycle_manager"])
def test_light_nodes_import_nothing_heavy(module):
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"{module} imports {loaded}"
