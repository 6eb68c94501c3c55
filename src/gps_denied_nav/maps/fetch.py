"""Fetching tiles politely and resumably: a local cache, a token-bucket rate limit, retries with back-off.

Tile servers are shared, often free, and ban clients that hammer them, so every request (retries included)
takes a token from one bucket shared by the worker threads, carries the user's User-Agent, and waits out
``Retry-After``. The cache (``CACHE/z/x/y.png|jpg|webp``) makes an interrupted fetch resumable: a tile is
written atomically (tmp + os.replace) only once it decodes, so a re-run requests only the tiles still
missing, and a cached file that no longer decodes is deleted and fetched again. A 404 (or 204) means "no
tile here": it is recorded as ``z/x/y.404`` and not asked again (delete those files to ask again).
"""
from __future__ import annotations

import http.client
import io
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable

from PIL import Image

FORMAT_EXT = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}


@dataclass(frozen=True)
class FetchConfig:
    user_agent: str  # sent with every request: tile usage policies ask for one that names the application
    rate_per_s: float = 10.0  # requests a second, all workers and retries together
    workers: int = 4  # concurrent connections (most tile policies ask for a few at most)
    timeout_s: float = 20.0  # per request, connect and read
    max_attempts: int = 5  # per tile, the first try included
    backoff_s: float = 1.0  # first retry waits up to this, doubling each attempt (full jitter)
    max_backoff_s: float = 60.0
    max_retry_after_s: float = 300.0  # a server asking for a longer pause fails the tile instead
    abort_after_failed_tiles: int = 10  # that many tiles failing in a row, none fetched between: the server is down


class TileFetchError(RuntimeError):
    """The server failed for good: names the URL and the last HTTP status or error."""


@dataclass(frozen=True)
class TileProblem:
    tile: tuple[int, int, int]  # (z, x, y)
    url: str
    reason: str  # "HTTP 404", "HTTP 503 after 5 attempts", "not a decodable image ...", ...


@dataclass
class FetchReport:
    fetched: int = 0  # downloaded in this run
    cached: int = 0  # already in the cache and decodable
    requests: int = 0  # HTTP requests sent, retries included
    missing: list[TileProblem] = field(default_factory=list)  # the server has no tile there (404/204)
    failed: list[TileProblem] = field(default_factory=list)  # gave up after retries, or a permanent HTTP error


class TokenBucket:
    """At most ``rate_per_s`` takes a second on average, bursts of at most ``burst`` (thread-safe, FIFO-ish:
    a take reserves its slot under the lock and sleeps outside it)."""

    def __init__(self, rate_per_s: float, burst: float = 1.0):
        if not rate_per_s > 0:
            raise ValueError(f"rate {rate_per_s}/s: want > 0")
        self.rate_per_s, self.burst = float(rate_per_s), float(burst)
        self._tokens, self._t = self.burst, time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._t) * self.rate_per_s) - 1.0
            self._t = now
            wait_s = -self._tokens / self.rate_per_s if self._tokens < 0 else 0.0
        if wait_s > 0:
            time.sleep(wait_s)


