"""IDX files and MNIST-format datasets: reading, checking, splitting.

IDX (the MNIST file format) is big-endian: two zero bytes, one element-type byte, one byte giving the
number of dimensions d, then d 32-bit sizes, then the elements in row-major order. Files may be gzip
compressed. Every way a file can be malformed raises `DataError` with a message naming the file, and
no file costs more memory than its header declares (bounded in turn by MAX_IDX_BYTES).
"""

from __future__ import annotations

import hashlib
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bpcli.errors import DataError

Array = np.ndarray

# Element-type byte -> big-endian NumPy dtype, as the IDX format defines them.
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

# SHA-256 of the *decompressed* files: independent of how a mirror compressed them.
KNOWN_SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
}

# A directory may carry its own checksums (for datasets bpcli does not know) in this file, in the
# format of `sha256sum`: "<hex digest>  <file name>", digests of the decompressed bytes.
CHECKSUM_FILE = "SHA256SUMS"

# The most one IDX file may hold once decompressed (the largest MNIST-format sets are about half of
# this); a header declaring more is refused before anything is inflated.
MAX_IDX_BYTES = 1 << 30
# A gzip'd file is at most a little larger than its content (stored blocks cost 5 bytes per 64 KiB).
MAX_FILE_BYTES = MAX_IDX_BYTES + (MAX_IDX_BYTES >> 8)
# The longest IDX header: magic, type, count, and 255 sizes of 4 bytes.
MAX_HEADER = 4 + 4 * 255
# Compressed bytes handed to zlib per call.
INFLATE_SLICE = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
# SHA256SUMS is a few lines; anything this large is not one.
MAX_CHECKSUM_FILE = 1 << 20

# Labels index the one-hot columns: anything larger is a damaged file, not a 10-billion-class problem.
MAX_LABEL = 255


def decompress(blob: bytes, source: str) -> bytes:
    """The IDX bytes of a file's content: gunzipped if it starts with the gzip magic, else as is.

    A gzip stream is never inflated past what its content may be: the IDX header is inflated first,
    and then at most the size it declares plus one byte (to tell that there is more), so a small file
    that expands to gigabytes (a "gzip bomb") costs no more than the file its header describes.
    """
    if blob[:2] != GZIP_MAGIC:
        return blob
    try:
        size, shape = _declared_size(b"".join(_gunzip(blob, MAX_HEADER, source)), source)
        pieces = _gunzip(blob, size + 1, source)
        if sum(map(len, pieces)) > size:
            raise DataError(f"{source}: gzip stream expands to more than the {size} bytes its IDX header "
                            f"declares (dimensions {shape}); refused without decompressing the rest")
        return b"".join(pieces)
    except MemoryError:
        raise DataError(f"{source}: not enough memory to decompress the file") from None


def _gunzip(blob: bytes, limit: int, source: str) -> list[bytes]:
    """Inflate the gzip members in `blob`, stopping at `limit` bytes of output (`limit` >= 1), in
    pieces (joined only once they are known to be wanted).

    Shorter than `limit` in all only when the whole stream was inflated and every member's CRC and
    length checked (zlib does that in gzip mode). The input goes to zlib in slices so that the copies
    it makes of unconsumed input stay small however many members a file has.
    """
    view = memoryview(blob)
    out: list[bytes] = []
    size = pos = 0
    inflater = None  # the current member's decompressor; None between members
    while size < limit:
        if inflater is None:
            pos = _skip_zeros(blob, pos)  # gzip allows zero padding after a member
            if pos == len(blob):
                break
            if blob[pos:pos + 2] != GZIP_MAGIC:
                raise _corrupted(source, "trailing bytes after the gzip stream")
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        piece_in = view[pos:pos + INFLATE_SLICE]
        try:
            piece = inflater.decompress(piece_in, limit - size)  # max_length > 0 here: 0 means no limit
        except zlib.error as e:
            raise _corrupted(source, str(e)) from None
        consumed = len(piece_in) - len(inflater.unconsumed_tail) - len(inflater.unused_data)
        out.append(piece)
        size += len(piece)
        pos += consumed
        if inflater.eof:
            inflater = None
        elif size < limit and (pos >= len(blob) or not (consumed or piece)):
            raise _corrupted(source, "the file ends before the end-of-stream marker")
    return out


