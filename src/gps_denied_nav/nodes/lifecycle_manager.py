"""Lifecycle manager: brings the graph's lifecycle nodes up in order and down in reverse.

Like nav2's lifecycle manager it is a plain node (something has to manage the managers) that drives
``/<node>/change_state`` services. It never blocks an executor: a 10 Hz timer advances a queue of
transitions, each with a timeout, so a node that is slow to load its model does not stall the others'
callbacks. A failed or timed-out transition is logged with the node and transition names and shows as
ERROR on /diagnostics; at start-up it stops the sequence. Shutdown asks each node it has touched for its
state (``<node>/get_state``) and sends only the transitions valid from there, so that after a failed
start-up the nodes already up still come down; a node that refuses is skipped, the others go on.
Once the graph is active a heartbeat asks every node for its state each ``heartbeat_period_s``: a node that
died (no answer within ``heartbeat_timeout_s``) or left the active state puts the graph in ERROR on
/diagnostics and ``~/is_active`` answers false (as nav2's lifecycle manager and bond do). Service names are
relative: a namespace moves the manager and the nodes it manages together.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from std_srvs.srv import Trigger

from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.params import declare_parameters, read_parameters

UP = ((Transition.TRANSITION_CONFIGURE, "configure"), (Transition.TRANSITION_ACTIVATE, "activate"))
DOWN = ((Transition.TRANSITION_DEACTIVATE, "deactivate"), (Transition.TRANSITION_CLEANUP, "cleanup"))
DOWN_FROM = {"active": DOWN, "inactive": DOWN[1:], "unconfigured": (), "finalized": ()}  # by primary state label
GET_STATE = (-1, "get_state")  # a queue entry that asks for the node's state instead of changing it
PROBE = (-2, "probe")  # get_state before the first transition, re-sent until the node answers
PROBE_RETRY_S = 5.0  # a request sent before DDS matched the node's service is lost: ask again this often


@dataclass(frozen=True)
class LifecycleManagerParams:
    node_names: tuple[str, ...] = names.MANAGED_NODES  # brought up in this order, down in reverse
    autostart: bool = True  # configure and activate all nodes at start-up
    transition_timeout_s: float = 60.0  # configure loads models and indexes: allow for a slow disk
    service_wait_s: float = 20.0  # how long to wait for a node's change_state service before asking anyway
    heartbeat_period_s: float = 1.0  # once active: each node's get_state this often (0: no heartbeat)
    heartbeat_timeout_s: float = 10.0  # no answer for this long: the node is declared dead (GIL-bound executors
                                       # of a loaded one-process graph answer late, never this late)


class LifecycleManager(Node):
    def __init__(self, **kwargs):
        super().__init__(names.LIFECYCLE_MANAGER, **kwargs)
        declare_parameters(self, LifecycleManagerParams, read_only=True)  # read here, once
        self.params = read_parameters(self, LifecycleManagerParams)
        self._change_state = {n: self.create_client(ChangeState, names.CHANGE_STATE.format(node=n))
                              for n in self.params.node_names}
        self._get_state = {n: self.create_client(GetState, names.GET_STATE.format(node=n))
                           for n in self.params.node_names}
        self._heartbeats: dict[str, tuple] = {}  # node -> (future, sent monotonic s)
        self._queue: list[tuple[str, int, str]] = []
        self._pending = None  # (node, label, future, deadline)
        self._probing_since: dict[str, float] = {}  # node -> when the first probe went out
        self._answered: set[str] = set()  # nodes whose lifecycle services have replied
        self._touched: set[str] = set()  # nodes sent a transition: the ones shutdown must bring down
        self._stopping = False  # in shutdown, a failure skips that node instead of ending the sequence
        self._queued_at = time.monotonic()
        self.node_states = {n: "unknown" for n in self.params.node_names}
        self.failure = ""
        self.active = False
        self._diag = self.create_publisher(DiagnosticArray, names.DIAGNOSTICS, 10)
        self.create_service(Trigger, "~/startup", self._on_startup)
        self.create_service(Trigger, "~/shutdown", self._on_shutdown)
        self.create_service(Trigger, "~/is_active", self._on_is_active)
        # Steady-clock timers: with use_sim_time a replay's /clock only starts once the graph is up.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(0.1, self._step, clock=steady)
        self.create_timer(1.0, self._publish_diagnostics, clock=steady)
        if self.params.heartbeat_period_s > 0:
            self.create_timer(self.params.heartbeat_period_s, self._heartbeat, clock=steady)
        if self.params.autostart:
            self.startup()

    def startup(self) -> None:
        self.failure, self._stopping = "", False
        self._enqueue([entry for n in self.params.node_names
                       for entry in ([] if n in self._answered else [(n, *PROBE)]) + [(n, t, label) for t, label in UP]])

    def shutdown(self) -> None:
        """Bring down, in reverse order, every node that was sent a transition, from the state it reports."""
        self._stopping, self.active = True, False
        self._enqueue([(n, *GET_STATE) for n in reversed(self.params.node_names)
                       if n in self._touched and self.node_states[n] != "not responding"])  # dead: not asked again

    @property
    def busy(self) -> bool:
        return bool(self._queue) or self._pending is not None

    @property
    def may_be_up(self) -> bool:
        """Whether some node may be configured or active (so that shutdown has something to do)."""
        return any(self.node_states[n] != "unconfigured" for n in self._touched)

    def _enqueue(self, transitions: list[tuple[str, int, str]]) -> None:
        self._queue = transitions
        self._queued_at = time.monotonic()

    def _on_startup(self, _request, response):
        self.startup()
        response.success, response.message = True, "bringing up " + ", ".join(self.params.node_names)
        return response

    def _on_is_active(self, _request, response):
        response.success = self.active
        response.message = self.failure or ("all nodes active" if self.active else "not active: " + ", ".join(
            f"{n} {s}" for n, s in self.node_states.items()))
        return response

    def _heartbeat(self) -> None:
        """While active: every node answers get_state and is still active, or the graph is in ERROR."""
        if not self.active or self.busy:
            self._heartbeats.clear()
            return
        now = time.monotonic()
        for node in self.params.node_names:
            if node not in self._heartbeats:
                self._heartbeats[node] = (self._get_state[node].call_async(GetState.Request()), now)
                continue
            future, sent_s = self._heartbeats[node]
            if future.done():
                del self._heartbeats[node]
                result = future.result()
                state = result.current_state.label if result is not None else "no answer"
                if state != "active":
                    self._lost(node, f"heartbeat: it is '{state}'", state)
            elif now - sent_s > self.params.heartbeat_timeout_s:
                self._lost(node, f"heartbeat: no answer to get_state for {now - sent_s:.0f} s (the node died?)",
                           "not responding")

    def _lost(self, node: str, why: str, state: str) -> None:
        self.failure = f"{node}: {why}"
        self.node_states[node], self.active = state, False
        self._heartbeats.clear()
        self.get_logger().error(self.failure)

    def _on_shutdown(self, _request, response):
        self.shutdown()
        response.success, response.message = True, "bringing down in reverse order"
        return response

    def _fail(self, node: str, label: str, why: str) -> None:
        what = "get_state" if label == GET_STATE[1] else f"transition '{label}'"
        failure = f"{node}: {what} failed: {why}"
        self.node_states[node] = "unknown" if label == GET_STATE[1] else f"failed to {label}"
        self._pending = None
        self.active = False
        if self._stopping:
            # Keep every failure of the shutdown on /diagnostics, and still bring the other nodes down.
            self.failure = f"{self.failure}; {failure}" if self.failure else failure
            self.get_logger().error(failure + f"; leaving {node} as it is and going on with the other nodes")
            self._queue = [entry for entry in self._queue if entry[0] != node or entry[2] == GET_STATE[1]]
        else:
            self.failure = failure
            self.get_logger().error(failure + "; stopping the start-up sequence")
            self._queue.clear()

    def _on_state(self, node: str, state: str) -> None:
        """get_state answered: queue the transitions that bring the node down from ``state``."""
        if state not in DOWN_FROM:  # a transition state: the node is still busy with an earlier request
            self._fail(node, GET_STATE[1], f"it is in '{state}', not a primary state")
            self.node_states[node] = state
            return
        self.node_states[node] = state
        self.get_logger().info(f"{node}: {state}")
        self._queue[:0] = [(node, t, label) for t, label in DOWN_FROM[state]]

    def _step(self) -> None:
        now = time.monotonic()
        if self._pending is not None:
            node, label, future, deadline = self._pending
            if future.done():
                self._pending = None
                result = future.result()
                self._queued_at = now
                if label == PROBE[1] and result is not None:
                    self._answered.add(node)  # its services are reachable: the transitions will arrive
                    return
                if label == GET_STATE[1]:
                    if result is None:
                        self._fail(node, label, "no answer")
                    else:
                        self._answered.add(node)
                        self._on_state(node, result.current_state.label)
                    return
                if result is None or not result.success:
                    self._fail(node, label, "the node refused it (see that node's log)")
                    return
                self.node_states[node] = {"configure": "inactive", "activate": "active",
                                          "deactivate": "inactive", "cleanup": "unconfigured"}[label]
                self._answered.add(node)
                self.get_logger().info(f"{node}: {label} ok")
                if not self._queue:
                    self.active = all(s == "active" for s in self.node_states.values())
            elif now > deadline and label == PROBE[1] and \
                    now - self._probing_since[node] < self.params.transition_timeout_s:
                # On a loaded machine a node's process can take longer to come up than service_wait_s: a
                # request sent before its service is matched is dropped by DDS, not queued. get_state is
                # harmless to repeat (a transition is not), so the probe is what gets re-sent.
                self._pending = None
                self._queue.insert(0, (node, *PROBE))
            elif now > deadline:
                self._fail(node, label, f"no answer within {self.params.transition_timeout_s:.0f} s")
            return
        if not self._queue:
            return
        node, transition_id, label = self._queue[0]
        client = self._get_state[node] if label in (GET_STATE[1], PROBE[1]) else self._change_state[node]
        # Once a node has answered, its service is known to be there: the ROS graph cache that
        # service_is_ready() reads was seen to report a node missing for tens of seconds in between.
        if node not in self._answered and not client.service_is_ready():
            if now - self._queued_at <= self.params.service_wait_s:
                return
            # That cache can lag behind DDS matching: ask anyway and let the transition timeout decide,
            # rather than declare a node missing that may only be slow to be seen.
            self.get_logger().warning(f"{client.service_name} not seen after {self.params.service_wait_s:.0f} s; "
                                      f"requesting '{label}' anyway")
        self._queue.pop(0)
        timeout_s = self.params.transition_timeout_s
        if label == PROBE[1]:
            request, timeout_s = GetState.Request(), PROBE_RETRY_S
            self._probing_since.setdefault(node, now)
        elif label == GET_STATE[1]:
            request = GetState.Request()
        else:
            request = ChangeState.Request()
            request.transition.id = transition_id
            self._touched.add(node)
        self._pending = (node, label, client.call_async(request), now + timeout_s)

    def _publish_diagnostics(self) -> None:
        status = DiagnosticStatus(name="gps_denied_nav: lifecycle_manager", hardware_id=self.get_fully_qualified_name())
        status.level = DiagnosticStatus.ERROR if self.failure else DiagnosticStatus.OK
        status.message = self.failure or ("all nodes active" if self.active else "transitioning")
        status.values = [KeyValue(key=n, value=s) for n, s in self.node_states.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag.publish(msg)


def main(args=None) -> None:
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args)
    node = LifecycleManager()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
