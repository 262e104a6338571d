"""IDX, the MNIST file format: parsing and checking one file, gzip'd or raw, within size bounds.

IDX is big-endian: two zero bytes, one element-type byte, one byte giving the number of dimensions d,
then d 32-bit sizes, then the elements in row-major order. Files may be gzip compressed. Every way a
file can be malformed raises `DataError` with a message naming the file, and no file costs more memory
than its header declares (bounded in turn by MAX_IDX_BYTES).

This module knows the format only: which dataset a file belongs to is `registry`'s business.
"""

from __future__ import annotations

import hashlib
import math
import zlib
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


MAX_IDX_DIMS = 4


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
    if ndim > MAX_IDX_DIMS:  # the format allows 255; images are 3, labels 1, and NumPy stops at 64
        raise DataError(f"{source}: IDX header declares {ndim} dimensions; bpcli reads files of 1 to "
                        f"{MAX_IDX_DIMS} (labels 1, images 3)")
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


def idx_digest(array: Array) -> str | None:
    """SHA-256 of the IDX file that would store `array`, without writing it: the content identity of an
    array that came from somewhere else (a `.npz`). Integer arrays whose values all fit 0..255 count as
    unsigned bytes, as the MNIST-format files store them; None for a dtype IDX cannot store."""
    if array.dtype.kind in "iu" and (array.size == 0 or (array.min() >= 0 and array.max() <= 255)):
        array = array.astype(np.uint8, copy=False)
    code = next((c for c, t in IDX_TYPES.items() if t.kind == array.dtype.kind
                 and t.itemsize == array.dtype.itemsize), None)
    if code is None or array.ndim > 255 or any(d >= 1 << 32 for d in array.shape):
        return None
    digest = hashlib.sha256(bytes([0, 0, code, array.ndim]))
    digest.update(b"".join(int(d).to_bytes(4, "big") for d in array.shape))
    digest.update(np.ascontiguousarray(array, dtype=IDX_TYPES[code]).data)
    return digest.hexdigest()