def _skip_zeros(blob: bytes, pos: int) -> int:
    """The first position at or after `pos` that does not hold a zero byte (or the end)."""
    while pos < len(blob):
        piece = blob[pos:pos + INFLATE_SLICE]
        skipped = len(piece) - len(piece.lstrip(b"\x00"))
        pos += skipped
        if skipped < len(piece):
            break
    return pos


def _corrupted(source: str, why: str) -> DataError:
    return DataError(f"{source}: corrupted gzip stream ({why}); download the file again")


def _declared_size(head: bytes, source: str) -> tuple[int, str]:
    """The total size (header and data) that an IDX header declares, and its dimensions as text;
    more than MAX_IDX_BYTES is refused."""
    dtype, dims, header = _idx_header(head, source)
    size = header + math.prod(dims) * dtype.itemsize
    shape = " x ".join(map(str, dims))
    if size > MAX_IDX_BYTES:
        raise DataError(f"{source}: IDX header declares dimensions {shape} ({size} bytes), more than the "
                        f"{MAX_IDX_BYTES} bytes bpcli reads from one file")
    return size, shape


def _idx_header(data: bytes, source: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """The element type, the dimensions and the header length of IDX bytes (which may be only a prefix)."""
    if len(data) < 4:
        raise DataError(f"{source}: truncated IDX file: {len(data)} bytes, a header needs at least 4")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{source}: not an IDX file: magic number starts {data[:2].hex()}, expected 0000")
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_TYPES)
        raise DataError(f"{source}: unknown IDX element type 0x{type_code:02X} (known: {known})")
    if ndim == 0:
        raise DataError(f"{source}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: truncated IDX header: {len(data)} bytes, {ndim} dimensions need {header}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    return IDX_TYPES[type_code], dims, header


def parse_idx(data: bytes, source: str = "<idx>") -> Array:
    """The array stored in IDX bytes, in native byte order, after checking the header against the length."""
    dtype, dims, header = _idx_header(data, source)
    # Python integers: np.prod in int64 wraps around for a crafted header (65536^4 -> 0).
    expected = math.prod(dims) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        shape = " x ".join(map(str, dims))
        problem = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"{source}: IDX file {problem}: dimensions {shape} need {expected} data bytes, found {actual}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def read_blob(path: Path) -> bytes:
    """The bytes of a data file, refusing one larger than any IDX file bpcli accepts (a huge file is
    not read into memory only to be refused afterwards)."""
    try:
        with open(path, "rb") as f:
            blob = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(blob) > MAX_FILE_BYTES:
        raise DataError(f"{path}: larger than the {MAX_FILE_BYTES} bytes bpcli reads from one data file")
    return blob


def read_idx(path: str | Path, sha256: str | None = None) -> Array:
    """Read an IDX file (gzip or raw); if `sha256` is given, check the decompressed bytes against it."""
    path = Path(path)
    data = decompress(read_blob(path), str(path))
    if sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise DataError(
                f"{path}: checksum mismatch: SHA-256 of the content is {digest[:16]}..., expected "
                f"{sha256[:16]}...; the file is damaged or not the expected dataset: download it again"
            )
    return parse_idx(data, str(path))


def expected_checksums(directory: Path) -> dict[str, str | None]:
    """The SHA-256 each of the four files must have: from the directory's SHA256SUMS if it has one,
    otherwise from the first known dataset whose file names match (MNIST); None where unknown."""
    sums_file = directory / CHECKSUM_FILE
    if sums_file.is_file():
        sums: dict[str, str] = {}
        for line in read_checksum_lines(sums_file):
            parts = line.split()
            if len(parts) == 2:
                sums[parts[1].lstrip("*")] = parts[0].lower()
        return {name: sums.get(name) for name in FILES.values()}
    return {name: KNOWN_SHA256["mnist"][name] for name in FILES.values()}


def read_checksum_lines(path: Path) -> list[str]:
    """The lines of a SHA256SUMS file, refusing one that cannot be read or is too large to be one."""
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_CHECKSUM_FILE + 1)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(text) > MAX_CHECKSUM_FILE:
        raise DataError(f"{path}: larger than {MAX_CHECKSUM_FILE} bytes, not a checksum list")
    return text.decode("utf-8", errors="replace").splitlines()


