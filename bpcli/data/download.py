"""Fetching MNIST-format datasets from their mirrors.

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
from dataclasses import dataclass
from pathlib import Path

from bpcli.data.idx import decompress, parse_idx, read_blob
from bpcli.data.mirrors import MIRRORS_ENV, file_url, resolve_mirrors
from bpcli.data.registry import DatasetSpec, FileSpec, dataset_spec, short
from bpcli.data.sums import read_sums, write_sums
from bpcli.errors import DataError, masked
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
        found.append(f"MD5 {short(md5)} (published {short(spec.md5)})")
    if spec.sha256 and sha256:
        found.append(f"SHA-256 {short(sha256)} (published {short(spec.sha256)})")
    if spec.content_sha256:
        found.append(f"content SHA-256 {short(content_sha256)} (published {short(spec.content_sha256)})")
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
                                  masked(url) or url, fetched.resumed_from, tuple(failures))
            # A refused file is never kept: not under its name, and not as a part to resume from.
            _discard(part)
            reason = check.problem
            if not fetched.resumed_from:
                break
            # The bad bytes may have come from an earlier, different transfer: start over once.
        failures.append(f"{masked(url)}: {reason}")  # a mirror URL may carry a password
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
    """Record the verified content SHA-256s in SHA256SUMS; lines an existing list has for other files
    are kept (an unreadable list is replaced: the files it would vouch for were verified just now)."""
    try:
        kept = read_sums(directory)
    except DataError:
        kept = None
    return write_sums(directory, {r.name: r.content_sha256 for r in results}, kept)


