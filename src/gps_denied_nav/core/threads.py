"""Thread budget: how many threads each compute library of a process may use, set on purpose.

Left alone, torch (intra- and inter-op pools), OpenCV, FAISS's OpenMP and every BLAS each size their
pool to all the cores they see. Composed in one process on a 2-core machine they oversubscribe it
several times over, and OpenMP workers spin at every barrier waiting for a thread the scheduler has
parked behind another pool: with another process busy on one core, the descriptor's forward pass in the
graph went from 474 ms with library defaults to 209 ms with one thread per library. Each node therefore states, in its parameters,
the threads of the libraries it uses; the values are process-wide (these libraries keep one pool per
process), so nodes composed in one process should agree, and a disagreement is reported, never hidden.

Only libraries already imported are touched: a node that never needs torch does not load it here.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

from gps_denied_nav.core.errors import RuntimeUnavailable


@dataclass(frozen=True)
class ThreadBudget:
    """Threads per library; 0 leaves a library as it is (the node does not use it)."""

    torch_intra_op: int = 0  # torch.set_num_threads: the OpenMP pool of one operator
    torch_inter_op: int = 0  # torch.set_num_interop_threads: settable once per process, before any work
    opencv: int = 0  # cv2.setNumThreads: warps, resizes, SIFT, FLANN (1 = run on the calling thread)
    faiss: int = 0  # faiss.omp_set_num_threads: FAISS's own OpenMP runtime
    blas: int = 0  # OpenBLAS/MKL pools of numpy and scipy, through threadpoolctl

    def __post_init__(self):
        for name, value in vars(self).items():
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"thread budget {name} must be an integer >= 0, got {value!r}")


_lock = threading.Lock()
_applied: dict[str, int] = {}  # library -> threads set by an earlier node of this process


def apply_thread_budget(budget: ThreadBudget, owner: str = "") -> tuple[dict[str, int], list[str]]:
    """Set the libraries' thread counts. Returns (the counts now in force per library, warnings).

    A warning names a library whose count another node of this process set differently (the later
    value wins: they share one pool) or torch's inter-op pool, which cannot change once used.
    """
    wanted = {k: v for k, v in vars(budget).items() if v > 0}
    in_force: dict[str, int] = {}
    warnings: list[str] = []
    with _lock:
        for library, threads in wanted.items():
            before = _applied.get(library)
            if before is not None and before != threads:
                warnings.append(f"{library} threads: {owner or 'this node'} asks {threads}, another node of this "
                                f"process set {before}; one pool per process, {threads} is used")
            in_force[library] = _set(library, threads, warnings)
            _applied[library] = in_force[library]
    return in_force, warnings


# library -> (module, setter, getter) for the pools that can be set at any time
_POOLS = {"torch_intra_op": ("torch", "set_num_threads", "get_num_threads"),
          "opencv": ("cv2", "setNumThreads", "getNumThreads"),
          "faiss": ("faiss", "omp_set_num_threads", "omp_get_max_threads")}


def _set(library: str, threads: int, warnings: list[str]) -> int:
    if library in _POOLS:
        name, setter, getter = _POOLS[library]
        module = _module(name, library)
        getattr(module, setter)(threads)
        return int(getattr(module, getter)())
    if library == "torch_inter_op":
        torch = _module("torch", library)
        if torch.get_num_interop_threads() != threads:
            try:
                torch.set_num_interop_threads(threads)
            except RuntimeError:  # already used or set in this process: keep what is there
                warnings.append(f"torch inter-op threads stay {torch.get_num_interop_threads()} (asked {threads}): "
                                "torch allows setting them only before the first parallel work")
        return int(torch.get_num_interop_threads())
    if library == "blas":
        try:
            from threadpoolctl import threadpool_limits
        except ImportError as exc:
            raise RuntimeUnavailable("blas threads requested but threadpoolctl is not installed") from exc
        threadpool_limits(limits=threads, user_api="blas")  # every BLAS loaded so far (numpy's, scipy's)
        return threads
    raise ValueError(f"unknown library {library!r}")


def _module(name: str, library: str):
    """The library's module, imported only if the budget names it (the node uses it anyway)."""
    if name in sys.modules:
        return sys.modules[name]
    try:
        return __import__(name)
    except ImportError as exc:
        raise RuntimeUnavailable(f"{library} threads requested but {name} is not installed") from exc


def describe(in_force: dict[str, int]) -> str:
    """'torch_intra_op=1 opencv=1' for diagnostics and logs."""
    return " ".join(f"{k}={v}" for k, v in sorted(in_force.items())) or "library defaults"
