#!/usr/bin/env bash
# Entrypoint of the ROS 2 Humble images (Jetson and x86 `humble`): source ROS 2 and the built workspace, then
# run the command (the image's CMD unless one is given).
set -eo pipefail  # no -u: ROS setup scripts read unset variables
source "/opt/ros/${ROS_DISTRO:-humble}/setup.bash"
source /opt/gdn/ros2_ws/install/setup.bash
exec "$@"
