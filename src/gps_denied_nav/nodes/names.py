"""Node names and topic names of the graph, in one place (interfaces.md is the public contract)."""

INFERENCE_NODE = "inference_node"
RETRIEVAL_NODE = "retrieval_node"
MATCHING_NODE = "matching_node"
ESKF_NODE = "eskf_node"
LIFECYCLE_MANAGER = "lifecycle_manager"
# Start-up order: the filter first (it owns the map origin and the attitude the others use).
MANAGED_NODES = (ESKF_NODE, INFERENCE_NODE, RETRIEVAL_NODE, MATCHING_NODE)

# Inputs (flight clip bag / aircraft)
IMAGE = "/camera/image_raw"
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
DESCRIPTOR = "/gps_denied_nav/descriptor"
CANDIDATES = "/gps_denied_nav/retrieval/candidates"
DEBUG_IMAGE = "/gps_denied_nav/retrieval/debug_image"
MARKERS = "/gps_denied_nav/retrieval/markers"
STAGE_TIMING = "/gps_denied_nav/timing"  # StageTiming: one record per frame and stage
DIAGNOSTICS = "/diagnostics"

MAP_FRAME = "map"
BODY_FRAME = "base_link"
