"""Small helpers for in-process rclpy tests: spin real nodes in the background, wait for a condition."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import rclpy
from rclpy.executors import MultiThreadedExecutor

from gps_denied_nav.replay.graph import ros_args
from gps_denied_nav.replay.session import DEFAULT_PARAMS


def wait_for(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@contextmanager
def ros_context(overrides: dict):
    """rclpy initialised with the package's params file plus overrides; shut down afterwards."""
    rclpy.init(args=ros_args(DEFAULT_PARAMS, overrides))
    try:
        yield
    finally:
        rclpy.shutdown()


@contextmanager
def spinning(*nodes, discovery_s: float = 1.0):
    """Spin the nodes on a background executor; destroy them afterwards."""
    executor = MultiThreadedExecutor(num_threads=4)
    for node in nodes:
        executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    time.sleep(discovery_s)  # DDS discovery between the test's probe node and the nodes under test
    try:
        yield
    finally:
        executor.shutdown(timeout_sec=5.0)
        for node in nodes:
            node.destroy_node()
        thread.join(timeout=5.0)
