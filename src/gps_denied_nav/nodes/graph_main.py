"""``gps_denied_nav_graph``: the whole graph in one process, as an executable ``ros2 launch`` can start.

Python's answer to a component container (``use_composition:=true`` in the launch file): the four lifecycle
nodes and the lifecycle manager in one process, each node on an executor thread of its own (``GraphHost``).
Its command line is the usual ``--ros-args ...`` (params files, ``-p``, ``-r __ns:=``, remaps, log level),
applied to every node it hosts. Ctrl-C (SIGINT, what ``ros2 launch`` sends first) or SIGTERM brings the
nodes down in reverse order through the manager before the process exits.
"""
from __future__ import annotations

import signal
import sys
import time

import rclpy
from rclpy.signals import uninstall_signal_handlers

from gps_denied_nav.replay.graph import GraphHost


def main(args: list[str] | None = None) -> None:
    # The whole command line goes to rclpy.init: it keeps the --ros-args part and ignores the rest.
    host = GraphHost(None, arguments=list(args) if args is not None else sys.argv[1:])
    # rclpy's own handlers shut the context down on SIGINT, and then the executors stop before the manager
    # could deactivate and clean up the nodes. Python's handler raises KeyboardInterrupt here instead, with
    # the executors still spinning; SIGTERM (docker stop, launch's escalation) takes the same path.
    uninstall_signal_handlers()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        host.start()
        while rclpy.ok():  # False once the context is shut down elsewhere (ExternalShutdownException's case)
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C must not cut the ordered shutdown short; a SIGTERM now is an escalation: obey it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        host.close(timeout_s=10.0)


if __name__ == "__main__":
    main()
