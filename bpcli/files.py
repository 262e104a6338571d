"""Writing files so that a crash, a full disk or a signal never leaves a torn or half-visible one.

Every file bpcli writes goes through `write_atomic`: a temporary name in the same directory, flushed
and fsynced, then renamed over the final name. The temporary names share one pattern, so leftovers of
a killed process can be found and removed (`remove_stale_temporaries`).
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import IO

import numpy as np

from bpcli.errors import UsageError

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def open_regular(path: str | Path, flags: int = os.O_RDONLY, mode: int = 0o666) -> int:
    """os.open for a regular file only: a FIFO opens without waiting for a writer (O_NONBLOCK), and any
    file that is not regular (FIFO, device, socket, directory) is refused with OSError(EINVAL). A FIFO
    where a run's lock or record should be made `bpcli runs` wait forever; /dev/zero, read forever."""
    fd = os.open(path, flags | os.O_NONBLOCK, mode)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    os.set_blocking(fd, True)
    return fd


def read_regular(path: str | Path, limit: int) -> bytes:
    """At most `limit` bytes of a regular file (OSError for anything else, see `open_regular`)."""
    with os.fdopen(open_regular(path), "rb") as f:
        return f.read(limit)


def refuse_to_replace(path: str | Path, force: bool, option: str) -> None:
    """A file the user names for output (`--out FILE`, `--json FILE`) is never replaced without --force:
    it may be a result they keep (as `bpcli train` and `bpcli init` refuse an existing run or config).
    Called before any work, so a refusal costs nothing."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        # A device, FIFO or socket: the atomic rename would replace it (/dev/full became a plain file).
        raise UsageError(f"{option} {path}: not a regular file; give a file name")
    if not force and (path.is_file() or path.is_symlink()):
        raise UsageError(f"{option} {path}: the file exists; pass --force to replace it, or give another name")


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves the old file or the new one, never a torn one:
    temporary file in the same directory, flush, fsync, rename.

    The file gets the mode an ordinary `open(path, "w")` would give (0666 less the umask): mkstemp
    makes its files 0600, which left run files unreadable to the group a user shares them with.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stale_temporaries(directory: Path) -> list[Path]:
    """Temporary files `write_atomic` left in `directory` when its process was killed mid-write."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX)
                  and p.is_file())


def npy_header(f: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the .npy stream `f` from its header alone, before any data is read, so that a
    crafted file declaring terabytes or pickled objects is judged before it costs anything. ValueError
    for a format other than 1.0 and 2.0 (the ones NumPy writes without pickle); `f` is left at the data.
    """
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported (1.0, 2.0)")
    return tuple(int(n) for n in shape), dtype
