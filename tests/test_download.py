"""`bpcli data download` / `verify` against a local HTTP server on 127.0.0.1 only.

The server serves small generated IDX files under path prefixes that choose its behaviour:
/good/ (with Range support), /norange/ (ignores Range), /regz/ (same content, compressed differently),
/truncated/, /corrupt/ (a flipped byte), /wrong/ (a valid file of other data), /missing/ (404),
/drop/ (announces N bytes, sends N/2, closes), /stall/ (headers, then silence), /nolength/ (no
Content-Length), /drip/ (headers, then the body at one byte a second), /driphead/ (the status line
and headers themselves at one byte a second), /bomb/ (a gzip bomb under the first file's name), /real/
(the real MNIST files of the `mnist_dir` fixture). No test contacts any other host.
"""

from __future__ import annotations

import errno
import functools
import gzip
import hashlib
import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bpcli import fetch as fetch_module
from bpcli.cli import app
from bpcli.data import FILES, decompress, load_mnist
from bpcli.data import download as dl
from bpcli.data import mirrors, registry, sums
from bpcli.data.check import verify_path
from bpcli.data.download import DatasetSpec, FileSpec, download, part_path
from bpcli.errors import DataError, UsageError

from conftest import CONFIGS

TIMEOUT = 2.0  # seconds; everything is local, so anything slower is a hang
DRIP_SECONDS = 30  # a drip-feeding handler stops after this, whatever the client does


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def make_dataset(seed: int) -> dict[str, bytes]:
    """Raw (uncompressed) IDX bytes of a tiny MNIST-shaped dataset: 40 train, 12 test, 6x6 images."""
    rng = np.random.default_rng(seed)
    sizes = {"train": 40, "test": 12}
    out = {}
    for part, n in sizes.items():
        out[FILES[f"{part}_images"]] = idx_bytes(rng.integers(0, 256, size=(n, 6, 6)))
        out[FILES[f"{part}_labels"]] = idx_bytes(rng.integers(0, 10, size=n))
    return out


