"""Where a dataset's arrays come from: a directory of the four MNIST-format IDX files (gzip'd or raw,
under the standard names), or one Keras-style `.npz` (x_train, y_train, x_test, y_test).

Reading gathers the facts `registry` needs to say what the data is (content and archive hashes) before
any IDX file is parsed, so that a damaged file of a known dataset is reported as damaged, not as a
puzzling structural error. Everything here is untrusted input: files are read within the size bounds
of `idx`, and a `.npz` member's declared shape and dtype are checked before a byte of it is inflated.
"""

from __future__ import annotations

import hashlib
import io
import math
import mmap
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from bpcli.builtin import user_data_dir
from bpcli.data import cache
from bpcli.data.idx import GZIP_MAGIC, MAX_IDX_BYTES, decompress, idx_digest, parse_idx, read_blob
from bpcli.data.registry import DATASETS, FILES, ROLES, FileFacts
from bpcli.errors import DataError
from bpcli.files import npy_header

Array = np.ndarray

# The keys `keras.datasets.mnist.load_data` stores, by role.
NPZ_KEYS = {"train_images": "x_train", "train_labels": "y_train", "test_images": "x_test", "test_labels": "y_test"}
_GET = "get a dataset with `bpcli data download mnist --dir {path}`"


def raw_name(role: str) -> str:
    """The standard name of a role's uncompressed IDX file."""
    return FILES[role].removesuffix(".gz")


@dataclass
class Found:
    """The files of a dataset as read: facts for every role read, and the arrays (parsed on demand)."""

    path: Path  # the directory, or the .npz file
    kind: Literal["idx", "npz"]
    facts: dict[str, FileFacts]
    _contents: dict[str, tuple[bytes | mmap.mmap, Path]] = field(default_factory=dict)
    _arrays: dict[str, Array] = field(default_factory=dict)

    @property
    def sums_dir(self) -> Path:
        """The directory whose SHA256SUMS vouches for these files."""
        return self.path if self.kind == "idx" else self.path.parent

    def array(self, role: str) -> Array:
        if role not in self._arrays:
            content, path = self._contents.pop(role)
            self._arrays[role] = parse_idx(content, str(path))
        return self._arrays[role]


def read(path: str | Path, roles: tuple[str, ...] = ROLES) -> Found:
    """The files holding `roles` under `path` (a directory or a .npz), read and hashed; DataError when
    the path or a file is missing, unreadable or cannot be decompressed."""
    path = Path(path)
    if path.is_dir():
        return _read_directory(path, roles)
    if path.is_file():
        return _read_npz(path, roles)
    looked = (" (a relative data.path is looked for next to the config file and in the current directory)"
              if not path.is_absolute() else "")
    name = path.name if path.name in DATASETS else "mnist"
    # Where `data download` puts a known dataset by default needs no --dir (and data.path finds it there).
    download = (f"bpcli data download {name}" if path == user_data_dir() / name else
                f"bpcli data download {name} --dir {path}")
    raise DataError(f"data path {path} not found{looked}; get the data with `{download}`, or set data.path to a "
                    "directory of the four MNIST-format IDX files or a Keras-style .npz")


def locate(directory: Path, role: str) -> Path | None:
    """The file holding `role` in an IDX directory: the .gz or the raw file, whichever is there (None if
    neither); both at once is refused, since bpcli cannot know which one is meant."""
    gz, raw = directory / FILES[role], directory / raw_name(role)
    if gz.is_file() and raw.is_file():
        raise DataError(f"{directory}: both {raw.name} and {gz.name} are present; keep one of them (bpcli "
                        "would not know which one you mean)")
    return gz if gz.is_file() else raw if raw.is_file() else None


def _read_directory(directory: Path, roles: tuple[str, ...]) -> Found:
    located = {role: locate(directory, role) for role in roles}
    missing = [FILES[role] for role, p in located.items() if p is None]
    if missing:
        raise DataError(f"{directory}: missing {', '.join(missing)} (gzip'd, or raw without .gz); "
                        f"{_GET.format(path=directory)}")
    found = Found(directory, "idx", {})
    for role, p in located.items():
        assert p is not None
        found.facts[role], content = read_idx_file(role, p)
        found._contents[role] = (content, p)
    return found


