"""Fetching MNIST-format datasets from public mirrors, and checking a data directory.

A download goes to `DIR/.NAME.part`, resumes with an HTTP Range request when a part file is left over,
is verified, and only then is renamed (atomically) to `DIR/NAME`: a file under its final name has
always been verified. A file verifies when the bytes as served match a published MD5 or SHA-256, or
when the decompressed IDX bytes match a known SHA-256 (mirrors compress the same data differently).

Compute only: progress is reported through a callback, results are returned as plain data, and every
failure the user can do something about is a `DataError`. Standard library only (urllib).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bpcli import __version__
from bpcli.checkpoint import write_atomic
from bpcli.data import CHECKSUM_FILE, FILES, KNOWN_SHA256, MAX_LABEL, decompress, expected_checksums, parse_idx
from bpcli.errors import DataError, UsageError

# on_progress(file name, bytes on disk so far, total size or None when the server does not say).
ProgressCallback = Callable[[str, int, "int | None"], None]

MIRRORS_ENV = "BPCLI_MIRRORS"
DEFAULT_TIMEOUT = 30.0
CHUNK_SIZE = 64 * 1024
# No MNIST-format file is anywhere near this; a server streaming without end is cut off here.
MAX_BYTES = 256 * 1024 * 1024
# Fetch attempts per mirror: a transfer that stopped after making progress is resumed, and a resumed
# file that fails verification is fetched once more from the start.
ATTEMPTS = 3
SCHEMES = ("http", "https", "file")
UNVERIFIED = "unverified: no published checksum"


# -- what to fetch ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset and the checksums it may be verified against (any one match is enough).

    md5 / sha256: of the file exactly as the mirrors serve it (the .gz). content_sha256: of the
    decompressed IDX bytes, which does not depend on how a mirror compressed the file.
    """

    name: str
    md5: str | None = None
    sha256: str | None = None
    content_sha256: str | None = None

    @property
    def published(self) -> bool:
        return any((self.md5, self.sha256, self.content_sha256))


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset in MNIST format: its mirrors (base URLs, tried in order) and its four files."""

    name: str
    title: str
    mirrors: tuple[str, ...]
    files: tuple[FileSpec, ...]


def _mnist_files(md5: dict[str, str], content: dict[str, str] | None = None) -> tuple[FileSpec, ...]:
    content = content or {}
    return tuple(FileSpec(name, md5=md5[name], content_sha256=content.get(name)) for name in FILES.values())


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        title="MNIST handwritten digits",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        # MD5s of the mirrors' .gz files (the ones every MNIST loader checks), plus the content SHA-256s
        # the loader itself uses, so a differently compressed copy is accepted too.
        files=_mnist_files(
            {
                "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
            },
            KNOWN_SHA256["mnist"],
        ),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        title="Fashion-MNIST (Zalando Research)",
        # The project's S3 website endpoint serves plain HTTP only; the MD5s below guard the content.
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        # As published in the Fashion-MNIST README.
        files=_mnist_files(
            {
                "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
            }
        ),
    ),
    "kmnist": DatasetSpec(
        name="kmnist",
        title="Kuzushiji-MNIST (ROIS-CODH)",
        mirrors=(
            "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
            "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        ),
        # MD5s of the files on the project's server, as pinned by torchvision's KMNIST loader.
        files=_mnist_files(
            {
                "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
                "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
                "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
                "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
            }
        ),
    ),
}


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of a known dataset, or a UsageError listing the known ones."""
    try:
        return DATASETS[name.lower()]
    except KeyError:
        raise UsageError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def resolve_mirrors(
    spec: DatasetSpec, override: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """The mirrors to try, in order: `override` (--mirror) if given, else $BPCLI_MIRRORS
    (comma-separated), else the dataset's defaults. Each must be an http(s):// or file:// URL."""
    environ = os.environ if environ is None else environ
    if override:
        mirrors, origin = tuple(override), "--mirror"
    elif environ.get(MIRRORS_ENV, "").strip():
        mirrors, origin = tuple(m.strip() for m in environ[MIRRORS_ENV].split(",") if m.strip()), MIRRORS_ENV
    else:
        mirrors, origin = spec.mirrors, "default mirrors"
    for mirror in mirrors:
        parts = urllib.parse.urlsplit(mirror)
        if parts.scheme not in SCHEMES or not (parts.netloc or parts.scheme == "file"):
            raise UsageError(f"{origin}: {mirror!r} is not a mirror URL; give a base URL such as "
                             "https://host/path/ (http, https or file)")
    return mirrors


def file_url(mirror: str, name: str) -> str:
    """The URL of `name` under a mirror's base URL (with or without its trailing slash)."""
    return mirror.rstrip("/") + "/" + urllib.parse.quote(name)


# -- verification -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """Whether a downloaded blob is the file it should be, and how that was decided."""

    ok: bool
    method: str  # which checksum matched, or UNVERIFIED
    content_sha256: str | None  # of the decompressed bytes, when they could be read
    problem: str = ""


def verify_blob(blob: bytes, spec: FileSpec) -> Verification:
    """Check a file's bytes against `spec`: it must decompress and parse as IDX, and match one of the
    published checksums (if none is published, the structural check is all there is)."""
    try:
        content = decompress(blob, spec.name)
        parse_idx(content, spec.name)
    except DataError as e:
        return Verification(False, "", None, _strip_source(str(e), spec.name))
    content_sha256 = hashlib.sha256(content).hexdigest()
    # MD5 is what some projects publish; it identifies a file here, it is not a security boundary.
    md5 = hashlib.md5(blob, usedforsecurity=False).hexdigest() if spec.md5 else None
    sha256 = hashlib.sha256(blob).hexdigest() if spec.sha256 else None
    if spec.md5 and md5 == spec.md5.lower():
        return Verification(True, "published MD5", content_sha256)
    if spec.sha256 and sha256 == spec.sha256.lower():
        return Verification(True, "published SHA-256", content_sha256)
    if spec.content_sha256 and content_sha256 == spec.content_sha256.lower():
        return Verification(True, "content SHA-256", content_sha256)
    if not spec.published:
        return Verification(True, UNVERIFIED, content_sha256)
    found = []
    if spec.md5:
        found.append(f"MD5 {md5[:12]}... (published {spec.md5[:12]}...)")
    if spec.sha256:
        found.append(f"SHA-256 {sha256[:12]}... (published {spec.sha256[:12]}...)")
    if spec.content_sha256:
        found.append(f"content SHA-256 {content_sha256[:12]}... (expected {spec.content_sha256[:12]}...)")
    return Verification(False, "", content_sha256, "checksum mismatch: " + ", ".join(found))


def _strip_source(message: str, source: str) -> str:
    """A DataError message without its leading 'source: ' (the caller names the source itself)."""
    prefix = f"{source}: "
    return message[len(prefix):] if message.startswith(prefix) else message


# -- downloading --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileResult:
    """What happened to one file: downloaded (from `url`) or already present and verified."""

    name: str
    path: Path
    status: str  # "downloaded" | "present"
    method: str
    content_sha256: str
    size: int
    url: str | None = None
    resumed_from: int = 0
    failures: tuple[str, ...] = ()  # "url: reason" for each mirror that did not work before this one


@dataclass(frozen=True)
class DownloadReport:
    dataset: str
    directory: Path
    files: tuple[FileResult, ...]
    checksum_file: Path | None = None


class _TransferError(Exception):
    """A mirror did not deliver the whole file; `progressed` says whether bytes arrived this time."""

    def __init__(self, reason: str, progressed: bool = False) -> None:
        super().__init__(reason)
        self.progressed = progressed


@dataclass
class _Fetched:
    resumed_from: int = 0


@dataclass
class _Fetcher:
    """Transfers one URL into a part file: resume, progress, timeouts, size limits."""

    opener: urllib.request.OpenerDirector
    timeout: float
    on_progress: ProgressCallback | None
    chunk_size: int = CHUNK_SIZE
    max_bytes: int = MAX_BYTES

    def fetch(self, url: str, part: Path, name: str) -> _Fetched:
        """Make `part` hold the complete body of `url`, appending to what it holds if the server
        honours a Range request. Raises _TransferError when the transfer fails or stops short."""
        progress = self.on_progress or _ignore_progress
        offset = part.stat().st_size if part.is_file() else 0
        request = urllib.request.Request(
            url, headers={"User-Agent": f"bpcli/{__version__}", "Accept-Encoding": "identity"}
        )
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        try:
            response = self.opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 416 and offset:
                # Nothing left past `offset`: the part file is already complete (or is stale, which
                # verification will tell, and the caller then starts over).
                progress(name, offset, offset)
                return _Fetched(resumed_from=offset)
            raise _TransferError(f"HTTP {e.code} {e.reason}") from None
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise _TransferError(_describe(e, self.timeout)) from None
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
                raise _TransferError(f"the server announces {total} bytes, more than the {self.max_bytes} allowed")
            done = start
            try:
                f = open(part, mode)
            except OSError as e:
                raise DataError(f"{part}: cannot write ({e.strerror})") from None
            with f:
                progress(name, done, total)
                while True:
                    try:
                        chunk = response.read(self.chunk_size)
                    except (OSError, http.client.HTTPException, ValueError) as e:
                        raise _TransferError(
                            f"transfer failed after {done} bytes: {_describe(e, self.timeout)}", done > start
                        ) from None
                    if not chunk:
                        break
                    done += len(chunk)
                    limit = total if total is not None else self.max_bytes
                    if done > limit:
                        # Not the file we asked for: nothing in the part is worth resuming from.
                        f.close()
                        part.unlink(missing_ok=True)
                        raise _TransferError(f"the server sent more than the {limit} bytes expected")
                    try:
                        f.write(chunk)
                    except OSError as e:
                        raise DataError(f"{part}: cannot write ({e.strerror})") from None
                    progress(name, done, total)
        if total is not None and done < total:
            # http.client returns a short body without complaint when the connection closes early.
            raise _TransferError(f"transfer stopped after {done} of {total} bytes", done > start)
        return _Fetched(resumed_from=start)


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
        return reason.strerror
    return str(reason) or type(reason).__name__


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


def part_path(directory: Path, name: str) -> Path:
    """Where the download of `name` accumulates until it verifies."""
    return directory / f".{name}.part"


def download(
    dataset: str | DatasetSpec,
    directory: str | Path,
    mirrors: Sequence[str] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    on_progress: ProgressCallback | None = None,
    attempts: int = ATTEMPTS,
    opener: urllib.request.OpenerDirector | None = None,
) -> DownloadReport:
    """Fetch the four files of `dataset` into `directory`, verifying each before it takes its name.

    Files already present that verify are kept. Mirrors are tried in order (see `resolve_mirrors`);
    when none delivers a verified copy of a file, raises `DataError` naming each mirror's reason.
    Finally writes `SHA256SUMS` (content SHA-256 of the four files) so that `load_mnist` checks the
    directory against exactly what was verified here, for any dataset.
    """
    spec = dataset_spec(dataset) if isinstance(dataset, str) else dataset
    urls = resolve_mirrors(spec, mirrors)
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{directory}: cannot create the data directory ({e.strerror})") from None
    # One opener per call so that proxy settings are read from the environment as it is now.
    fetcher = _Fetcher(opener or urllib.request.build_opener(), timeout, on_progress)
    results = tuple(_download_file(fetcher, f, directory, urls, max(1, attempts)) for f in spec.files)
    sums = _write_checksums(directory, results)
    return DownloadReport(spec.name, directory, results, sums)


def _download_file(
    fetcher: _Fetcher, file: FileSpec, directory: Path, mirrors: Sequence[str], attempts: int
) -> FileResult:
    """Make `directory/file.name` a verified copy: keep it if it already is one, else try each mirror
    (resuming interrupted transfers, starting over when a resumed file does not verify)."""
    final, part = directory / file.name, part_path(directory, file.name)
    if final.is_file():
        blob = final.read_bytes()
        check = verify_blob(blob, file)
        if check.ok and check.content_sha256:
            part.unlink(missing_ok=True)
            return FileResult(file.name, final, "present", check.method, check.content_sha256, len(blob))
    failures: list[str] = []
    for mirror in mirrors:
        url = file_url(mirror, file.name)
        reason = ""
        for _ in range(attempts):
            try:
                fetched = fetcher.fetch(url, part, file.name)
            except _TransferError as e:
                reason = str(e)
                if e.progressed:
                    continue  # resume where this attempt stopped
                break
            blob = part.read_bytes()
            check = verify_blob(blob, file)
            if check.ok and check.content_sha256:
                _install(part, final)
                return FileResult(file.name, final, "downloaded", check.method, check.content_sha256, len(blob),
                                  url, fetched.resumed_from, tuple(failures))
            # A bad file is never kept: not under its name, and not as a part to resume from.
            part.unlink(missing_ok=True)
            reason = check.problem
            if not fetched.resumed_from:
                break
            # The bad bytes may have come from an earlier, different transfer: start over once.
        failures.append(f"{url}: {reason}")
    kept = f"; the partial download {part} is kept and will be resumed" if part.is_file() else ""
    raise DataError(
        f"{file.name}: no mirror gave a verified copy ({'; '.join(failures)}){kept}; "
        f"check the network, or give another mirror with --mirror URL or ${MIRRORS_ENV}"
    )


def _install(part: Path, final: Path) -> None:
    """Give a verified part file its final name, durably: fsync the data, rename, fsync the directory."""
    with open(part, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(part, final)
    try:
        fd = os.open(final.parent, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_checksums(directory: Path, results: Sequence[FileResult]) -> Path:
    """Record the verified content SHA-256s in SHA256SUMS (other lines of an existing file are kept)."""
    path = directory / CHECKSUM_FILE
    ours = {r.name for r in results}
    kept: list[str] = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if line.strip() and not (len(parts) == 2 and parts[1].lstrip("*") in ours):
                kept.append(line)
    lines = kept + [f"{r.content_sha256}  {r.name}" for r in results]
    try:
        write_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"))
    except OSError as e:
        raise DataError(f"{path}: cannot write ({e.strerror})") from None
    return path


# -- checking a directory ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileCheck:
    """The state of one dataset file: `ok` is False for anything that would stop `load_mnist`."""

    name: str
    path: Path
    exists: bool
    size: int | None = None
    shape: tuple[int, ...] | None = None
    sha256: str | None = None  # of the decompressed content
    expected: str | None = None
    ok: bool = False
    problem: str = ""  # why not ok, or a note (UNVERIFIED) when ok without a checksum


def verify_directory(directory: str | Path) -> list[FileCheck]:
    """Check the four files of an MNIST-format directory: present, readable, valid IDX, matching the
    checksums `load_mnist` uses (the directory's SHA256SUMS, else MNIST's), labels consistent with images."""
    directory = Path(directory)
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "not found"
        raise DataError(f"data directory {directory} {what}; get a dataset with "
                        f"`bpcli data download mnist --dir {directory}`")
    sums = expected_checksums(directory)
    checks: dict[str, FileCheck] = {}
    arrays: dict[str, np.ndarray] = {}
    for key, name in FILES.items():
        checks[key], array = _check_file(directory / name, sums.get(name))
        if array is not None:
            arrays[key] = array
    for part in ("train", "test"):
        images, labels = arrays.get(f"{part}_images"), arrays.get(f"{part}_labels")
        label_key = f"{part}_labels"
        if labels is not None and checks[label_key].ok:
            problem = _label_problem(labels, images)
            if problem:
                checks[label_key] = replace(checks[label_key], ok=False, problem=problem)
    return list(checks.values())


def _check_file(path: Path, expected: str | None) -> tuple[FileCheck, np.ndarray | None]:
    name = path.name
    if not path.is_file():
        return FileCheck(name, path, False, problem="missing"), None
    try:
        blob = path.read_bytes()
    except OSError as e:
        return FileCheck(name, path, True, problem=f"cannot read ({e.strerror})"), None
    try:
        content = decompress(blob, name)
    except DataError as e:
        return FileCheck(name, path, True, len(blob), expected=expected, problem=_strip_source(str(e), name)), None
    digest = hashlib.sha256(content).hexdigest()
    base = FileCheck(name, path, True, len(blob), sha256=digest, expected=expected)
    try:
        array = parse_idx(content, name)
    except DataError as e:
        return replace(base, problem=_strip_source(str(e), name)), None
    base = replace(base, shape=tuple(array.shape))
    if expected is None:
        return replace(base, ok=True, problem="unverified: no checksum known for this file"), array
    if digest != expected.lower():
        return replace(base, problem=f"checksum mismatch: content SHA-256 {digest[:12]}..., "
                                      f"expected {expected[:12]}...; download it again"), array
    return replace(base, ok=True), array


def _label_problem(labels: np.ndarray, images: np.ndarray | None) -> str:
    """Why a label file cannot be used with its image file, or ''."""
    if labels.ndim != 1:
        return f"labels must be one-dimensional, found shape {labels.shape}"
    if labels.dtype.kind not in "iu":
        return f"labels must be integers, found {labels.dtype}"
    if labels.size and (labels.min() < 0 or labels.max() > MAX_LABEL):
        return f"labels must be in 0..{MAX_LABEL}, found {int(labels.min())}..{int(labels.max())}"
    if images is not None and len(images) != len(labels):
        return f"{len(labels)} labels but {len(images)} images"
    return ""
