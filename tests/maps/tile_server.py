"""A local XYZ/WMTS tile server for the fetch tests (127.0.0.1, port 0), with faults on demand.

Serves ``/tiles/{z}/{x}/{y}.png`` and ``/wmts?...&TILEMATRIX=z{z}&TILEROW=..&TILECOL=..`` from a dict of
encoded tiles, ``/wmts/caps.xml`` from a string, and logs every request (path, User-Agent, time). Faults
are queued per tile path and used up one per request: "slow" (sleeps past the client's timeout, then
serves), "corrupt" (half a PNG), "503" (with Retry-After), "404" (for one request); ``always_404`` and
``fail_all`` are permanent.
"""
from __future__ import annotations

import io
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image


def png_tiles(rgba: np.ndarray, zoom: int, x_min: int, y_min: int, tile_px: int = 256) -> dict:
    """Cut uint8 [H, W, 4] (H, W multiples of tile_px; its north-west corner at tile x_min, y_min) into
    {(z, x, y): PNG bytes}. Tiles with no opaque pixel are left out (the server answers 404 there)."""
    tiles = {}
    for r in range(rgba.shape[0] // tile_px):
        for c in range(rgba.shape[1] // tile_px):
            tile = rgba[r * tile_px:(r + 1) * tile_px, c * tile_px:(c + 1) * tile_px]
            if tile[..., 3].any():
                buffer = io.BytesIO()
                Image.fromarray(tile, "RGBA").save(buffer, format="PNG")
                tiles[(zoom, x_min + c, y_min + r)] = buffer.getvalue()
    return tiles


class TileServer:
    def __init__(self, tiles: dict, capabilities: str = "", slow_s: float = 1.5, retry_after_s: str = "1"):
        self.tiles, self.capabilities = tiles, capabilities
        self.slow_s, self.retry_after_s = slow_s, retry_after_s
        self.faults: dict[str, list[str]] = {}
        self.always_404: set[tuple] = set()
        self.fail_all: int | None = None  # an HTTP status for every tile request
        self.log: list[tuple[str, str, float]] = []  # (path, user agent, monotonic time)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest's output clean
                pass

            def do_GET(self):
                server._serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def template(self) -> str:
        return self.base + "/tiles/{z}/{x}/{y}.png"

    def tile_path(self, z: int, x: int, y: int) -> str:
        return f"/tiles/{z}/{x}/{y}.png"

    def add_fault(self, key: tuple, *faults: str) -> None:
        self.faults.setdefault(self.tile_path(*key), []).extend(faults)

    def tile_requests(self) -> list[str]:
        return [path for path, _, _ in self.log if not path.endswith(".xml")]

    def __enter__(self) -> TileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _key(self, path: str) -> tuple | None:
        url = urllib.parse.urlsplit(path)
        if url.path.startswith("/tiles/"):
            z, x, y = url.path[len("/tiles/"):].rsplit(".", 1)[0].split("/")
            return int(z), int(x), int(y)
        query = {k.upper(): v for k, v in urllib.parse.parse_qsl(url.query)}
        if url.path == "/wmts" and query.get("REQUEST") == "GetTile":
            return int(query["TILEMATRIX"].lstrip("z")), int(query["TILECOL"]), int(query["TILEROW"])
        return None

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.log.append((handler.path, handler.headers.get("User-Agent", ""), time.monotonic()))
        if handler.path.endswith("caps.xml"):
            return self._send(handler, 200, self.capabilities.encode(), "application/xml")
        key = self._key(handler.path)
        if key is None:
            return self._send(handler, 400, b"bad request")
        with self._lock:
            queue = self.faults.get(self.tile_path(*key), [])
            fault = queue.pop(0) if queue else None
        if self.fail_all is not None:
            return self._send(handler, self.fail_all, b"down", headers={"Retry-After": "0"})
        if fault == "503":
            return self._send(handler, 503, b"busy", headers={"Retry-After": self.retry_after_s})
        if fault == "404" or key in self.always_404 or key not in self.tiles:
            return self._send(handler, 404, b"no tile")
        data = self.tiles[key]
        if fault == "slow":
            time.sleep(self.slow_s)
        if fault == "corrupt":
            data = data[:len(data) // 2]
        self._send(handler, 200, data, "image/png")

    @staticmethod
    def _send(handler, status: int, body: bytes, content_type: str = "text/plain", headers: dict | None = None):
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a "slow" tile): expected
            pass
