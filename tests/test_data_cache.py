"""The cache of decompressed IDX files: a hit gives the same arrays without inflating anything, a
damaged entry is detected by its hash and rebuilt, and a cache that cannot be written costs only speed."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from bpcli.data import cache, load_test, source
from bpcli.errors import DataError


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home / "bpcli" / "idx"


def entries(directory: Path) -> dict[str, Path]:
    """Cache entries by the role whose archive they hold (the test files' names)."""
    return {p.name: p for p in directory.glob("*.idx")} if directory.is_dir() else {}


def no_decompression(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(blob: bytes, where: str) -> bytes:
        raise AssertionError(f"{where} was decompressed although its cache entry is good")

    monkeypatch.setattr(source, "decompress", refuse)


def test_a_hit_gives_identical_arrays_without_decompressing(mnist_dir, cache_home, monkeypatch):
    images, labels, identity = load_test(mnist_dir)
    made = entries(cache_home)
    assert len(made) == 2  # test images and test labels
    for path in made.values():
        content_sha256 = re.match(r"[0-9a-f]{64}-([0-9a-f]{64})\.idx$", path.name).group(1)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == content_sha256
    no_decompression(monkeypatch)
    images2, labels2, identity2 = load_test(mnist_dir)
    np.testing.assert_array_equal(images2, images)
    np.testing.assert_array_equal(labels2, labels)
    assert identity2 == identity and identity.status == "verified"


def test_a_damaged_entry_is_detected_and_rebuilt(mnist_dir, cache_home):
    images, labels, _ = load_test(mnist_dir)
    biggest = max(entries(cache_home).values(), key=lambda p: p.stat().st_size)
    good = biggest.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF  # a pixel: still a well-formed IDX file, only its hash tells
    biggest.write_bytes(bytes(damaged))
    images2, labels2, identity = load_test(mnist_dir)
    np.testing.assert_array_equal(images2, images)
    np.testing.assert_array_equal(labels2, labels)
    assert identity.status == "verified"
    assert biggest.read_bytes() == good  # rebuilt under the same name


@pytest.mark.parametrize("damage", ["truncated", "empty", "directory"])
def test_an_unreadable_entry_is_a_miss(mnist_dir, cache_home, damage):
    images, _, _ = load_test(mnist_dir)
    biggest = max(entries(cache_home).values(), key=lambda p: p.stat().st_size)
    if damage == "truncated":
        biggest.write_bytes(biggest.read_bytes()[:1000])
    elif damage == "empty":
        biggest.write_bytes(b"")
    else:
        biggest.unlink()
        biggest.mkdir()
    images2, _, _ = load_test(mnist_dir)
    np.testing.assert_array_equal(images2, images)


def test_an_entry_never_vouches_for_other_bytes(mnist_dir, cache_home, tmp_path):
    """An entry renamed to claim the content of another is ignored: the name's content hash must match."""
    load_test(mnist_dir)
    by_size = sorted(entries(cache_home).values(), key=lambda p: p.stat().st_size)
    labels_entry, images_entry = by_size
    # The labels archive's entry now holds the images' bytes under the labels' content hash.
    labels_entry.write_bytes(images_entry.read_bytes())
    _, labels, identity = load_test(mnist_dir)
    assert labels.shape == (10_000,) and identity.status == "verified"


def test_an_unwritable_cache_still_loads(mnist_dir, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # mkdir fails (also as root, unlike chmod)
    images, labels, identity = load_test(mnist_dir)
    assert images.shape == (10_000, 28, 28) and identity.status == "verified"


def test_a_failed_write_leaves_no_entry(mnist_dir, cache_home, monkeypatch):
    def disk_full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache, "write_atomic", disk_full)
    images, _, _ = load_test(mnist_dir)
    assert entries(cache_home) == {}
    monkeypatch.undo()


def test_a_damaged_archive_is_still_refused_with_a_good_cache(mnist_dir, cache_home, tmp_path):
    """The cache is found by the archive's hash: a different (damaged) archive never reaches an entry."""
    load_test(mnist_dir)
    copy = tmp_path / "mnist"
    copy.mkdir()
    for f in mnist_dir.glob("*.gz"):
        blob = bytearray(f.read_bytes())
        if f.name.startswith("t10k-images"):
            blob[len(blob) // 2] ^= 0xFF
        (copy / f.name).write_bytes(bytes(blob))
    with pytest.raises(DataError):
        load_test(copy)


def test_raw_idx_files_are_not_cached(mnist_dir, cache_home, tmp_path):
    import gzip

    raw = tmp_path / "raw"
    raw.mkdir()
    for f in mnist_dir.glob("t10k-*.gz"):
        (raw / f.name.removesuffix(".gz")).write_bytes(gzip.decompress(f.read_bytes()))
    load_test(raw, verify=False)
    assert entries(cache_home) == {}
