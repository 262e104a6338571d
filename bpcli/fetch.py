"""One HTTP(S) or file:// transfer into a part file, with every way a server can fail bounded.

A per-read timeout alone does not end a transfer from a server that sends one byte a second: every
read succeeds. So a transfer also has a deadline (for one file from one mirror, all attempts
together) and a minimum rate (bytes per second, averaged over `timeout` seconds). Both are enforced
by a watchdog thread that shuts the connection down, because a blocked read cannot look at the
clock: http.client reads a status line and headers line by line until they end, however slowly
they come.

Compute only: progress goes through a callback; a failed transfer is a `TransferError` (the caller
tries the next mirror), a part file that cannot be written is a `DataError` (the disk is the
problem, not the mirror).
"""

from __future__ import annotations

import collections
import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from bpcli import __version__
from bpcli.errors import DataError

# on_progress(file name, bytes on disk so far, total size or None when the server does not say).
ProgressCallback = Callable[[str, int, "int | None"], None]

DEFAULT_TIMEOUT = 30.0
# MNIST's largest file is 9.9 MB: ten minutes allow it at 17 kB/s, and a slower mirror's bytes are
# kept in the part file and resumed by the next run.
DEFAULT_DEADLINE = 600.0
# Bytes per second, averaged over the timeout: anything slower is a stalled or hostile server.
DEFAULT_MIN_RATE = 1000.0
CHUNK_SIZE = 64 * 1024
# No MNIST-format file is anywhere near this; a server streaming without end is cut off here.
MAX_BYTES = 256 * 1024 * 1024
# The rate is never judged over less than this, so that one late packet on a short --timeout is
# not taken for a slow server.
MIN_RATE_WINDOW = 1.0


@dataclass(frozen=True)
class Limits:
    """How long a transfer may take: `timeout` per connect or read, `deadline` for one file from one
    mirror, `min_rate` bytes per second over `timeout` seconds (0: no minimum)."""

    timeout: float = DEFAULT_TIMEOUT
    deadline: float = DEFAULT_DEADLINE
    min_rate: float = DEFAULT_MIN_RATE

    @property
    def window(self) -> float:
        return max(self.timeout, MIN_RATE_WINDOW)


class TransferError(Exception):
    """A mirror did not deliver the whole file; `progressed` says whether bytes arrived this time
    (worth resuming from the same mirror)."""

    def __init__(self, reason: str, progressed: bool = False) -> None:
        super().__init__(reason)
        self.progressed = progressed


@dataclass
class Fetched:
    resumed_from: int = 0


