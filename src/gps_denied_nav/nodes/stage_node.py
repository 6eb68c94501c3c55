"""Lifecycle plumbing shared by the graph's four stage nodes (inference, retrieval, matching, ESKF).

As in ros2/demos' lifecycle talker: parameters are declared in ``__init__``; ``on_configure`` reads them
once into a frozen dataclass and calls the node's ``configure_stage`` (heavy loading, publishers,
subscriptions); a failure there is logged with what and where and fails the transition;
``on_activate``/``on_deactivate`` gate the callbacks (rclpy activates the lifecycle publishers in the
base class); ``on_cleanup`` and ``on_shutdown`` release everything ``configure_stage`` created.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo

from gps_denied_nav.core.errors import RuntimeUnavailable
from gps_denied_nav.core.input_checks import StampGuard
from gps_denied_nav.core.stage_timing import FrameTimer, RollingTimings
from gps_denied_nav.core.threads import ThreadBudget, apply_thread_budget, describe
from gps_denied_nav.nodes import names
from gps_denied_nav.nodes.attitude_buffer import PoseBuffer
from gps_denied_nav.nodes.conversions import camera_info_to_intrinsics, quat_msg_to_wxyz, stamp_to_s
from gps_denied_nav.nodes.diagnostics import NodeStatus
from gps_denied_nav.nodes.params import declare_parameters, read_parameters, reject_while_configured
from gps_denied_nav.nodes.qos import (QOS_CHECK_S, RELIABILITY_MODES, AdaptiveReliability, internal_qos, latched_qos,
                                     sensor_qos)
from gps_denied_nav_interfaces.msg import StageTiming

# What a bad file or parameter raises while configuring (CorpusError and CheckpointError are ValueErrors);
# anything else is a bug and propagates. Nothing here may import torch or FAISS: the filter's process
# would carry them for nothing.
CONFIGURE_ERRORS = (RuntimeUnavailable, FileNotFoundError, ValueError, OSError)
ODOMETRY_MAX_STEP_S = 3.0  # the filter publishes at 50 Hz: a longer step forward is a fault (or a new clock)


@dataclass(frozen=True)
class StageParams:
    """Parameters every stage node has (each node's dataclass extends it): its share of the thread budget."""

    executor_threads: int = 1  # callbacks only convert and hand over; heavy work runs on the node's worker
    blas_threads: int = 1  # numpy/scipy BLAS pools (process-wide); the filter's 16x16 products gain nothing from more
    sensor_qos_reliability: str = "auto"  # sensor inputs: auto (follow the publishers), best_effort or reliable
    sensor_qos_depth: int = 5  # camera, camera_info, baro, GNSS queues: the newest samples, not a backlog


class StageNode(LifecycleNode):
    params_cls: type  # the node's frozen parameter dataclass, a StageParams

    def __init__(self, node_name: str, **kwargs):
        super().__init__(node_name, **kwargs)
        declare_parameters(self, self.params_cls)
        self.active = False
        self._configured = False
        reject_while_configured(self, self.params_cls, lambda: self._configured)
        self._subs: list = []
        self._pubs: list = []

    # --- to implement ----------------------------------------------------------------------------
    def configure_stage(self) -> None:
        """Load models/indexes and create publishers and subscriptions; raise CONFIGURE_ERRORS on bad input."""
        raise NotImplementedError

    def release_stage(self) -> None:
        """Release what configure_stage made besides publishers and subscriptions (workers, models)."""

    def thread_budget(self) -> ThreadBudget:
        """The threads of the libraries this node uses, from its parameters (nodes add theirs)."""
        return ThreadBudget(blas=self.params.blas_threads)

    # --- lifecycle -------------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        self.params = read_parameters(self, self.params_cls)
        self.status = NodeStatus(self)
        self.intrinsics = None
        try:
            self._apply_thread_budget()
            self.configure_stage()
        except CONFIGURE_ERRORS as exc:
            self.get_logger().error(f"configure failed: {exc}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._configured = True
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self.active = True
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.active = False
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.active = False
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _apply_thread_budget(self) -> None:
        in_force, warnings = apply_thread_budget(self.thread_budget(), self.get_name())
        for warning in warnings:
            self.get_logger().warning(warning)
        self.status.set("threads", describe(in_force))

    def _release(self) -> None:
        self.release_stage()
        if hasattr(self, "_adaptive"):
            self.destroy_timer(self._qos_timer)
            del self._adaptive, self._qos_timer
        for sub in self._subs:
            self.destroy_subscription(sub)
        for pub in self._pubs:
            self.destroy_lifecycle_publisher(pub)
        self._subs, self._pubs = [], []
        if hasattr(self, "status"):
            self.status.destroy()
            del self.status
        self._configured = False

    # --- helpers for configure_stage -------------------------------------------------------------
    def subscribe(self, msg_type, topic: str, callback, depth: int = 10, qos=None):
        """A subscription whose callback cannot take the node down: an exception escaping a callback
        would stop rclpy's executor, so it is counted, logged with its traceback and the message dropped.
        ``topic`` is a names.* constant, created under its relative name (namespaces); QoS reliable unless given."""
        def guarded(msg) -> None:
            try:
                callback(msg)
            except Exception as exc:  # noqa: BLE001 - one bad message must not stop the graph
                self.status.drop("callback_error", f"{topic}: {type(exc).__name__}: {exc}")
                self.get_logger().error(traceback.format_exc(), throttle_duration_sec=10.0)

        self._subs.append(self.create_subscription(msg_type, names.relative(topic), guarded,
                                                   qos or internal_qos(depth)))
        return self._subs[-1]

    def subscribe_sensor(self, msg_type, topic: str, callback, depth: int | None = None) -> None:
        """A sensor input (camera, IMU, baro, GNSS), keep-last ``depth``, with the reliability of
        ``sensor_qos_reliability``; ``auto`` follows the publishers (nodes/qos.py, AdaptiveReliability)."""
        depth = depth or self.params.sensor_qos_depth
        mode = self.params.sensor_qos_reliability
        if mode not in RELIABILITY_MODES:
            raise ValueError(f"sensor_qos_reliability must be one of {RELIABILITY_MODES}, got {mode!r}")
        if mode != "auto":
            self.subscribe(msg_type, topic, callback, qos=sensor_qos(depth, mode))
            self.status.set(f"qos {names.relative(topic)}", mode)
            return
        if not hasattr(self, "_adaptive"):
            self._adaptive = AdaptiveReliability(self, self._make_sensor_subscription, self._drop_subscription)
            self._qos_timer = self.create_timer(QOS_CHECK_S, self._check_qos,
                                                clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._adaptive.add(msg_type, topic, callback, depth)

    def _check_qos(self) -> None:
        try:
            self._adaptive.check()
        except Exception as exc:  # noqa: BLE001 - an exception escaping a timer stops the executor
            self.status.drop("qos_check_error", f"{type(exc).__name__}: {exc}")

    def _make_sensor_subscription(self, msg_type, topic: str, callback, depth: int, reliability: str):
        self.status.set(f"qos {names.relative(topic)}", reliability)
        return self.subscribe(msg_type, topic, callback, qos=sensor_qos(depth, reliability))

    def _drop_subscription(self, sub) -> None:
        self._subs.remove(sub)
        self.destroy_subscription(sub)

    def publisher(self, msg_type, topic: str, depth: int = 10, qos=None, latched: bool = False):
        qos = latched_qos() if latched else qos or internal_qos(depth)
        self._pubs.append(self.create_lifecycle_publisher(msg_type, names.relative(topic), qos))
        return self._pubs[-1]

    def enable_timing(self, stage: str) -> None:
        """Publish a StageTiming record for every frame this stage handles (``finish_frame``), and the
        rolling p50/p95 of its steps on /diagnostics. Reliable and deep: a lockstep replay waits on them."""
        self._stage = stage
        self._timings = RollingTimings()
        self._timing_pub = self.publisher(StageTiming, names.STAGE_TIMING, depth=100)
        self.status.add_source(self._timings.summary)

    def finish_frame(self, header, timer: FrameTimer, outcome: str = "forwarded", forwarded: bool = True) -> None:
        """The frame stamped ``header.stamp`` is done here: forwarded to the next stage, or ended for ``outcome``."""
        if not forwarded:
            timer.done()
        self._timings.add(timer.steps)
        self._timing_pub.publish(StageTiming(
            header=header, stage=self._stage, outcome=outcome, forwarded=forwarded,
            received_wall_s=timer.received_wall_s, done_wall_s=timer.done_wall_s,
            step_names=list(timer.steps), step_ms=[float(v) for v in timer.steps.values()]))

    def track_attitude(self) -> None:
        """Keep the filter's recent attitudes in ``self.poses`` (looked up at camera exposure stamps)."""
        self.poses = PoseBuffer()
        self._odometry_stamps = StampGuard(max_step_s=ODOMETRY_MAX_STEP_S)
        self.subscribe(Odometry, names.ODOMETRY, self._on_odometry, depth=50)

    def _on_odometry(self, msg: Odometry) -> None:
        """Attitudes into ``self.poses``, checked: one odometry stamped hours ahead used to become the newest
        sample, and every later one was then ignored as out of order (no attitude, no fix, for good)."""
        q = quat_msg_to_wxyz(msg.pose.pose.orientation)
        if not np.all(np.isfinite(q)) or abs(np.linalg.norm(q) - 1.0) >= 1e-3:
            self.status.drop("odometry_not_unit_quaternion", f"orientation {q}")
            return
        stamp_s = stamp_to_s(msg.header.stamp)
        last_s, verdict = self._odometry_stamps.last_s, self._odometry_stamps.check(stamp_s)
        if verdict == "reanchored":
            self.get_logger().warning(f"odometry clock jumped from {last_s:.3f} s to {stamp_s:.3f} s: attitudes reset")
            self.poses.clear()
        elif verdict != "ok":
            self.status.drop(f"odometry_{verdict}", f"{stamp_s:.6f} s after {last_s:.6f} s")
            return
        self.poses.add(stamp_s, q)

    def on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self.intrinsics = camera_info_to_intrinsics(msg)
        except ValueError as exc:
            self.status.drop("bad_camera_info", exc)


def require_corpus_dir(corpus_dir: str) -> str:
    if not corpus_dir:
        raise ValueError("parameter corpus_dir is empty: point it at a corpus made by `gdn provision`")
    return corpus_dir