@functools.lru_cache(maxsize=None)
def bomb(header_alone: bool = False) -> bytes:
    """A gzip bomb of 0.2 MB that expands to 200 MiB: a valid IDX header declaring 10 images of
    28 x 28 (7840 bytes), then zeros. Gzip members of 1 MiB of zeros, concatenated (gzip allows it),
    make it in milliseconds; the header shares the first member, or has one of its own."""
    header = bytes([0, 0, 0x08, 3]) + b"".join(d.to_bytes(4, "big") for d in (10, 28, 28))
    zeros = bytes(BOMB_MEMBER)
    member = gzip.compress(zeros, compresslevel=9, mtime=0)
    first = gzip.compress(header, mtime=0) + member if header_alone else gzip.compress(header + zeros, mtime=0)
    return first + member * (BOMB_BYTES // BOMB_MEMBER - 1)


BOMB_MEMBER = 1 << 20
BOMB_BYTES = 200 * BOMB_MEMBER


RAW = make_dataset(0)
GZ = {name: gzip.compress(raw, compresslevel=9, mtime=0) for name, raw in RAW.items()}
OTHER_GZ = {name: gzip.compress(raw, mtime=0) for name, raw in make_dataset(1).items()}
NAMES = list(FILES.values())


def spec(mirrors: tuple[str, ...], content: bool = True) -> DatasetSpec:
    """The tiny dataset's spec: MD5 of the .gz as served by /good/, and (optionally) content SHA-256."""
    files = tuple(
        FileSpec(n, md5=hashlib.md5(GZ[n]).hexdigest(),
                 content_sha256=hashlib.sha256(RAW[n]).hexdigest() if content else None)
        for n in NAMES
    )
    return DatasetSpec("tiny", "tiny test set", mirrors, files)


# -- the local server ----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: the connection closes after each response, so a short body really ends the transfer.
    protocol_version = "HTTP/1.0"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Range")))
        kind, _, name = self.path.lstrip("/").partition("/")
        body = self.server.body(kind, name)
        if body is None:
            self.send_error(404, "Not Found")
            return
        if kind == "drop":
            self._headers(200, len(body))
            self.wfile.write(body[: len(body) // 2])
            return
        if kind == "nolength":  # HTTP/1.0 style: the body ends when the connection closes
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)
            return
        if kind == "stall":
            self._headers(200, len(body))
            self.wfile.flush()
            time.sleep(TIMEOUT * 2)
            return
        if kind == "drip":
            self._headers(200, len(body))
            self.wfile.flush()
            self._drip(body)
            return
        if kind == "driphead":
            self._drip(f"HTTP/1.0 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            return
        start = _range_start(self.headers.get("Range")) if kind in ("good", "real") else None
        if start is not None and start >= len(body):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if start is not None:
            self._headers(206, len(body) - start, f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.wfile.write(body[start:])
            return
        self._headers(200, len(body))
        self.wfile.write(body)

    def _drip(self, data: bytes) -> None:
        """One byte a second: every read succeeds, so no per-read timeout ever expires. Bounded, so
        that a client that never gives up cannot keep the thread forever."""
        for i in range(min(len(data), DRIP_SECONDS)):
            try:
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
            except OSError:  # the client hung up: what the test wants
                return
            time.sleep(1.0)

    def _headers(self, status: int, length: int, content_range: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if content_range:
            self.send_header("Content-Range", content_range)
        self.end_headers()


def _range_start(header: str | None) -> int | None:
    if not header or not header.startswith("bytes=") or not header.endswith("-"):
        return None
    return int(header[6:-1])


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stalled handler must not hold up the test run

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str | None]] = []
        self.real_dir: Path | None = None  # set by the test that serves the real MNIST files

    def body(self, kind: str, name: str) -> bytes | None:
        if kind == "real":
            path = self.real_dir / name if self.real_dir else None
            return path.read_bytes() if path and path.is_file() else None
        if kind == "bomb" and name == NAMES[0]:
            return bomb()
        if name not in GZ or kind == "missing":
            return None
        good = GZ[name]
        if kind in ("good", "norange", "drop", "stall", "nolength", "drip", "driphead", "bomb"):
            return good
        if kind == "regz":
            return gzip.compress(RAW[name], compresslevel=1, mtime=12345)
        if kind == "truncated":
            return good[: len(good) // 2]
        if kind == "corrupt":
            i = len(good) // 2
            return good[:i] + bytes([good[i] ^ 0xFF]) + good[i + 1:]
        if kind == "wrong":
            return OTHER_GZ[name]
        return None


@dataclass
class Local:
    """The running server: `url(kind)` is a mirror base URL; `requests` what it was asked."""

    port: int
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    server: _Server | None = None

    def url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.port}/{kind}/"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Local]:
    # Requests to 127.0.0.1 must not go through any proxy configured in the environment.
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv(mirrors.MIRRORS_ENV, raising=False)
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Local(srv.server_address[1], srv.requests, srv)
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def fetch(local: Local, *kinds: str, tmp: Path, content: bool = True, **kwargs: object) -> dl.DownloadReport:
    mirrors = tuple(local.url(k) for k in kinds)
    return download(spec(mirrors, content), tmp, timeout=TIMEOUT, **kwargs)  # type: ignore[arg-type]


def assert_not_installed(directory: Path, name: str = NAMES[0]) -> None:
    assert not (directory / name).exists(), "a file that did not verify must not appear under its final name"


# -- the good cases -------------------------------------------------------------------------------------


def test_good_mirror_yields_verified_files_that_load(server: Local, tmp_path: Path) -> None:
    seen: list[tuple[str, int, int | None]] = []
    report = fetch(server, "good", tmp=tmp_path, on_progress=lambda *a: seen.append(a))
    assert [f.status for f in report.files] == ["downloaded"] * 4
    for f in report.files:
        assert (tmp_path / f.name).read_bytes() == GZ[f.name]
        assert f.method == "published MD5"
        assert not part_path(tmp_path, f.name).exists()
    # Progress ends at the full size for every file.
    last = {name: (done, total) for name, done, total in seen}
    assert last == {n: (len(GZ[n]), len(GZ[n])) for n in NAMES}
    # SHA256SUMS makes the project's own loader accept a dataset it does not know.
    assert report.checksum_file == tmp_path / "SHA256SUMS"
    data = load_mnist(tmp_path, validation_size=8)
    assert len(data.train) == 32 and len(data.test) == 12
    report = verify_path(tmp_path)
    assert report.code == 0 and {c.state for c in report.checks} == {"listed"}  # by SHA256SUMS: "tiny" is no known dataset


def test_verified_files_are_not_downloaded_again(server: Local, tmp_path: Path) -> None:
    fetch(server, "good", tmp=tmp_path)
    server.requests.clear()
    report = fetch(server, "good", tmp=tmp_path)
    assert [f.status for f in report.files] == ["present"] * 4
    assert server.requests == []


def test_a_bad_file_under_the_final_name_is_replaced(server: Local, tmp_path: Path) -> None:
    (tmp_path / NAMES[0]).write_bytes(b"not the file")
    report = fetch(server, "good", tmp=tmp_path)
    assert report.files[0].status == "downloaded"
    assert (tmp_path / NAMES[0]).read_bytes() == GZ[NAMES[0]]


def test_differently_compressed_copy_verifies_by_content(server: Local, tmp_path: Path) -> None:
    report = fetch(server, "regz", tmp=tmp_path)
    assert {f.method for f in report.files} == {"content SHA-256"}


def test_no_published_checksum_is_reported_as_unverified(server: Local, tmp_path: Path) -> None:
    bare = DatasetSpec("bare", "no checksums", (server.url("good"),), tuple(FileSpec(n) for n in NAMES))
    report = download(bare, tmp_path, timeout=TIMEOUT)
    assert {f.method for f in report.files} == {dl.UNVERIFIED}


def test_server_without_content_length(server: Local, tmp_path: Path) -> None:
    seen: list[int | None] = []
    report = fetch(server, "nolength", tmp=tmp_path, on_progress=lambda name, done, total: seen.append(total))
    assert [f.status for f in report.files] == ["downloaded"] * 4
    assert set(seen) == {None}  # the progress bar is told the size is unknown


def test_file_url_mirror(tmp_path: Path) -> None:
    """A local copy (file://) works as a mirror, e.g. on a machine without network."""
    source = tmp_path / "mirror"
    source.mkdir()
    for name, blob in GZ.items():
        (source / name).write_bytes(blob)
    mirror = source.as_uri() + "/"
    report = download(spec((mirror,)), tmp_path / "out", [mirror], timeout=TIMEOUT)
    assert [f.status for f in report.files] == ["downloaded"] * 4


def test_falls_through_to_the_next_mirror(server: Local, tmp_path: Path) -> None:
    report = fetch(server, "missing", "good", tmp=tmp_path)
    first = report.files[0]
    assert first.url == server.url("good") + NAMES[0]
    assert len(first.failures) == 1 and "HTTP 404" in first.failures[0]


def test_resume_sends_a_range_request(server: Local, tmp_path: Path) -> None:
    name, body = NAMES[0], GZ[NAMES[0]]
    half = len(body) // 2
    part_path(tmp_path, name).write_bytes(body[:half])
    report = fetch(server, "good", tmp=tmp_path)
    assert (f"/good/{name}", f"bytes={half}-") in server.requests
    assert report.files[0].resumed_from == half
    assert (tmp_path / name).read_bytes() == body


def test_server_ignoring_range_restarts_the_file(server: Local, tmp_path: Path) -> None:
    name, body = NAMES[0], GZ[NAMES[0]]
    part_path(tmp_path, name).write_bytes(body[:10])
    report = fetch(server, "norange", tmp=tmp_path)
    assert report.files[0].resumed_from == 0
    assert (tmp_path / name).read_bytes() == body


def test_a_complete_part_file_is_verified_without_refetching(server: Local, tmp_path: Path) -> None:
    name, body = NAMES[0], GZ[NAMES[0]]
    part_path(tmp_path, name).write_bytes(body)
    report = fetch(server, "good", tmp=tmp_path)  # the server answers 416 to a range past the end
    assert report.files[0].resumed_from == len(body)
    assert (tmp_path / name).read_bytes() == body


def test_a_stale_part_file_is_discarded_and_fetched_again(server: Local, tmp_path: Path) -> None:
    name, body = NAMES[0], GZ[NAMES[0]]
    part_path(tmp_path, name).write_bytes(b"\x00" * 100)  # bytes from some other transfer
    fetch(server, "good", tmp=tmp_path)
    assert (tmp_path / name).read_bytes() == body
    assert [r for r in server.requests if r[0] == f"/good/{name}"] == [(f"/good/{name}", "bytes=100-"),
                                                                      (f"/good/{name}", None)]


def test_mirrors_from_the_environment(server: Local, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(mirrors.MIRRORS_ENV, f"{server.url('missing')}, {server.url('good')}")
    report = download(spec((f"http://127.0.0.1:{_closed_port()}/never-used/",)), tmp_path, timeout=TIMEOUT)
    assert report.files[0].url == server.url("good") + NAMES[0]
    # --mirror beats the environment.
    assert mirrors.resolve_mirrors(spec(()), ["file:///x/"]) == ("file:///x/",)


def test_bad_mirror_url_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="not a mirror URL"):
        mirrors.resolve_mirrors(spec(()), ["ftp://example.invalid/"])


def test_known_datasets_have_mirrors_and_checksums() -> None:
    for name, ds in registry.DATASETS.items():
        assert ds.mirrors and [f.name for f in ds.files] == NAMES, name
        assert all(f.published for f in ds.files), name
    with pytest.raises(UsageError, match="unknown dataset"):
        registry.dataset_spec("cifar")


# -- the bad cases: a clear DataError and nothing under the final name ---------------------------------------


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("truncated", "corrupted gzip stream"),
        ("corrupt", "corrupted gzip stream"),
        ("wrong", "checksum mismatch"),
        ("missing", "HTTP 404"),
        ("drop", "transfer stopped after"),
    ],
)
def test_bad_mirror_gives_a_clear_error_and_no_file(server: Local, tmp_path: Path, kind: str, message: str) -> None:
    with pytest.raises(DataError) as info:
        fetch(server, kind, tmp=tmp_path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{NAMES[0]}: no mirror gave a verified copy")
    assert server.url(kind) + NAMES[0] in text and message in text
    assert_not_installed(tmp_path)
    assert not (tmp_path / "SHA256SUMS").exists()


def test_dropped_transfer_keeps_only_the_part_file_and_is_bounded(server: Local, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="kept and will be resumed"):
        fetch(server, "drop", tmp=tmp_path)
    assert part_path(tmp_path, NAMES[0]).stat().st_size == len(GZ[NAMES[0]]) // 2
    assert len(server.requests) == dl.ATTEMPTS  # resumed a bounded number of times, then gave up
    assert_not_installed(tmp_path)


def test_bad_checksum_deletes_the_part_file(server: Local, tmp_path: Path) -> None:
    with pytest.raises(DataError):
        fetch(server, "wrong", tmp=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_stalled_server_times_out(server: Local, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(DataError, match="timed out"):
        download(spec((server.url("stall"),)), tmp_path, timeout=0.3)
    assert time.monotonic() - started < TIMEOUT
    assert_not_installed(tmp_path)


def test_refused_connection_lists_every_mirror(server: Local, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{_closed_port()}/mnist/"
    with pytest.raises(DataError) as info:
        download(spec((closed, server.url("missing"))), tmp_path, timeout=TIMEOUT)
    text = str(info.value)
    assert f"{closed}{NAMES[0]}: connection refused" in text and server.url("missing") + NAMES[0] in text
    assert_not_installed(tmp_path)


def _closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- through the command line ---------------------------------------------------------------------------


@pytest.fixture
def tiny_dataset(server: Local, monkeypatch: pytest.MonkeyPatch) -> Local:
    """`bpcli data download tiny` fetches the generated dataset from the local server."""
    monkeypatch.setitem(registry.DATASETS, "tiny", spec((server.url("missing"), server.url("good"))))
    return server


def test_cli_download_and_verify(tiny_dataset: Local, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["data", "download", "tiny", "--dir", str(tmp_path), "--timeout", "2"])
    assert result.exit_code == 0, result.output
    assert "published MD5" in result.stdout and "SHA256SUMS" in result.stdout
    result = runner.invoke(app, ["data", "verify", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "tiny test set (verified): all 4 files match" in " ".join(result.stdout.split())


@pytest.mark.parametrize("kind", ["truncated", "corrupt", "wrong", "missing", "drop"])
def test_cli_bad_mirror_is_one_line_error(tiny_dataset: Local, tmp_path: Path, kind: str) -> None:
    result = CliRunner().invoke(
        app, ["data", "download", "tiny", "--dir", str(tmp_path), "--mirror", tiny_dataset.url(kind), "--timeout", "2"]
    )
    assert result.exit_code == DataError.exit_code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and NAMES[0] in lines[0]
    assert_not_installed(tmp_path)


def test_cli_verify_reports_a_damaged_file(tiny_dataset: Local, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["data", "download", "tiny", "--dir", str(tmp_path)]).exit_code == 0
    (tmp_path / NAMES[1]).write_bytes(OTHER_GZ[NAMES[1]])
    result = runner.invoke(app, ["data", "verify", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert f"{tmp_path / NAMES[1]}: checksum mismatch" in " ".join(result.stdout.split())


def test_cli_verify_missing_directory(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["data", "verify", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "bpcli data download" in result.stderr


def test_cli_download_real_mnist_from_a_local_mirror(server: Local, tmp_path: Path, mnist_dir: Path) -> None:
    """The real MNIST files, recompressed (so their .gz MD5s differ from the public mirrors'),
    verify by content SHA-256 and load with the project's loader."""
    assert server.server is not None
    server.server.real_dir = mnist_dir
    runner = CliRunner()
    result = runner.invoke(app, ["data", "download", "mnist", "--dir", str(tmp_path), "--mirror", server.url("real")])
    assert result.exit_code == 0, result.output
    assert "content SHA-256" in result.stdout
    assert len(load_mnist(tmp_path).test) == 10_000  # what `bpcli train` will do with the directory


# -- issue 10, row 10: a mirror that drip-feeds -----------------------------------------------------------
# One byte a second never lets a per-read timeout expire; the deadline and the minimum rate end it.


def test_drip_feeding_mirror_hits_the_deadline(server: Local, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(DataError) as info:
        download(spec((server.url("drip"),)), tmp_path, timeout=TIMEOUT, deadline=0.5, min_rate=0)
    assert time.monotonic() - started < 0.5 + TIMEOUT  # ended by the deadline, not by the drip
    text = str(info.value)
    assert "\n" not in text and "not finished within the 0.5 s deadline (--deadline)" in text
    assert_not_installed(tmp_path)
    # What arrived is a prefix of the file, kept for a later run to resume (like a dropped transfer).
    part = part_path(tmp_path, NAMES[0])
    assert not part.exists() or GZ[NAMES[0]].startswith(part.read_bytes())


def test_drip_feeding_mirror_is_below_the_minimum_rate(server: Local, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(DataError, match=r"too slow: \d+ bytes in the last 1\.\d s, below the minimum of 100 bytes/s"):
        download(spec((server.url("drip"),)), tmp_path, timeout=1.0, deadline=60, min_rate=100)
    assert time.monotonic() - started < 1.0 + TIMEOUT
    assert_not_installed(tmp_path)


def test_headers_sent_one_byte_a_second_hit_the_deadline(server: Local, tmp_path: Path) -> None:
    """http.client reads the status line and headers until they end: only the watchdog, shutting the
    connection down from another thread, can stop that read."""
    started = time.monotonic()
    with pytest.raises(DataError, match="not finished within the 0.5 s deadline"):
        download(spec((server.url("driphead"),)), tmp_path, timeout=TIMEOUT, deadline=0.5, min_rate=0)
    assert time.monotonic() - started < 0.5 + TIMEOUT
    assert_not_installed(tmp_path)


def test_a_drip_feeding_mirror_falls_through_to_the_next(server: Local, tmp_path: Path) -> None:
    report = download(spec((server.url("drip"), server.url("good"))), tmp_path, timeout=TIMEOUT, deadline=0.3)
    assert "deadline" in report.files[0].failures[0]
    assert [f.status for f in report.files] == ["downloaded"] * 4
    assert all((tmp_path / n).read_bytes() == GZ[n] for n in NAMES)
    assert not any(p.name.endswith(".part") for p in tmp_path.iterdir())


def test_cli_timeout_alone_ends_a_drip_feeding_mirror(tiny_dataset: Local, tmp_path: Path) -> None:
    """The issue's case, `data download --timeout N` against a 1 byte/s mirror, with the default
    deadline and minimum rate: it ends after about N seconds with one line."""
    started = time.monotonic()
    result = CliRunner().invoke(
        app, ["data", "download", "tiny", "--dir", str(tmp_path), "--mirror", tiny_dataset.url("drip"), "--timeout", "1"]
    )
    assert time.monotonic() - started < 1 + TIMEOUT
    assert result.exit_code == DataError.exit_code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "too slow" in lines[0], result.stderr
    assert "--min-rate" in lines[0] and "Traceback" not in result.output
    assert_not_installed(tmp_path)


# -- row 11: a gzip bomb ----------------------------------------------------------------------------------


def test_bomb_is_refused_from_its_header_with_bounded_memory() -> None:
    for blob in (bomb(), bomb(header_alone=True)):
        tracemalloc.start()
        try:
            with pytest.raises(DataError) as info:
                decompress(blob, "bomb.gz")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert str(info.value) == ("bomb.gz: gzip stream expands to more than the 7856 bytes its IDX header "
                                   "declares (dimensions 10 x 28 x 28); refused without decompressing the rest")
        assert peak < 8 * BOMB_MEMBER, peak  # 200 MiB if it were expanded


def test_a_header_declaring_too_much_is_refused_before_decompressing() -> None:
    header = bytes([0, 0, 0x08, 3]) + b"".join(d.to_bytes(4, "big") for d in (100_000, 1000, 1000))
    with pytest.raises(DataError, match=r"declares dimensions 100000 x 1000 x 1000 \(100000000016 bytes\), more than"):
        decompress(gzip.compress(header), "huge.gz")


def test_bomb_on_a_mirror_is_refused_and_leaves_no_part(server: Local, tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        fetch(server, "bomb", tmp=tmp_path)
    text = str(info.value)
    assert "\n" not in text and server.url("bomb") + NAMES[0] in text and "expands to more than the 7856 bytes" in text
    assert list(tmp_path.iterdir()) == []  # no part, no final name, no SHA256SUMS


def bomb_dataset(directory: Path) -> Path:
    """A dataset directory whose training images are the bomb (the other files and the checksums fine)."""
    directory.mkdir()
    for name in NAMES:
        (directory / name).write_bytes(bomb() if name == NAMES[0] else GZ[name])
    (directory / "SHA256SUMS").write_text("".join(f"{hashlib.sha256(RAW[n]).hexdigest()}  {n}\n" for n in NAMES))
    return directory


def test_cli_download_bomb_is_one_line(tiny_dataset: Local, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["data", "download", "tiny", "--dir", str(tmp_path), "--mirror", tiny_dataset.url("bomb")]
    )
    assert result.exit_code == DataError.exit_code and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "expands to more than" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_cli_verify_reports_a_bomb_in_its_table(tmp_path: Path) -> None:
    directory = bomb_dataset(tmp_path / "d")
    result = CliRunner().invoke(app, ["data", "verify", str(directory)], env={"COLUMNS": "400"})
    assert result.exit_code == 2 and "Traceback" not in result.output  # 2: a file that cannot be read
    row = next(line for line in result.stdout.splitlines() if NAMES[0] in line)
    assert "unusable [1]" in row
    note = next(line for line in result.stdout.splitlines() if line.startswith("[1]"))
    assert note.startswith(f"[1] {NAMES[0]}: gzip stream expands to more than the 7856 bytes its IDX header declares")
    assert "1 of 4 files cannot be used" in result.stdout


def test_bomb_in_the_training_data_is_one_line(tmp_path: Path) -> None:
    directory = bomb_dataset(tmp_path / "d")
    with pytest.raises(DataError, match="expands to more than the 7856 bytes"):
        load_mnist(directory, validation_size=8)
    result = CliRunner().invoke(app, ["train", str(CONFIGS / "tiny.yaml"), "--set", f"data.path={directory}",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == DataError.exit_code and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "expands to more than" in lines[0]


# -- row 12: mirror URLs that cannot be parsed or printed --------------------------------------------------


BAD_URLS = [
    ("http://[::1/", "is not a valid URL (Invalid IPv6 URL)"),
    ("http://127.0.0.1:1/a\r\nInjected: yes/", "contains a control character or space ('\\r')"),
    ("http://127.0.0.1:1/a\x1b[31m/", "contains a control character or space ('\\x1b')"),
    ("http://127.0.0.1:99999/", "is not a valid URL (Port out of range"),
    ("http://:80/", "names no host"),
    ("ftp://127.0.0.1/", "is not a mirror URL"),
    ("http://127.0.0.1:1/?x=1", "has a ?query or #fragment"),
    # Credentials are not sent (it failed later as an unknown host), and the password is never shown.
    ("http://user:secret@127.0.0.1:1/", "'http://user:***@127.0.0.1:1/' carries a user name or password"),
]


@pytest.mark.parametrize(
    ("via", "url", "message"),
    [("--mirror", u, m) for u, m in BAD_URLS] + [("--mirror", "", "is not a mirror URL")]
    + [("$BPCLI_MIRRORS", u, m) for u, m in BAD_URLS],
)
def test_cli_bad_mirror_url_is_one_line(tiny_dataset: Local, tmp_path: Path, url: str, message: str, via: str) -> None:
    if via == "--mirror":
        result = CliRunner().invoke(app, ["data", "download", "tiny", "--dir", str(tmp_path), "--mirror", url])
    else:
        result = CliRunner().invoke(app, ["data", "download", "tiny", "--dir", str(tmp_path)],
                                    env={mirrors.MIRRORS_ENV: url})
    assert result.exit_code == UsageError.exit_code and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {via}: ") and message in lines[0], lines[0]
    assert "\x1b" not in result.stderr and "secret" not in result.stderr
    assert tiny_dataset.requests == []  # refused before anything was fetched


@pytest.mark.parametrize("value", [" , ,", ",", " ,\t, "])
def test_cli_mirror_list_without_a_url_is_one_line(tiny_dataset: Local, tmp_path: Path, value: str) -> None:
    result = CliRunner().invoke(app, ["data", "download", "tiny", "--dir", str(tmp_path)],
                                env={mirrors.MIRRORS_ENV: value})
    assert result.exit_code == UsageError.exit_code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "$BPCLI_MIRRORS is" in lines[0] and "names no mirror" in lines[0], result.stderr
    assert tiny_dataset.requests == []


def test_a_dataset_without_mirrors_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no mirror to fetch tiny from"):
        mirrors.resolve_mirrors(spec(()), environ={})


def test_a_long_bad_url_is_quoted_short() -> None:
    with pytest.raises(UsageError) as info:
        mirrors.resolve_mirrors(spec(()), ["http://[::1/" + "x" * 10_000])
    assert len(str(info.value)) < 300


def test_an_http_reason_phrase_is_printed_safely(tmp_path: Path) -> None:
    assert fetch_module._printable("Not \x1b[31mFound\r\n" + "x" * 500) == "Not ?[31mFound??" + "x" * 101 + "..."


# -- row 8 in the download path: full disk, no permission ------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_disk_while_writing_the_part_file(tiny_dataset: Local, tmp_path: Path) -> None:
    """The part file's path leads to /dev/full, where every write fails with ENOSPC: a real full disk
    at the real write call."""
    part = part_path(tmp_path, NAMES[0])
    part.symlink_to("/dev/full")
    result = CliRunner().invoke(app, ["data", "download", "tiny", "--dir", str(tmp_path), "--mirror", tiny_dataset.url("good")])
    assert result.exit_code == DataError.exit_code and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == f"error: {part}: cannot write (No space left on device); nothing was installed"
    assert list(tmp_path.iterdir()) == []  # the part is gone, nothing under a final name


def test_permission_denied_opening_the_part_file(server: Local, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: object, *args: object, **kwargs: object) -> object:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(fetch_module, "open", refuse, raising=False)
    with pytest.raises(DataError) as info:
        fetch(server, "good", tmp=tmp_path)
    assert str(info.value) == f"{part_path(tmp_path, NAMES[0])}: cannot write (Permission denied); nothing was installed"
    assert list(tmp_path.iterdir()) == []


def test_permission_denied_installing_a_verified_file(server: Local, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: object, dst: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))

    monkeypatch.setattr(dl.os, "replace", refuse)
    with pytest.raises(DataError) as info:
        fetch(server, "good", tmp=tmp_path)
    assert str(info.value) == f"{tmp_path / NAMES[0]}: cannot write (Permission denied); nothing was installed"
    assert list(tmp_path.iterdir()) == []


def test_full_disk_while_writing_sha256sums(tiny_dataset: Local, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(sums, "write_atomic", full)
    result = CliRunner().invoke(app, ["data", "download", "tiny", "--dir", str(tmp_path), "--mirror", tiny_dataset.url("good")])
    assert result.exit_code == DataError.exit_code and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'SHA256SUMS'}: cannot write (No space left on device)")
    # Each file under its final name was verified before it took it; nothing else is there.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)
    assert all((tmp_path / n).read_bytes() == GZ[n] for n in NAMES)


def test_unreadable_sha256sums_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = bomb_dataset(tmp_path / "d")
    (directory / "SHA256SUMS").unlink()
    (directory / "SHA256SUMS").mkdir()  # not a file: refused in one line, never taken as "no list"
    with pytest.raises(DataError, match="SHA256SUMS: not a file"):
        verify_path(directory)
    (directory / "SHA256SUMS").rmdir()
    (directory / "SHA256SUMS").write_bytes(b"0" * (2 << 20))
    with pytest.raises(DataError, match="not a checksum list"):
        verify_path(directory)
