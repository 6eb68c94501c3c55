"""Launch the gps_denied_nav graph on a full ROS 2 install (Humble on the Jetson).

    ros2 launch gps_denied_nav gps_denied_nav.launch.py corpus_dir:=/data/corpus [params_file:=...] [use_sim_time:=true]

Starts the four lifecycle nodes and the lifecycle manager that configures and activates them in order;
the same nodes and parameters as ``gdn run`` (which hosts them in one process where launch_ros is absent).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

MANAGED = ("eskf_node", "inference_node", "retrieval_node", "matching_node")


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("gps_denied_nav"), "params", "gps_denied_nav.yaml")
    params_file = LaunchConfiguration("params_file")
    threads_file = LaunchConfiguration("threads_params_file")  # e.g. params/threads_orin.yaml
    overrides = {"corpus_dir": LaunchConfiguration("corpus_dir"), "use_sim_time": LaunchConfiguration("use_sim_time")}
    nodes = [
        LifecycleNode(package="gps_denied_nav", executable=name, name=name, namespace="", output="screen",
                      parameters=[params_file, threads_file, overrides])
        for name in MANAGED
    ]
    manager = Node(package="gps_denied_nav", executable="lifecycle_manager", name="lifecycle_manager",
                   output="screen", parameters=[params_file, {"use_sim_time": LaunchConfiguration("use_sim_time")}])
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params, description="node parameters"),
        DeclareLaunchArgument("threads_params_file", default_value=default_params,
                              description="thread budget overlay, e.g. the package's params/threads_orin.yaml"),
        DeclareLaunchArgument("corpus_dir", description="tile corpus made by `gdn provision`"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock (bag replay)"),
        *nodes,
        manager,
    ])
