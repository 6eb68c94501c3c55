"""A one-slot background worker for heavy per-frame work (network forward pass, feature matching).

Subscription callbacks must return quickly, or they stall the executor for every other callback.
They hand their frame to this worker instead; if a newer frame arrives before the worker gets to the
previous one, the older frame is dropped (``on_skip`` gets it, to count and report it): a navigation fix
from a stale frame is worth less than keeping up with the camera.
"""
from __future__ import annotations

import threading
from typing import Any, Callable


class LatestWorker:
    def __init__(self, name: str, process: Callable[[Any], None], on_skip: Callable[[Any], None],
                 on_error: Callable[[Any, Exception], None]):
        self._process = process
        self._on_skip = on_skip
        self._on_error = on_error
        self._cv = threading.Condition()
        self._item: Any = None
        self._busy = False
        self._running = True
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> None:
        with self._cv:
            if self._item is not None:
                self._on_skip(self._item)
            self._item = item
            self._cv.notify()

    @property
    def idle(self) -> bool:
        with self._cv:
            return self._item is None and not self._busy

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._running and self._item is None:
                    self._cv.wait()
                if not self._running:
                    return
                item, self._item = self._item, None
                self._busy = True
            try:
                self._process(item)
            except Exception as exc:  # one bad frame must not kill the worker
                self._on_error(item, exc)
            finally:
                with self._cv:
                    self._busy = False

    def stop(self, timeout_s: float = 10.0) -> None:
        with self._cv:
            self._running = False
            self._item = None
            self._cv.notify()
        self._thread.join(timeout=timeout_s)
