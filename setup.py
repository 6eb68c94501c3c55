"""ament_python package; also a plain pip-installable package (the venv setup uses `pip install -e .`)."""
from glob import glob

from setuptools import find_packages, setup

package_name = "gps_denied_nav"
# A literal list, so that tests/nodes/test_launch.py can read it with ast and check the launch files against it.
console_scripts = [
    "inference_node = gps_denied_nav.nodes.inference_node:main",
    "retrieval_node = gps_denied_nav.nodes.retrieval_node:main",
    "matching_node = gps_denied_nav.nodes.matching_node:main",
    "eskf_node = gps_denied_nav.nodes.eskf_node:main",
    "lifecycle_manager = gps_denied_nav.nodes.lifecycle_manager:main",
    "fc_bridge_node = gps_denied_nav.nodes.fc_bridge_node:main",  # optional: the autopilot link
    "recorder_node = gps_denied_nav.nodes.recorder_node:main",  # optional: the flight data recorder
    "telemetry_node = gps_denied_nav.nodes.telemetry_node:main",  # optional: thermal telemetry, frame-rate limit
    "gps_denied_nav_graph = gps_denied_nav.nodes.graph_main:main",  # all of the above in one process
    "gdn = gps_denied_nav.cli:main",
]

setup(
    name=package_name,
    version="0.1.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", glob("launch/*.launch.py")),
        (f"share/{package_name}/params", glob("params/*.yaml")),
        (f"share/{package_name}/rviz", glob("rviz/*.rviz")),
        (f"share/{package_name}/models", glob("models/*.md")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    python_requires=">=3.10",
    maintainer="gps_denied_nav maintainers",
    maintainer_email="maintainers@gps-denied-nav.dev",
    description="GNSS-denied UAV navigation: visual geo-localisation fused with IMU in an ESKF.",
    license="Apache-2.0",
    entry_points={"console_scripts": console_scripts},
)
