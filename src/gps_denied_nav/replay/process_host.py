"""Process-per-node host: every node of the graph in its own Python process, as ``ros2 launch`` starts them.

The one-process ``GraphHost`` shares one GIL between the filter's 200-400 Hz IMU callbacks, two workers
and five executors; on the aircraft each node is a process of its own. This host starts the same node
executables (``python -m gps_denied_nav.nodes.<node>`` with the same ``--ros-args``) on the chosen DDS
domain, keeps the replay's own nodes (player, recorder) in this process, and reads each child's peak
resident memory before stopping it, so realtime figures and memory are measured as deployed.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.qos import QoSProfile

from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.node_main import make_executor
from gps_denied_nav.replay.graph import ros_args, spin_in_threads, stop_spinning


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM of a live process (Linux), MB; None when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


class ProcessGraphHost:
    """The GraphHost interface (add_node, start, wait_until_active, close) over one process per node."""

    def __init__(self, params_file: str | Path | None, overrides: dict[str, object] | None = None,
                 domain_id: int | None = None, namespace: str = "", optional_nodes: tuple[str, ...] = ()):
        """``optional_nodes``: names from names.OPTIONAL_NODES started as processes too (the manager's
        ``node_names`` must list them: ``graph.with_optional``)."""
        unknown = set(optional_nodes) - set(names.OPTIONAL_NODES)
        if unknown:
            raise ValueError(f"unknown optional node(s) {sorted(unknown)}; the optional nodes are {names.OPTIONAL_NODES}")
        self._names = (*names.MANAGED_NODES, *optional_nodes, names.LIFECYCLE_MANAGER)
        self._args = ros_args(params_file, overrides, namespace)
        self._env = dict(os.environ)
        if domain_id is not None:
            self._env["ROS_DOMAIN_ID"] = str(domain_id)
        rclpy.init(args=self._args, domain_id=domain_id)
        self._local: list[Node] = []
        self._threads: list[threading.Thread] = []
        self._executors = []
        self.processes: dict[str, subprocess.Popen] = {}
        self.peak_rss_mb: dict[str, float | None] = {}
        self._manager_status: DiagnosticStatus | None = None

    def add_node(self, node: Node) -> None:
        """Host a node in this process (the replay's player and recorder); only before ``start``."""
        if self._threads:
            raise RuntimeError("add nodes before start()")
        self._local.append(node)

    def start(self) -> ProcessGraphHost:
        watcher = Node("gdn_graph_watch")
        watcher.create_subscription(DiagnosticArray, names.DIAGNOSTICS, self._on_diagnostics, QoSProfile(depth=50))
        self._executors = [(node, make_executor(node)) for node in [*self._local, watcher]]
        self._threads = spin_in_threads(self._executors)
        for name in self._names:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", f"gps_denied_nav.nodes.{name}", *self._args], env=self._env,
                start_new_session=True)  # a Ctrl-C in the terminal reaches them through close(), in order
        return self

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith(names.LIFECYCLE_MANAGER):
                self._manager_status = status

    def wait_until_active(self, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}
            if dead:
                raise RuntimeError(f"graph start-up failed: node process(es) exited: {dead}")
            status = self._manager_status
            if status is not None and status.level == DiagnosticStatus.ERROR:
                raise RuntimeError(f"graph start-up failed: {status.message}")
            if status is not None and status.message == "all nodes active":
                return
            time.sleep(0.1)
        raise TimeoutError(f"graph not active after {timeout_s:.0f} s (manager: "
                           f"{None if self._manager_status is None else self._manager_status.message})")

    def close(self, timeout_s: float = 15.0) -> None:
        """Read each child's peak memory, then SIGINT them (nodes first, manager last) as ros2 launch does."""
        for name, proc in self.processes.items():
            self.peak_rss_mb[name] = peak_rss_mb(proc.pid) if proc.poll() is None else None
        for name in self._names:
            proc = self.processes.get(name)
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        stop_spinning(self._executors, self._threads)

    def __enter__(self) -> ProcessGraphHost:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
