"""Node parameters declared from one frozen dataclass per node.

The dataclass is the single place where a node's parameter names, types and defaults live; the node
declares them in ``__init__`` and reads them once in ``on_configure`` (never in callbacks). A test
checks that ``params/gps_denied_nav.yaml`` repeats exactly these names and defaults.
"""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from rclpy.node import Node

T = TypeVar("T")


def declare_parameters(node: Node, params_cls: type) -> None:
    for field in dataclasses.fields(params_cls):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        node.declare_parameter(field.name, list(default) if isinstance(default, tuple) else default)


def read_parameters(node: Node, params_cls: type[T]) -> T:
    values: dict[str, Any] = {}
    for field in dataclasses.fields(params_cls):
        value = node.get_parameter(field.name).value
        values[field.name] = tuple(value) if isinstance(value, list) else value
    return params_cls(**values)


def params_block(document: dict, node_name: str) -> dict | None:
    """A node's ``ros__parameters`` in a parsed params file, whether keyed ``/**/node`` (any namespace, as our
    files are) or plain ``node``; None when the file has no block for it."""
    block = document.get(f"/**/{node_name}", document.get(node_name))
    return None if block is None else block["ros__parameters"]
