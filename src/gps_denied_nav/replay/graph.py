"""In-process graph host: every node of the graph in one process, each on its own executor thread.

This is Python's answer to a component container: ``gdn run`` and ``gdn replay`` use it, and so do the
end-to-end tests. The lifecycle manager brings the nodes up through their real change_state services,
exactly as it does when ``ros2 launch`` starts them as separate processes.
"""
from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import rclpy
from rclpy.executors import Executor
from rclpy.node import Node

from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.node_main import make_executor


def ros_args(params_file: str | Path | list | tuple | None, overrides: dict[str, object] | None = None,
             namespace: str = "") -> list[str]:
    """Command-line style ROS arguments: params files (later ones override earlier ones, e.g. the Orin thread
    budget after the main file), ``name:=value`` overrides for every node, and the namespace every node of the
    process is pushed into (``-r __ns:=``, as ``ros2 launch``'s namespace does; topics are relative)."""
    args = ["--ros-args"]
    if namespace:
        args += ["-r", f"__ns:={'/' + namespace.strip('/')}"]
    files = [params_file] if isinstance(params_file, (str, Path)) else list(params_file or [])
    for path in files:
        args += ["--params-file", str(path)]
    for key, value in (overrides or {}).items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        args += ["-p", f"{key}:={text}"]
    return args


def with_optional(overrides: dict[str, object], optional_nodes: tuple[str, ...]) -> dict[str, object]:
    """Overrides that make the lifecycle manager bring the optional nodes up too, after the four of the graph."""
    if not optional_nodes:
        return overrides
    return {**overrides, "node_names": "[" + ", ".join((*names.MANAGED_NODES, *optional_nodes)) + "]"}


def optional_node_class(name: str):
    """The node class of one of names.OPTIONAL_NODES (imported only when hosted: pymavlink, cv2)."""
    if name == names.FC_BRIDGE_NODE:
        from gps_denied_nav.nodes.fc_bridge_node import FcBridgeNode

        return FcBridgeNode
    if name == names.RECORDER_NODE:
        from gps_denied_nav.nodes.recorder_node import RecorderNode

        return RecorderNode
    if name == names.TELEMETRY_NODE:
        from gps_denied_nav.nodes.telemetry_node import TelemetryNode

        return TelemetryNode
    raise ValueError(f"unknown optional node {name!r}; the optional nodes are {names.OPTIONAL_NODES}")


def private_domain_id() -> int:
    """A random DDS domain in 1..101 (the range ROS 2 recommends on Linux) other than ROS_DOMAIN_ID's.

    A replay hosts the whole graph, publishing /gps_denied_nav/fix like the live one: on the shared
    domain it would feed a running autopilot bridge, and a live IMU would feed the replayed filter (a
    replay run beside a benchmark on domain 0 was seen re-initialising on the benchmark's fixes).
    """
    live = os.environ.get("ROS_DOMAIN_ID", "0")
    return random.choice([d for d in range(1, 102) if str(d) != live])


def spin_in_threads(executors: list[tuple[Node, Executor]]) -> list[threading.Thread]:
    """Spin each executor on a daemon thread of its own (named after its node)."""
    threads = []
    for node, executor in executors:
        thread = threading.Thread(target=_spin, args=(executor,), name=node.get_name(), daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def _spin(executor: Executor) -> None:
    try:
        executor.spin()
    except Exception:  # the executor is shut down under us at the end
        if rclpy.ok():
            raise


def stop_spinning(executors: list[tuple[Node, Executor]], threads: list[threading.Thread]) -> None:
    """Shut the executors down, destroy their nodes, shut rclpy down and join the spinning threads."""
    for node, executor in executors:
        executor.shutdown(timeout_sec=5.0)
        node.destroy_node()
    if rclpy.ok():
        rclpy.shutdown()
    for thread in threads:
        thread.join(timeout=5.0)


class GraphHost:
    """Creates the nodes, spins each on an executor and thread of its own, brings them up and down.

    One executor per node rather than one for all: rclpy's Python executors rebuild their wait set from
    every entity they hold on each callback, so one executor over five nodes (~100 services, timers and
    subscriptions) saturated a core at the IMU rate here; per node, the filter's executor scans ~25.
    """

    def __init__(self, params_file: str | Path | None, overrides: dict[str, object] | None = None,
                 domain_id: int | None = None, namespace: str = "", arguments: list[str] | None = None,
                 optional_nodes: tuple[str, ...] = ()):
        """``domain_id``: the DDS domain of the hosted graph (None: ROS_DOMAIN_ID, as any ROS 2 process);
        ``namespace``: every node's namespace; ``arguments``: a process's own command line (``--ros-args ...``
        as ``ros2 launch`` passes it) instead of params_file/overrides/namespace; ``optional_nodes``: names from
        names.OPTIONAL_NODES to host too (the manager's ``node_names`` must list them: ``with_optional``); those
        its ``node_names`` lists are hosted anyway."""
        from gps_denied_nav.nodes.eskf_node import EskfNode
        from gps_denied_nav.nodes.inference_node import InferenceNode
        from gps_denied_nav.nodes.lifecycle_manager import LifecycleManager
        from gps_denied_nav.nodes.matching_node import MatchingNode
        from gps_denied_nav.nodes.retrieval_node import RetrievalNode

        rclpy.init(args=arguments if arguments is not None else ros_args(params_file, overrides, namespace),
                   domain_id=domain_id)
        self.manager = LifecycleManager()
        # The optional nodes the manager is told to bring up are hosted here too (the launch file's
        # fc_bridge:=true / record:=true with use_composition:=true set only the manager's node_names).
        optional = [n for n in self.manager.params.node_names if n in names.OPTIONAL_NODES]
        optional += [n for n in optional_nodes if n not in optional]
        self.graph_nodes = [EskfNode(), InferenceNode(), RetrievalNode(), MatchingNode()]
        self.graph_nodes += [optional_node_class(name)() for name in optional]
        self._executors: list[tuple[Node, Executor]] = []
        self._threads: list[threading.Thread] = []
        for node in [*self.graph_nodes, self.manager]:
            self.add_node(node)

    def add_node(self, node: Node) -> None:
        """Host one more node (a player, a recorder); only before ``start``."""
        if self._threads:
            raise RuntimeError("add nodes before start()")
        self._executors.append((node, make_executor(node)))

    def start(self) -> GraphHost:
        self._threads = spin_in_threads(self._executors)
        return self

    def wait_until_active(self, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not all(t.is_alive() for t in self._threads):
                raise RuntimeError("an executor thread stopped (see the exception above)")
            if self.manager.failure:
                raise RuntimeError(f"graph start-up failed: {self.manager.failure}")
            if self.manager.active:
                return
            time.sleep(0.05)
        raise TimeoutError(f"graph not active after {timeout_s:.0f} s: {self.manager.node_states}")

    def close(self, timeout_s: float = 30.0) -> None:
        """Bring the nodes down in reverse order (deactivate, cleanup), then stop the executors."""
        if rclpy.ok() and self._threads and self.manager.may_be_up:
            self.manager.shutdown()
            deadline = time.monotonic() + timeout_s
            while self.manager.busy and time.monotonic() < deadline:
                time.sleep(0.05)
        stop_spinning(self._executors, self._threads)

    def __enter__(self) -> GraphHost:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