class Watchdog:
    """Cuts a transfer off when it passes its deadline or stays below the minimum rate.

    It holds a duplicate of each connection's socket: shutting a socket down ends the connection for
    every descriptor of it, which wakes the read blocked in the other thread, and the duplicate stays
    valid when urllib closes its own descriptor. The duplicates are closed on exit, so a shutdown can
    never reach a socket that reused the number.
    """

    def __init__(self, limits: Limits, deadline_at: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.deadline_at = deadline_at
        self.received = 0  # body bytes this attempt, counted by the reading thread
        self.reason = ""  # why the transfer was cut off, once it was
        self._clock = clock
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="bpcli-fetch-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        with self._lock:
            self._closed = True
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def attach(self, sock: socket.socket) -> None:
        """Watch a new connection (each redirect or proxy hop opens one)."""
        dup = sock.dup()
        with self._lock:
            if self._closed:
                dup.close()
                return
            self._sockets.append(dup)
            if self.reason:  # already past the deadline: this connection ends at once
                _shutdown(dup)

    def _run(self) -> None:
        limits, clock = self.limits, self._clock
        started = clock()
        samples = collections.deque([(started, 0)])  # (time, bytes): the rate's sliding window
        tick = max(0.05, min(0.5, limits.window / 8))
        while True:
            wait = min(tick, self.deadline_at - clock())
            if self._stop.wait(max(wait, 0.0)):
                return
            now, received = clock(), self.received
            if now >= self.deadline_at:
                self._fire(f"not finished within the {limits.deadline:g} s deadline (--deadline); "
                           f"{received} bytes arrived in {now - started:.1f} s")
                return
            samples.append((now, received))
            while len(samples) > 1 and samples[1][0] <= now - limits.window:
                samples.popleft()
            since, before = samples[0]
            if limits.min_rate > 0 and now - since >= limits.window and received - before < limits.min_rate * (now - since):
                self._fire(f"too slow: {received - before} bytes in the last {now - since:.1f} s, below the "
                           f"minimum of {limits.min_rate:g} bytes/s (--min-rate)")
                return

    def _fire(self, reason: str) -> None:
        with self._lock:
            self.reason = reason
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed by the peer: nothing left to end
        pass


class Fetcher:
    """Transfers one URL into a part file: resume, progress, timeouts, deadline, rate and size limits."""

    def __init__(self, limits: Limits, on_progress: ProgressCallback | None = None,
                 chunk_size: int = CHUNK_SIZE, max_bytes: int = MAX_BYTES) -> None:
        self.limits = limits
        self.on_progress = on_progress or _ignore_progress
        self.chunk_size = chunk_size
        self.max_bytes = max_bytes
        self._watch: Watchdog | None = None
        # One opener per fetcher so that proxy settings are read from the environment as it is now;
        # its handlers let the current watchdog see every connection they open.
        self.opener = urllib.request.build_opener(_HTTPHandler(self), _HTTPSHandler(self))

    def fetch(self, url: str, part: Path, name: str, deadline_at: float) -> Fetched:
        """Make `part` hold the complete body of `url`, appending to what it holds if the server
        honours a Range request. Raises TransferError when the transfer fails, stops short or runs
        past `deadline_at` (time.monotonic) or below the minimum rate."""
        with Watchdog(self.limits, deadline_at) as watch:
            self._watch = watch
            try:
                return self._fetch(url, part, name, watch)
            finally:
                self._watch = None

    def _fetch(self, url: str, part: Path, name: str, watch: Watchdog) -> Fetched:
        progress, timeout = self.on_progress, self.limits.timeout
        offset = part.stat().st_size if part.is_file() else 0
        request = urllib.request.Request(
            url, headers={"User-Agent": f"bpcli/{__version__}", "Accept-Encoding": "identity"}
        )
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        try:
            response = self.opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 416 and offset:
                # Nothing left past `offset`: the part file is already complete (or is stale, which
                # verification will tell, and the caller then starts over).
                progress(name, offset, offset)
                return Fetched(resumed_from=offset)
            raise TransferError(f"HTTP {e.code} {_printable(str(e.reason))}") from None
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise TransferError(watch.reason or _describe(e, timeout)) from None
        with response:
            status = getattr(response, "status", None) or 200  # file:// responses have no status
            length = _int_header(response.headers.get("Content-Length"))
            if offset and status == 206 and _range_start(response.headers.get("Content-Range")) == offset:
                mode, start = "ab", offset
                total = _range_total(response.headers.get("Content-Range"))
                total = total if total is not None else (offset + length if length is not None else None)
            else:
                # A plain 200 to a Range request: the server ignored the range, so start from zero.
                mode, start, total = "wb", 0, length
            if total is not None and total > self.max_bytes:
                raise TransferError(f"the server announces {total} bytes, more than the {self.max_bytes} allowed")
            # read1: at most one receive per call, so that progress and the rate are counted as bytes
            # arrive (read(n) would wait for n bytes).
            read = getattr(response, "read1", None) or response.read
            done = start
            f = _open_part(part, mode)
            try:
                progress(name, done, total)
                while True:
                    try:
                        chunk = read(self.chunk_size)
                    except (OSError, http.client.HTTPException, ValueError) as e:
                        reason = watch.reason or f"transfer failed after {done} bytes: {_describe(e, timeout)}"
                        raise TransferError(reason, done > start and not watch.reason) from None
                    if watch.reason:  # a file:// read is not interrupted; the loop looks itself
                        raise TransferError(watch.reason)
                    if not chunk:
                        break
                    done += len(chunk)
                    watch.received += len(chunk)
                    limit = total if total is not None else self.max_bytes
                    if done > limit:
                        # Not the file we asked for: nothing in the part is worth resuming from.
                        f.close()
                        part.unlink(missing_ok=True)
                        raise TransferError(f"the server sent more than the {limit} bytes expected")
                    _write_all(f, chunk, part)
                    progress(name, done, total)
            finally:
                _close_part(f, part)
        if total is not None and done < total:
            # http.client returns a short body without complaint when the connection closes early.
            raise TransferError(f"transfer stopped after {done} of {total} bytes", done > start)
        return Fetched(resumed_from=start)

    def _connect(self, *args: Any, **kwargs: Any) -> socket.socket:
        """socket.create_connection, watched by the current transfer's watchdog."""
        sock = socket.create_connection(*args, **kwargs)
        if self._watch is not None:
            self._watch.attach(sock)
        return sock

    def connection_class(self, cls: type[http.client.HTTPConnection]) -> Callable[..., http.client.HTTPConnection]:
        """A factory of `cls` connections that open their socket through `_connect`."""

        def make(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
            conn = cls(*args, **kwargs)
            # The hook http.client itself offers for making the socket (it is used for the proxy
            # hop too, and HTTPS wraps the socket it returns, so TLS is watched as well).
            conn._create_connection = self._connect  # type: ignore[attr-defined]
            return conn

        return make


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, fetcher: Fetcher) -> None:
        super().__init__()
        self._fetcher = fetcher

    def do_open(self, http_class: Any, req: urllib.request.Request, **kwargs: Any) -> http.client.HTTPResponse:
        return super().do_open(self._fetcher.connection_class(http_class), req, **kwargs)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, fetcher: Fetcher) -> None:
        super().__init__()
        self._fetcher = fetcher

    def do_open(self, http_class: Any, req: urllib.request.Request, **kwargs: Any) -> http.client.HTTPResponse:
        return super().do_open(self._fetcher.connection_class(http_class), req, **kwargs)


