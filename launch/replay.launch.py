"""Replay a flight bag through the graph on a full ROS 2 install (Humble): ros2 bag play, the graph, rviz2.

    ros2 launch gps_denied_nav replay.launch.py bag:=/data/clip.mcap corpus_dir:=/data/corpus
        [rate:=0.5] [rviz:=true] [namespace:=uav1] [use_composition:=true]

The bag drives /clock (``--clock``) and the graph follows it (``use_sim_time:=true``). Unlike ``gdn replay``
this is not lockstep: a frame the graph is still busy with the previous one for is skipped, as in flight,
so a slow machine wants a lower ``rate``. ``delay_s`` holds the bag back while the nodes load their models
and corpus (the first GNSS fixes start the filter; played before the graph is active they are lost).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, OpaqueFunction, TimerAction
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "gps_denied_nav"
# What a flight bag records (in the root namespace) and the graph or rviz read.
BAG_TOPICS = ("/camera/image_raw", "/camera/camera_info", "/imu/data", "/baro/pressure", "/gnss/fix",
              "/ground_truth/fix", "/ground_truth/odom")


def bag_play(context):
    """``ros2 bag play`` with each recorded topic moved into ``namespace``.

    The player publishes under the absolute names the bag recorded, so pushing its node into a namespace
    (``--ros-args -r __ns:=/uav1``) would not move a single topic. Humble's ``ros2 bag play --remap a:=b``
    (rules handed to the player node as ``--ros-args --remap``) does, one rule per topic. ``--storage mcap``:
    Humble's player assumes sqlite3 unless told, and this project's bags are MCAP.
    """
    bag, rate_x, storage, delay_s, namespace = (LaunchConfiguration(argument).perform(context) for argument in
                                                ("bag", "rate", "storage", "delay_s", "namespace"))
    cmd = ["ros2", "bag", "play", bag, "--clock", "--rate", rate_x, "--storage", storage]
    namespace = namespace.strip("/")
    if namespace:
        cmd += ["--remap", *[f"{topic}:=/{namespace}{topic}" for topic in BAG_TOPICS]]  # last: it takes every word
    # A timer rather than `ros2 bag play --delay`, whose --clock already runs during the delay (rosbag2 #1858).
    return [TimerAction(period=float(delay_s), actions=[ExecuteProcess(cmd=cmd, output="screen")])]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    graph = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "gps_denied_nav.launch.py")),
        launch_arguments={"use_sim_time": "true", "corpus_dir": LaunchConfiguration("corpus_dir"),
                          "params_file": LaunchConfiguration("params_file"),
                          "namespace": LaunchConfiguration("namespace")}.items())
    rviz = Node(package="rviz2", executable="rviz2", namespace=LaunchConfiguration("namespace"), output="screen",
                arguments=["-d", os.path.join(share, "rviz", "gps_denied_nav.rviz")],
                parameters=[{"use_sim_time": True}], condition=IfCondition(LaunchConfiguration("rviz")))
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="flight bag (a rosbag2 directory, e.g. made by `gdn demo`)"),
        DeclareLaunchArgument("corpus_dir", description="tile corpus made by `gdn provision`"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "params", "gps_denied_nav.yaml"),
                              description="node parameters"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the graph and the bag's topics"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate (1.0: real time)"),
        DeclareLaunchArgument("delay_s", default_value="10.0",
                              description="wait before playing, for the graph to configure and activate"),
        DeclareLaunchArgument("storage", default_value="mcap", description="the bag's storage plugin"),
        DeclareLaunchArgument("rviz", default_value="false", description="start rviz2 with the package's view"),
        graph,
        OpaqueFunction(function=bag_play),
        rviz,
    ])
