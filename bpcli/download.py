"""Fetching MNIST-format datasets from their mirrors, and checking a data directory.

A download goes to `DIR/.NAME.part`, resumes with an HTTP Range request when a part file is left over,
is verified, and only then is renamed (atomically) to `DIR/NAME`: a file under its final name has
always been verified, and a file that is refused (or cannot be written) leaves no part behind. A file
verifies when the bytes as served match a published MD5 or SHA-256, or when the decompressed IDX bytes
match a known SHA-256 (mirrors compress the same data differently). Each mirror has a deadline per
file and a minimum rate (`fetch`); decompression stops at the size the IDX header declares (`data`).

Compute only: progress is reported through a callback, results are returned as plain data, and every
failure the user can do something about is a `DataError`. Standard library only (urllib).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bpcli.files import write_atomic
from bpcli.data import (
    CHECKSUM_FILE,
    FILES,
    MAX_LABEL,
    decompress,
    expected_checksums,
    parse_idx,
    read_blob,
    read_checksum_lines,
)
from bpcli.datasets import MIRRORS_ENV, DatasetSpec, FileSpec, dataset_spec, file_url, resolve_mirrors
from bpcli.errors import DataError
from bpcli.fetch import (
    DEFAULT_DEADLINE,
    DEFAULT_MIN_RATE,
    DEFAULT_TIMEOUT,
    Fetcher,
    Limits,
    ProgressCallback,
    TransferError,
)

# Fetch attempts per mirror: a transfer that stopped after making progress is resumed, and a resumed
# file that fails verification is fetched once more from the start.
ATTEMPTS = 3
UNVERIFIED = "unverified: no published checksum"


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
    if spec.md5 and md5:
        found.append(f"MD5 {md5[:12]}... (published {spec.md5[:12]}...)")
    if spec.sha256 and sha256:
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


def part_path(directory: Path, name: str) -> Path:
    """Where the download of `name` accumulates until it verifies."""
    return directory / f".{name}.part"


def download(
    dataset: str | DatasetSpec,
    directory: str | Path,
    mirrors: Sequence[str] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float = DEFAULT_DEADLINE,
    min_rate: float = DEFAULT_MIN_RATE,
    on_progress: ProgressCallback | None = None,
    attempts: int = ATTEMPTS,
) -> DownloadReport:
    """Fetch the four files of `dataset` into `directory`, verifying each before it takes its name.

    Files already present that verify are kept. Mirrors are tried in order (see `resolve_mirrors`);
    each has `deadline` seconds per file, and is left when it sends fewer than `min_rate` bytes per
    second over `timeout` seconds. When no mirror delivers a verified copy of a file, raises
    `DataError` naming each mirror's reason. Finally writes `SHA256SUMS` (content SHA-256 of the four
    files) so that `load_mnist` checks the directory against exactly what was verified here.
    """
    spec = dataset_spec(dataset) if isinstance(dataset, str) else dataset
    urls = resolve_mirrors(spec, mirrors)
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{directory}: cannot create the data directory ({e.strerror or e})") from None
    fetcher = Fetcher(Limits(timeout, deadline, min_rate), on_progress)
    results = tuple(_download_file(fetcher, f, directory, urls, max(1, attempts)) for f in spec.files)
    sums = _write_checksums(directory, results)
    return DownloadReport(spec.name, directory, results, sums)


def _download_file(
    fetcher: Fetcher, file: FileSpec, directory: Path, mirrors: Sequence[str], attempts: int
) -> FileResult:
    """Make `directory/file.name` a verified copy: keep it if it already is one, else try each mirror
    (resuming interrupted transfers, starting over when a resumed file does not verify)."""
    final, part = directory / file.name, part_path(directory, file.name)
    present = _verified_copy(final, file)
    if present is not None:
        _discard(part)
        return present
    failures: list[str] = []
    for mirror in mirrors:
        url = file_url(mirror, file.name)
        reason = ""
        # The deadline covers every attempt on this mirror, so that resuming cannot stretch it.
        deadline_at = time.monotonic() + fetcher.limits.deadline
        for _ in range(attempts):
            try:
                fetched = fetcher.fetch(url, part, file.name, deadline_at)
            except TransferError as e:
                reason = str(e)
                if e.progressed:
                    continue  # resume where this attempt stopped
                break
            try:
                blob = read_blob(part)
                check = verify_blob(blob, file)
            except DataError as e:
                check = Verification(False, "", None, _strip_source(str(e), str(part)))
            if check.ok and check.content_sha256:
                _install(part, final)
                return FileResult(file.name, final, "downloaded", check.method, check.content_sha256, len(blob),
                                  url, fetched.resumed_from, tuple(failures))
            # A refused file is never kept: not under its name, and not as a part to resume from.
            _discard(part)
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


def _verified_copy(final: Path, file: FileSpec) -> FileResult | None:
    """The result for a file already under its final name that verifies, else None (it is replaced)."""
    if not final.is_file():
        return None
    try:
        blob = read_blob(final)
    except DataError:  # unreadable or far too large: not a copy worth keeping
        return None
    check = verify_blob(blob, file)
    if not (check.ok and check.content_sha256):
        return None
    return FileResult(file.name, final, "present", check.method, check.content_sha256, len(blob))


def _discard(part: Path) -> None:
    try:
        part.unlink(missing_ok=True)
    except OSError:  # a part that cannot be removed is verified again before any use
        pass


def _install(part: Path, final: Path) -> None:
    """Give a verified part file its final name, durably: fsync the data, rename, fsync the directory.
    If that fails (full disk, no permission), the part is removed and nothing takes the name."""
    try:
        with open(part, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(part, final)
    except OSError as e:
        _discard(part)
        raise DataError(f"{final}: cannot write ({e.strerror or e}); nothing was installed") from None
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
        for line in read_checksum_lines(path):
            parts = line.split()
            if line.strip() and not (len(parts) == 2 and parts[1].lstrip("*") in ours):
                kept.append(line)
    lines = kept + [f"{r.content_sha256}  {r.name}" for r in results]
    try:
        write_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"))
    except OSError as e:
        # write_atomic leaves the old file (or none) and no temporary file behind.
        raise DataError(f"{path}: cannot write ({e.strerror or e}); the verified files are in place, "
                        "run the download again once it can be written") from None
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
        blob = read_blob(path)
    except DataError as e:
        return FileCheck(name, path, True, problem=_strip_source(str(e), str(path))), None
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
