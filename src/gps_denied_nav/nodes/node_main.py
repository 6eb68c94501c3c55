"""The ``main()`` every node executable shares: init, spin on the node's executor, clean exit."""
from __future__ import annotations

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node


def make_executor(node: Node) -> Executor:
    """The executor for one node, sized by its ``executor_threads`` parameter (1 when it has none).

    One thread is the default: callbacks only convert and hand frames to the node's worker, and under the GIL
    more executor threads add wake-ups, not throughput."""
    threads = node.get_parameter("executor_threads").value if node.has_parameter("executor_threads") else 1
    executor = SingleThreadedExecutor() if threads <= 1 else MultiThreadedExecutor(num_threads=int(threads))
    executor.add_node(node)
    return executor


def run_node(node_cls, args=None) -> None:
    rclpy.init(args=args)
    node = node_cls()
    executor = make_executor(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
