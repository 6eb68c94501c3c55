"""Node parameters declared from one frozen dataclass per node.

The dataclass is the single place where a node's parameter names, types and defaults live; the node
declares them in ``__init__`` and reads them once in ``on_configure`` (never in callbacks). A test
checks that ``params/gps_denied_nav.yaml`` repeats exactly these names and defaults.

Each parameter is declared with a descriptor: its description is the comment beside its field (what
``ros2 param describe`` shows), and the ranges below bound the values ROS accepts. Values are read once at
configure, so a change on a configured node would be accepted and do nothing: ``reject_while_configured``
refuses it with the reason instead.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from functools import lru_cache
from typing import Any, TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node

T = TypeVar("T")
_FIELD_COMMENT = re.compile(r"^\s+(\w+):[^=#]+=[^#]*#\s*(.+?)\s*$")
# Bounds ROS enforces at declaration and on every set (name: (from, to)); the nodes' checks still apply.
RANGES = {
    "executor_threads": (1, 64), "blas_threads": (1, 64), "torch_threads": (1, 64), "torch_interop_threads": (1, 64),
    "onnx_threads": (1, 64), "opencv_threads": (1, 64), "faiss_threads": (1, 64),
    "sensor_qos_depth": (1, 10_000), "imu_qos_depth": (1, 100_000),
    "gate_probability": (0.5, 0.999999), "publish_rate_hz": (1.0, 1000.0), "cv_rate_hz": (1.0, 1000.0),
    "history_s": (0.1, 60.0), "path_length": (1, 100_000), "path_period_s": (0.01, 3600.0),
    "top_k": (1, 1000), "candidates_to_match": (1, 100), "min_inliers": (4, 100_000), "max_features": (100, 100_000),
    "ratio_test": (0.1, 1.0), "ransac_threshold_px": (0.1, 100.0),
    "transition_timeout_s": (1.0, 3600.0), "service_wait_s": (0.0, 3600.0),
    "heartbeat_period_s": (0.0, 60.0), "heartbeat_timeout_s": (0.5, 600.0),
}


@lru_cache(maxsize=None)
def field_descriptions(params_cls: type) -> dict[str, str]:
    """The comment beside each field in the dataclass's source (its bases' too): one description per parameter."""
    found: dict[str, str] = {}
    for cls in reversed(params_cls.__mro__):
        if not dataclasses.is_dataclass(cls):
            continue
        try:
            lines = inspect.getsource(cls).splitlines()
        except (OSError, TypeError):  # no source (a frozen install): descriptions stay empty
            continue
        for line in lines:
            match = _FIELD_COMMENT.match(line)
            if match:
                found[match.group(1)] = match.group(2)
    return found


def descriptor(params_cls: type, field: dataclasses.Field, default, read_only: bool) -> ParameterDescriptor:
    d = ParameterDescriptor(name=field.name, description=field_descriptions(params_cls).get(field.name, ""),
                            read_only=read_only)
    bounds = RANGES.get(field.name)
    if bounds is not None and isinstance(default, bool):
        raise TypeError(f"{field.name}: a boolean parameter has no range")
    if bounds is not None and isinstance(default, int):
        d.integer_range = [IntegerRange(from_value=int(bounds[0]), to_value=int(bounds[1]), step=1)]
    elif bounds is not None and isinstance(default, float):
        d.floating_point_range = [FloatingPointRange(from_value=float(bounds[0]), to_value=float(bounds[1]), step=0.0)]
    return d


def declare_parameters(node: Node, params_cls: type, read_only: bool = False) -> None:
    """Declare every field of ``params_cls`` with its default and descriptor (``read_only``: never settable
    after start-up, for a node that reads its parameters in ``__init__``)."""
    for field in dataclasses.fields(params_cls):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        value = list(default) if isinstance(default, tuple) else default
        node.declare_parameter(field.name, value, descriptor(params_cls, field, default, read_only))


def read_parameters(node: Node, params_cls: type[T]) -> T:
    values: dict[str, Any] = {}
    for field in dataclasses.fields(params_cls):
        value = node.get_parameter(field.name).value
        values[field.name] = tuple(value) if isinstance(value, list) else value
    return params_cls(**values)


def reject_while_configured(node: Node, params_cls: type, is_configured) -> None:
    """Refuse ``ros2 param set`` of the node's own parameters while ``is_configured()``: they were read at
    configure, and a value accepted then would silently not apply."""
    own = {f.name for f in dataclasses.fields(params_cls)}

    def check(parameters) -> SetParametersResult:
        changed = sorted(p.name for p in parameters if p.name in own)
        if changed and is_configured():
            return SetParametersResult(successful=False, reason=(
                f"{', '.join(changed)}: read when the node is configured; deactivate and clean it up, set the "
                "value, then configure it again"))
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(check)


def params_block(document: dict, node_name: str) -> dict | None:
    """A node's ``ros__parameters`` in a parsed params file, whether keyed ``/**/node`` (any namespace, as our
    files are) or plain ``node``; None when the file has no block for it."""
    block = document.get(f"/**/{node_name}", document.get(node_name))
    return None if block is None else block["ros__parameters"]
