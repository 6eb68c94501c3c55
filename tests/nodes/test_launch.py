"""The launch file starts the same nodes as `gdn run`, each an installed executable."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from gps_denied_nav.nodes import names

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "gps_denied_nav.launch.py"


def test_launch_file_names_the_graph_nodes_and_their_executables():
    """Static check that runs everywhere: node names in the launch file and console scripts in setup.py."""
    launch_tree = ast.parse(LAUNCH_FILE.read_text())
    strings = {n.value for n in ast.walk(launch_tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert set(names.MANAGED_NODES) <= strings and names.LIFECYCLE_MANAGER in strings
    setup_text = (ROOT / "setup.py").read_text()
    for node in (*names.MANAGED_NODES, names.LIFECYCLE_MANAGER):
        assert f'"{node}"' in setup_text


def test_launch_description_with_launch_ros():
    if importlib.util.find_spec("launch_ros") is None:
        pytest.skip("launch_ros is not installed (it is not on PyPI; it comes with a full ROS 2 install)")
    from launch_ros.actions import LifecycleNode

    spec = importlib.util.spec_from_file_location("gdn_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    lifecycle = [e for e in description.entities if isinstance(e, LifecycleNode)]
    assert len(lifecycle) == len(names.MANAGED_NODES)
