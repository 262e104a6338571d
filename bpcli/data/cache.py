"""A per-user cache of decompressed IDX files, so that a gzip'd dataset is inflated once, not per run.

Inflating MNIST's training images costs about 0.2 s of every `bpcli train`; reading the same bytes
from a memory-mapped file costs almost nothing. The cache only ever saves decompression, never
verification:

- An entry is the raw IDX content of one archive, in `platformdirs.user_cache_path("bpcli")/idx/`,
  named `<SHA-256 of the .gz file>-<SHA-256 of the content>.idx`. The caller has hashed the archive
  it just read, so an entry is found by what the file on disk is, not by its name or date.
- On every load the entry's bytes are hashed again and must match the content SHA-256 in its name;
  that digest is what the registry then judges, exactly as for freshly inflated bytes. An entry that
  is unreadable, too large or whose bytes do not match is ignored (and replaced by the next `store`).
- Entries are written with `files.write_atomic` (temporary name, fsync, rename), so a crash never
  leaves a torn entry under a final name; a cache directory that cannot be written only makes the next
  run slower.

Everything here is best effort: a failure is never an error, just a miss.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
from pathlib import Path

from bpcli.data.idx import MAX_IDX_BYTES
from bpcli.files import write_atomic

_ENTRY = re.compile(r"^([0-9a-f]{64})-([0-9a-f]{64})\.idx$")


def directory() -> Path:
    """Where entries live: the per-user cache directory (XDG_CACHE_HOME on Linux)."""
    import platformdirs  # only when a gzip'd dataset is read

    return platformdirs.user_cache_path("bpcli", appauthor=False) / "idx"


def _entries(archive_sha256: str) -> list[Path]:
    try:
        with os.scandir(directory()) as it:
            return [Path(e.path) for e in it if e.name.startswith(archive_sha256 + "-") and _ENTRY.match(e.name)]
    except OSError:
        return []


def load(archive_sha256: str) -> tuple[mmap.mmap, str] | None:
    """The content of the archive with this SHA-256, memory-mapped, and its SHA-256 (recomputed from
    the mapped bytes and equal to the one the entry is named by); None when there is no good entry."""
    for path in _entries(archive_sha256):
        content_sha256 = _ENTRY.match(path.name).group(2)  # type: ignore[union-attr]
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if not 0 < size <= MAX_IDX_BYTES:
                    continue
                content = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            continue
        if hashlib.sha256(content).hexdigest() == content_sha256:
            return content, content_sha256
        content.close()  # damaged: ignored here, replaced by the caller's `store`
    return None


def store(archive_sha256: str, content_sha256: str, content: bytes) -> None:
    """Keep `content` (whose SHA-256 the caller computed) as the archive's entry, replacing any other
    entry for the same archive; silently nothing when the cache cannot be written."""
    target = directory() / f"{archive_sha256}-{content_sha256}.idx"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, content)
        for other in _entries(archive_sha256):
            if other != target:
                other.unlink(missing_ok=True)
    except OSError:
        pass
