"""SHA256SUMS: the checksums a data directory carries for itself, in `sha256sum` format.

Each line is "<64 hex digits>  <file name>" (a "*" before the name, binary mode, is allowed). For an
IDX file the digest is of its decompressed content, so that recompressing a file does not change it;
for a `.npz` it is of the file's bytes. Blank lines and lines starting with "#" are skipped.

A checksum list is a promise, so it is read strictly: an empty list, a line that is not a checksum, a
name listed twice, or a list that leaves out a file the dataset uses is an error naming the file and
line. A list that quietly covered nothing used to switch verification off without a word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bpcli.errors import DataError, clip
from bpcli.files import write_atomic

CHECKSUM_FILE = "SHA256SUMS"
# A checksum list is a few lines; anything this large is not one.
MAX_CHECKSUM_FILE = 1 << 20
_LINE = re.compile(r"([0-9A-Fa-f]{64}) [ *](\S.*)")


@dataclass(frozen=True)
class Entry:
    name: str
    digest: str  # lower-case hex
    line: int


@dataclass(frozen=True)
class Sums:
    """A parsed SHA256SUMS: its path and its entries by file name."""

    path: Path
    entries: dict[str, Entry]

    def entry(self, names: Iterable[str]) -> Entry | None:
        """The entry listing the first of `names` that is listed (a raw IDX file may be listed under its
        .gz name or the other way round: the digest is of the content either way)."""
        return next((self.entries[n] for n in names if n in self.entries), None)


def read_sums(directory: Path) -> Sums | None:
    """The directory's SHA256SUMS, or None when it has none; DataError for one that cannot be read,
    lists nothing, or has a line that is not a checksum."""
    path = directory / CHECKSUM_FILE
    if not path.exists():
        return None
    if not path.is_file():
        raise DataError(f"{path}: not a file; remove it, or make it the checksum list of the data files")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CHECKSUM_FILE + 1)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(raw) > MAX_CHECKSUM_FILE:
        raise DataError(f"{path}: larger than {MAX_CHECKSUM_FILE} bytes, not a checksum list")
    entries: dict[str, Entry] = {}
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        match = _LINE.fullmatch(text)
        if match is None:
            raise DataError(f"{path}:{number}: not a checksum line ({clip(text, 60)!r}); expected '<64 hex digits>  "
                            f"<file name>': fix or delete the line, or delete {CHECKSUM_FILE} and run "
                            f"`bpcli data verify {directory} --write`")
        digest, name = match.group(1).lower(), match.group(2)
        if name in entries:
            raise DataError(f"{path}:{number}: {clip(name, 60)} is already listed on line {entries[name].line}; "
                            "keep one line per file")
        entries[name] = Entry(name, digest, number)
    if not entries:
        raise DataError(f"{path}: lists no files, so it would verify nothing; delete it, or record the data "
                        f"files' checksums with `bpcli data verify {directory} --write`")
    return Sums(path, entries)


def write_sums(directory: Path, digests: Mapping[str, str], kept: Sums | None = None) -> Path:
    """Write SHA256SUMS (atomically) listing `digests` by file name, after the lines of `kept` that
    name other files; DataError when it cannot be written."""
    path = directory / CHECKSUM_FILE
    lines = [f"{e.digest}  {e.name}" for e in (kept.entries.values() if kept else ()) if e.name not in digests]
    lines += [f"{digest}  {name}" for name, digest in digests.items()]
    try:
        write_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"))
    except OSError as e:
        # write_atomic leaves the old file (or none) and no temporary file behind.
        raise DataError(f"{path}: cannot write ({e.strerror or e}); nothing was recorded") from None
    return path
