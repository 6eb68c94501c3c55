"""A rosbags typestore that knows the standard ROS 2 messages and gps_denied_nav_interfaces.

rosbags ships the standard message definitions; ours are read from the installed interface package
(``share/gps_denied_nav_interfaces/msg``), found through AMENT_PREFIX_PATH or the running interpreter's prefix.
"""
from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

INTERFACES_PACKAGE = "gps_denied_nav_interfaces"
# rosbag2 metadata version of every bag written here: Humble's rosbag2 reads up to 8 (version 9 changed
# offered_qos_profiles' type), and `ros2 bag play` on the Jetson must open our clips and outputs.
BAG_VERSION = 8


def _interface_msg_dir() -> Path:
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    for prefix in prefixes:
        candidate = Path(prefix) / "share" / INTERFACES_PACKAGE / "msg"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"{INTERFACES_PACKAGE} is not installed (searched share/ under {prefixes}); "
                            "run `make setup` or build ros2_ws with colcon")


@lru_cache(maxsize=1)
def typestore():
    store = get_typestore(Stores.ROS2_HUMBLE)
    types = {}
    for msg_file in sorted(_interface_msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(msg_file.read_text(), f"{INTERFACES_PACKAGE}/msg/{msg_file.stem}"))
    store.register(types)
    return store
