#!/usr/bin/env bash
# Entrypoint of the Jetson image: source ROS 2 Humble and the built workspace, then run the command
# (by default, the CMD of Dockerfile.jetson: the launch of the whole graph).
set -eo pipefail  # no -u: ROS setup scripts read unset variables
source "/opt/ros/${ROS_DISTRO:-humble}/setup.bash"
source /opt/gdn/ros2_ws/install/setup.bash
exec "$@"
