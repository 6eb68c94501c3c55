"""Launch the gps_denied_nav graph on a full ROS 2 install (Humble on the Jetson).

    ros2 launch gps_denied_nav gps_denied_nav.launch.py corpus_dir:=/data/corpus [namespace:=uav1]
        [use_composition:=true] [image_topic:=/cam0/image_raw] [log_level:=debug] [use_sim_time:=true]
        [fc_bridge:=true mavlink_url:=/dev/ttyTHS1,921600] [record:=true record_dir:=/data/recordings]
        [telemetry:=true]

Starts the four lifecycle nodes and the lifecycle manager that configures and activates them in order: one
process per node (as on the aircraft), or with ``use_composition:=true`` all of them in one process
(``gps_denied_nav_graph``, the host ``gdn run`` uses). Every name in the graph is relative but /clock,
/diagnostics, /tf and /tf_static, so ``namespace`` moves the whole graph; the ``*_topic`` arguments remap the
sensor inputs, e.g. to a driver's topics. ``fc_bridge:=true`` adds the autopilot link (fc_bridge_node) and
``record:=true`` the flight data recorder (recorder_node), ``telemetry:=true`` the Jetson's thermal telemetry
and frame-rate limit (telemetry_node); the manager brings them up after the four.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import LifecycleNode, Node

PACKAGE = "gps_denied_nav"
MANAGED = ("eskf_node", "inference_node", "retrieval_node", "matching_node")  # the manager's node_names
# (launch argument that starts it, optional node): after the four, in this order.
OPTIONAL = (("fc_bridge", "fc_bridge_node"), ("record", "recorder_node"), ("telemetry", "telemetry_node"))
# (launch argument, the input the nodes subscribe to): relative, so that the default follows `namespace`.
SENSOR_INPUTS = (
    ("image_topic", "camera/image_raw"),
    ("camera_info_topic", "camera/camera_info"),
    ("imu_topic", "imu/data"),
    ("baro_topic", "baro/pressure"),
    ("gnss_topic", "gnss/fix"),
)
# The manager brings the nodes down in order on Ctrl-C (about 0.2 s per transition, 8 transitions): give
# the one-process host more than launch's default 5 s before SIGTERM.
GRAPH_SIGTERM_TIMEOUT_S = "15"


def manager_node_names() -> PythonExpression:
    """The manager's node_names: the four, then the optional nodes switched on, as a YAML list (launch_ros parses
    a substituted parameter value as YAML); the one-process host hosts whatever optional nodes it lists."""
    expression = ["'[" + ", ".join(MANAGED) + "'"]
    for flag, name in OPTIONAL:
        expression += [f" + (', {name}' if '", LaunchConfiguration(flag), "'.lower() == 'true' else '')"]
    return PythonExpression(expression + [" + ']'"])


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory(PACKAGE), "params", "gps_denied_nav.yaml")
    composed = LaunchConfiguration("use_composition")
    overrides = {"corpus_dir": LaunchConfiguration("corpus_dir"), "use_sim_time": LaunchConfiguration("use_sim_time"),
                 "autostart": LaunchConfiguration("autostart"), "node_names": manager_node_names(),
                 "mavlink_url": LaunchConfiguration("mavlink_url"),
                 "output_dir": LaunchConfiguration("record_dir")}  # nodes ignore the keys they do not declare
    # `namespace=` on each node rather than PushRosNamespace: an empty namespace then means the root
    # namespace, where Humble's PushRosNamespace would reject an empty string.
    common = dict(
        package=PACKAGE, namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[LaunchConfiguration("params_file"), LaunchConfiguration("threads_params_file"), overrides],
        remappings=[(topic, LaunchConfiguration(argument)) for argument, topic in SENSOR_INPUTS],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
    )
    # No `name=` for the one-process host: a __node remap would rename every node it hosts to the same name.
    graph = Node(executable="gps_denied_nav_graph", condition=IfCondition(composed),
                 sigterm_timeout=GRAPH_SIGTERM_TIMEOUT_S, **common)
    nodes = [LifecycleNode(executable=name, name=name, condition=UnlessCondition(composed), **common)
             for name in MANAGED]
    optional = [LifecycleNode(executable=name, name=name, **common, condition=IfCondition(PythonExpression(
        ["'", LaunchConfiguration(flag), "'.lower() == 'true' and '", composed, "'.lower() != 'true'"])))
        for flag, name in OPTIONAL]
    manager = Node(executable="lifecycle_manager", name="lifecycle_manager", condition=UnlessCondition(composed),
                   **common)
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="", description="namespace of every node and topic"),
        DeclareLaunchArgument("params_file", default_value=default_params, description="node parameters"),
        DeclareLaunchArgument("threads_params_file", default_value=default_params,
                              description="thread budget overlay, e.g. the package's params/threads_orin.yaml"),
        DeclareLaunchArgument("corpus_dir", description="tile corpus made by `gdn provision`"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock (bag replay)"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="configure and activate the nodes at start (else: ~/startup service)"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error or fatal"),
        DeclareLaunchArgument("use_composition", default_value="false",
                              description="true: every node in one process (gps_denied_nav_graph)"),
        *[DeclareLaunchArgument(argument, default_value=topic, description=f"topic to read as {topic}")
          for argument, topic in SENSOR_INPUTS],
        DeclareLaunchArgument("fc_bridge", default_value="false",
                              description="true: the autopilot link (fc_bridge_node, MAVLink GPS_INPUT or odometry)"),
        DeclareLaunchArgument("mavlink_url", default_value="udpout:127.0.0.1:14550",
                              description="pymavlink connection of the autopilot: udpout:HOST:PORT or DEVICE,BAUD"),
        DeclareLaunchArgument("record", default_value="false",
                              description="true: the flight data recorder (recorder_node)"),
        DeclareLaunchArgument("record_dir", default_value="~/.ros/gdn_recordings",
                              description="where recorder_node writes flight_YYYYmmdd_HHMMSS recordings"),
        DeclareLaunchArgument("telemetry", default_value="false",
                              description="true: thermal telemetry (telemetry_node: jtop on /diagnostics, the "
                                          "thermal frame-rate limit the inference node obeys)"),
        graph,
        *nodes,
        *optional,
        manager,
    ])
