"""Exceptions the nodes catch at configure time, in a module that imports nothing heavy.

A node that never runs a model (the filter) must still recognise these, and importing them from the
modules that raise them would pull torch and FAISS into every process of the graph.
"""


class RuntimeUnavailable(RuntimeError):
    """The requested inference runtime (or thread budget) cannot be had on this machine."""