@dataclass
class Split:
    """Examples as rows: x (N, n_1) in [0, 1], y one-hot (N, classes), labels (N,) integers."""

    x: Array
    y: Array
    labels: Array

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    train: Split
    validation: Split
    test: Split
    classes: int

    @property
    def input_size(self) -> int:
        return self.train.x.shape[1]


def one_hot(labels: Array, classes: int, dtype: np.dtype | type = np.float32) -> Array:
    y = np.zeros((len(labels), classes), dtype=dtype)
    y[np.arange(len(labels)), labels] = 1
    return y


def _split(images: Array, labels: Array, classes: int, dtype: np.dtype) -> Split:
    x = images.reshape(len(images), math.prod(images.shape[1:])).astype(dtype)
    x *= dtype.type(1.0 / 255.0) if images.dtype == np.uint8 else 1.0
    return Split(x, one_hot(labels, classes, dtype), labels.astype(np.int64))


def load_mnist(
    directory: str | Path,
    validation_size: int = 10_000,
    seed: int = 0,
    dtype: str | np.dtype = "float32",
    limit: int = 0,
    verify: bool = True,
) -> Dataset:
    """Load an MNIST-format dataset: pixels scaled to [0, 1], one-hot targets, a seeded split of the
    training set into train and validation, the test set kept apart.

    `limit` > 0 keeps only that many training examples (after the validation split), for quick runs.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(
            f"data directory {directory} not found; get MNIST with `bpcli data download mnist --dir {directory}` "
            "or set data.path to a directory holding the four MNIST-format .gz files"
        )
    missing = [name for name in FILES.values() if not (directory / name).is_file()]
    if missing:
        raise DataError(
            f"{directory}: missing {', '.join(missing)}; get them with `bpcli data download mnist --dir {directory}`"
        )
    sums = expected_checksums(directory) if verify else {}
    arrays = {key: read_idx(directory / name, sums.get(name)) for key, name in FILES.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        image_file, label_file = directory / FILES[f"{part}_images"], directory / FILES[f"{part}_labels"]
        if images.ndim < 2 or labels.ndim != 1:
            raise DataError(f"{image_file}, {label_file}: {part} images must have 2+ dimensions and labels 1, "
                            f"got {images.ndim} and {labels.ndim}")
        if len(images) != len(labels):
            raise DataError(f"{image_file}: {len(images)} {part} images but {label_file.name} has {len(labels)} labels")
    for key in ("train_labels", "test_labels"):
        labels = arrays[key]
        if labels.dtype.kind not in "iu":  # a float label cannot index a one-hot column
            raise DataError(f"{directory / FILES[key]}: labels must be integers, the file stores {labels.dtype}")
        bad = labels[(labels < 0) | (labels > MAX_LABEL)]
        if bad.size:
            raise DataError(f"{directory / FILES[key]}: label {int(bad[0])} out of range: labels must be 0..{MAX_LABEL}")
    classes = int(max(arrays["train_labels"].max(initial=0), arrays["test_labels"].max(initial=0))) + 1
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(f"{directory}: train images are {arrays['train_images'].shape[1:]} "
                        f"but test images {arrays['test_images'].shape[1:]}")
    n = len(arrays["train_labels"])
    if validation_size >= n:
        raise DataError(f"data.validation_size {validation_size} leaves no training examples (the set has {n})")
    dtype = np.dtype(dtype)
    # Split on the uint8 images, before scaling, so float copies are made once.
    order = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(order[:validation_size]), np.sort(order[validation_size:])
    if limit:
        train_idx = train_idx[:limit]
    images, labels = arrays["train_images"], arrays["train_labels"]
    return Dataset(
        train=_split(images[train_idx], labels[train_idx], classes, dtype),
        validation=_split(images[val_idx], labels[val_idx], classes, dtype),
        test=_split(arrays["test_images"], arrays["test_labels"], classes, dtype),
        classes=classes,
    )