def _open_part(part: Path, mode: str) -> IO[bytes]:
    """The part file, unbuffered: every write reaches the disk (or fails) at once, with the path in hand."""
    try:
        return open(part, mode, buffering=0)
    except OSError as e:
        raise write_error(part, e) from None


def _close_part(f: IO[bytes], part: Path) -> None:
    """Close the part file. Unbuffered, so there is nothing left to flush on a full disk; a network
    file system may still report a failed write here."""
    try:
        f.close()
    except OSError as e:
        raise write_error(part, e) from None


def _write_all(f: IO[bytes], chunk: bytes, part: Path) -> None:
    view = memoryview(chunk)
    try:
        while view:
            view = view[f.write(view) or 0:]
    except OSError as e:
        f.close()
        raise write_error(part, e) from None


def write_error(path: Path, e: OSError) -> DataError:
    """The error for a file that could not be written (full disk, no permission), after removing
    what was written of it: its tail is unknown, and the space is wanted."""
    try:
        path.unlink(missing_ok=True)
    except OSError:  # the directory refuses this too; a leftover part is verified before any use
        pass
    return DataError(f"{path}: cannot write ({e.strerror or e}); nothing was installed")


def _ignore_progress(name: str, done: int, total: int | None) -> None:
    """The progress callback when the caller gives none."""


def _describe(e: BaseException, timeout: float) -> str:
    """A short reason for a network failure."""
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(reason, TimeoutError):
        return f"timed out (no data for {timeout:g} s)"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, OSError) and reason.strerror:
        return _printable(reason.strerror)
    return _printable(str(reason)) or type(reason).__name__


def _printable(text: str, limit: int = 120) -> str:
    """Text from a server or a library as one short printable line: a reason phrase may hold
    anything, including terminal escape sequences."""
    text = "".join(c if c.isprintable() else "?" for c in text[: limit + 1])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _int_header(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _range_start(content_range: str | None) -> int | None:
    """'bytes 100-199/200' -> 100."""
    if not content_range or not content_range.startswith("bytes "):
        return None
    return _int_header(content_range[6:].partition("-")[0].strip())


def _range_total(content_range: str | None) -> int | None:
    """'bytes 100-199/200' -> 200 ('*' -> None)."""
    if not content_range:
        return None
    return _int_header(content_range.rpartition("/")[2].strip())