def decode_tile(data: bytes) -> Image.Image:
    """The decoded tile (pixels loaded); ValueError if the bytes are not a whole PNG/JPEG/WebP image."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:  # PIL raises many types for truncated or foreign data
        raise ValueError(f"not a decodable image ({type(exc).__name__}: {exc})") from exc
    if image.format not in FORMAT_EXT:
        raise ValueError(f"not a PNG, JPEG or WebP tile (format {image.format})")
    return image


class TileCache:
    """``root/z/x/y.ext`` tiles, ``root/z/x/y.404`` "no tile here" markers, ``root/cache.json`` the source."""

    def __init__(self, root, source: str):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        record = self.root / "cache.json"
        if record.exists():
            held = json.loads(record.read_text()).get("source")
            if held != source:
                # Tiles of two servers (or zoom schemes) mixed in one mosaic would be silently wrong.
                raise ValueError(f"cache {self.root} holds tiles of {held!r}, not {source!r}: use another --cache")
        else:
            record.write_text(json.dumps({"source": source}) + "\n")

    def _stem(self, tile) -> Path:
        return self.root / str(tile.z) / str(tile.x) / str(tile.y)

    def path(self, tile) -> Path | None:
        stem = self._stem(tile)
        return next((p for p in (stem.with_suffix("." + e) for e in FORMAT_EXT.values()) if p.exists()), None)

    def marked_missing(self, tile) -> bool:
        return self._stem(tile).with_suffix(".404").exists()

    def read(self, tile) -> Image.Image | None:
        """The cached tile, decoded; None when absent. A file that does not decode is deleted (None)."""
        path = self.path(tile)
        if path is None:
            return None
        try:
            return decode_tile(path.read_bytes())
        except ValueError:
            path.unlink(missing_ok=True)
            return None

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic: a crash leaves the old state or the whole tile, never half a file

    def store(self, tile, data: bytes, image_format: str) -> None:
        self._write(self._stem(tile).with_suffix("." + FORMAT_EXT[image_format]), data)

    def mark_missing(self, tile) -> None:
        self._write(self._stem(tile).with_suffix(".404"), b"")


def _retry_after_s(headers) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _fetch_one(tile, url: str, cache: TileCache, config: FetchConfig, bucket: TokenBucket,
               stop: threading.Event, counter: list) -> tuple[str, TileProblem | None]:
    """("fetched" | "missing" | "failed", problem). Retries timeouts, connection errors, 429, 5xx and
    undecodable bodies; other HTTP errors (400, 401, 403, ...) will not change by asking again."""
    z_x_y = (tile.z, tile.x, tile.y)
    reason = ""
    for attempt in range(1, config.max_attempts + 1):
        if stop.is_set():
            return "failed", TileProblem(z_x_y, url, "interrupted")
        bucket.take()
        counter.append(1)  # list.append is atomic under the GIL: a lock-free request count
        wait_s = None
        try:
            request = urllib.request.Request(url, headers={"User-Agent": config.user_agent, "Accept": "image/*"})
            with urllib.request.urlopen(request, timeout=config.timeout_s) as response:
                status, data = response.status, response.read()
            if status == 204:
                cache.mark_missing(tile)
                return "missing", TileProblem(z_x_y, url, "HTTP 204")
            image = decode_tile(data)
            cache.store(tile, data, image.format)
            return "fetched", None
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                cache.mark_missing(tile)
                return "missing", TileProblem(z_x_y, url, "HTTP 404")
            reason = f"HTTP {exc.code} {exc.reason}"
            if exc.code != 429 and exc.code < 500:
                return "failed", TileProblem(z_x_y, url, reason)
            wait_s = _retry_after_s(exc.headers)
            if wait_s is not None and wait_s > config.max_retry_after_s:
                return "failed", TileProblem(z_x_y, url, f"{reason}, Retry-After {wait_s:.0f} s")
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            reason = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        except ValueError as exc:  # decode_tile: a truncated or non-image body
            reason = str(exc)
        if attempt < config.max_attempts:
            if wait_s is None:  # exponential back-off with full jitter, so workers do not retry in lock-step
                wait_s = random.uniform(0.0, min(config.max_backoff_s, config.backoff_s * 2 ** (attempt - 1)))
            stop.wait(wait_s)
    return "failed", TileProblem(z_x_y, url, f"{reason} (after {config.max_attempts} attempts)")


def fetch_tiles(tiles: list, url_for: Callable, cache: TileCache, config: FetchConfig,
                progress: Callable[[int, int], None] | None = None) -> FetchReport:
    """Bring every tile into ``cache`` (skipping decodable cached ones and recorded 404s).

    progress(done, total) after each tile, on the calling thread; an exception it raises (or Ctrl-C) stops the
    fetch: tiles in flight finish or are dropped, queued ones are cancelled, what is cached stays cached.
    Raises TileFetchError when ``abort_after_failed_tiles`` tiles in a row failed (the server is down)."""
    report, todo = FetchReport(), []
    for tile in tiles:
        if cache.marked_missing(tile):
            report.missing.append(TileProblem((tile.z, tile.x, tile.y), url_for(tile), "HTTP 404 (cached)"))
        elif cache.read(tile) is not None:
            report.cached += 1
        else:
            todo.append(tile)
    report_progress = progress or (lambda done, total: None)
    done = len(tiles) - len(todo)
    report_progress(done, len(tiles))
    bucket, stop, counter = TokenBucket(config.rate_per_s), threading.Event(), []
    failed_in_a_row = 0
    pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="tile-fetch")
    try:
        futures = [pool.submit(_fetch_one, t, url_for(t), cache, config, bucket, stop, counter) for t in todo]
        for future in as_completed(futures):
            outcome, problem = future.result()
            if outcome == "fetched":
                report.fetched += 1
            else:
                (report.missing if outcome == "missing" else report.failed).append(problem)
            failed_in_a_row = failed_in_a_row + 1 if outcome == "failed" else 0
            if failed_in_a_row >= config.abort_after_failed_tiles:
                raise TileFetchError(f"{failed_in_a_row} tiles in a row failed, the server looks down; last: "
                                     f"{problem.url}: {problem.reason}")
            done += 1
            report_progress(done, len(tiles))
    finally:
        stop.set()  # in-flight retries stop waiting; queued tiles are never started
        pool.shutdown(wait=True, cancel_futures=True)
        report.requests = len(counter)
    return report
