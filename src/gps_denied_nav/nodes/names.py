"""Node names and topic names of the graph, in one place (interfaces.md is the public contract).

The constants are the names in the root namespace, as bags record them. Nodes create every topic, service
and client under its ``relative`` name, so that a namespace (``ros2 launch ... namespace:=uav1``, or
``-r __ns:=/uav1``) moves the whole graph, as ROS 2 expects of a package; only the ROS-wide topics stay
absolute.
"""

INFERENCE_NODE = "inference_node"
RETRIEVAL_NODE = "retrieval_node"
MATCHING_NODE = "matching_node"
ESKF_NODE = "eskf_node"
LIFECYCLE_MANAGER = "lifecycle_manager"
# Start-up order: the filter first (it owns the map origin and the attitude the others use).
MANAGED_NODES = (ESKF_NODE, INFERENCE_NODE, RETRIEVAL_NODE, MATCHING_NODE)
FC_BRIDGE_NODE = "fc_bridge_node"  # optional (an autopilot link): started by gdn replay --mavlink or the launch file
RECORDER_NODE = "recorder_node"  # optional (the flight data recorder): gdn replay --record, the launch file's record:=true
TELEMETRY_NODE = "telemetry_node"  # optional (thermal telemetry, the frame-rate limit): the launch file's telemetry:=true
OPTIONAL_NODES = (FC_BRIDGE_NODE, RECORDER_NODE, TELEMETRY_NODE)

# Inputs (flight clip bag / aircraft)
IMAGE = "/camera/image_raw"
COMPRESSED_IMAGE = IMAGE + "/compressed"  # CompressedImage (JPEG), as image_transport names it: recordings
CAMERA_INFO = "/camera/camera_info"
IMU = "/imu/data"
BARO = "/baro/pressure"
GNSS_FIX = "/gnss/fix"
GROUND_TRUTH_FIX = "/ground_truth/fix"  # scoring only: no node subscribes to it
GROUND_TRUTH_ODOM = "/ground_truth/odom"
CLOCK = "/clock"

# Outputs and internal topics
ODOMETRY = "/gps_denied_nav/odometry"
FIX = "/gps_denied_nav/fix"
MAP_ORIGIN = "/gps_denied_nav/map_origin"
VISUAL_FIX = "/gps_denied_nav/visual_fix"
VISUAL_FIX_POSE = "/gps_denied_nav/visual_fix_pose"  # PoseWithCovarianceStamped in map: rviz, robot_localization
PATH = "/gps_denied_nav/path"  # nav_msgs/Path in map: the recent fused trajectory for rviz
DESCRIPTOR = "/gps_denied_nav/descriptor"
CANDIDATES = "/gps_denied_nav/retrieval/candidates"
DEBUG_IMAGE = "/gps_denied_nav/retrieval/debug_image"
MARKERS = "/gps_denied_nav/retrieval/markers"
STAGE_TIMING = "/gps_denied_nav/timing"  # StageTiming: one record per frame and stage
THERMAL_RATE_LIMIT = "/gps_denied_nav/thermal/frame_rate_limit_hz"  # Float32, latched: the allowed processed rate
DIAGNOSTICS = "/diagnostics"

TF = "/tf"
TF_STATIC = "/tf_static"
GLOBAL_TOPICS = frozenset((CLOCK, DIAGNOSTICS, TF, TF_STATIC))  # one per ROS graph, never namespaced

# Services (relative to the node: ~/name) and the lifecycle services of a managed node (relative to the namespace)
CHANGE_STATE = "{node}/change_state"
GET_STATE = "{node}/get_state"

MAP_FRAME = "map"
ODOM_FRAME = "odom"
BODY_FRAME = "base_link"


def relative(topic: str) -> str:
    """The name a node creates ``topic`` under: relative (namespaced) unless it is one of GLOBAL_TOPICS."""
    return topic if topic in GLOBAL_TOPICS else topic.lstrip("/")