def read_idx_file(role: str, path: Path) -> tuple[FileFacts, bytes | mmap.mmap]:
    """One IDX file's facts and its decompressed (not yet parsed) content.

    A gzip'd file is inflated once per user: later reads map the cached content (`cache`), found by
    the archive's SHA-256 and hashed again here, so the digest the registry judges is always that of
    the bytes returned.
    """
    blob = read_blob(path)
    archive = blob[:2] == GZIP_MAGIC
    archive_sha256 = hashlib.sha256(blob).hexdigest() if archive else None
    hit = cache.load(archive_sha256) if archive_sha256 else None
    if hit is not None:
        content, digest = hit
    else:
        content = decompress(blob, str(path))
        digest = hashlib.sha256(content).hexdigest()
        if archive_sha256:
            cache.store(archive_sha256, digest, content)
    facts = FileFacts(
        role, path.name, str(path), digest,
        # MD5 identifies a published archive here; it is not a security boundary.
        md5=hashlib.md5(blob, usedforsecurity=False).hexdigest() if archive else None,
        sha256=archive_sha256,
        sums_names=(path.name, FILES[role] if path.name != FILES[role] else raw_name(role)),
        sums_digest=digest,
    )
    return facts, content


def _read_npz(path: Path, roles: tuple[str, ...]) -> Found:
    blob = read_blob(path)
    file_digest = hashlib.sha256(blob).hexdigest()
    try:
        archive = zipfile.ZipFile(io.BytesIO(blob))
    except (zipfile.BadZipFile, OSError, ValueError):
        raise DataError(f"{path}: not a .npz file (no zip archive); data.path must name a directory of IDX files "
                        "or a Keras-style .npz") from None
    with archive:
        members = {name.removesuffix(".npy"): name for name in archive.namelist()}
        missing = [NPZ_KEYS[role] for role in roles if NPZ_KEYS[role] not in members]
        if missing:
            found_keys = ", ".join(sorted(members)[:8]) or "nothing"
            raise DataError(f"{path}: no {', '.join(missing)} in the .npz (it holds {found_keys}); a Keras-style "
                            "dataset has x_train, y_train, x_test and y_test")
        found = Found(path, "npz", {})
        for role in roles:
            array = _read_member(archive, members[NPZ_KEYS[role]], path)
            found._arrays[role] = array
            found.facts[role] = FileFacts(role, path.name, str(path), idx_digest(array), sums_names=(path.name,),
                                          sums_digest=file_digest)
    return found


def _read_member(archive: zipfile.ZipFile, member: str, path: Path) -> Array:
    """One array of a .npz, loaded without pickle and only after its header says it is a plain numeric
    array of at most MAX_IDX_BYTES."""
    where = f"{path}: {member.removesuffix('.npy')}"
    try:
        info = archive.getinfo(member)
        if info.file_size > MAX_IDX_BYTES + (1 << 16):
            raise DataError(f"{where}: {info.file_size} bytes, more than the {MAX_IDX_BYTES} bpcli reads from one "
                            "array")
        with archive.open(member) as f:
            shape, dtype = npy_header(f)
        if dtype.hasobject:
            raise DataError(f"{where}: an object array, which only pickle can load; bpcli loads .npz files with "
                            "allow_pickle=False (plain numeric arrays only), so it is refused")
        if dtype.kind not in "uif":
            raise DataError(f"{where}: dtype {dtype} is not numeric; images and labels must be numbers")
        size = math.prod(shape) * dtype.itemsize
        if size > MAX_IDX_BYTES:
            raise DataError(f"{where}: declares shape {shape} ({size} bytes), more than the {MAX_IDX_BYTES} bytes "
                            "bpcli reads from one array")
        with archive.open(member) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except DataError:
        raise
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        raise DataError(f"{where}: cannot read ({type(e).__name__}: {str(e)[:120]}); the file is damaged") from None
