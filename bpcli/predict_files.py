"""`bpcli predict` on IDX and `.npz` files of many images already in the dataset's form (no
preprocessing: they must be the network's side × side): one row per image with its top classes, and
the true label and the accuracy when the file has labels. Image files are bpcli/predict.py's."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from bpcli.data.idx import GZIP_MAGIC, decompress, parse_idx, read_blob
from bpcli.data.load import check_pixels
from bpcli.errors import DataError, UsageError
from bpcli.predict import Model, top_classes

Array = np.ndarray

NPZ_IMAGES = ("x_test", "images", "x", "x_train")
NPZ_LABELS = {"x_test": "y_test", "images": "labels", "x": "y", "x_train": "y_train"}


def is_batch_file(path: Path) -> bool:
    """An IDX file (raw or gzip'd) or a .npz: images already in the dataset's form, not an image file."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head[:2] == GZIP_MAGIC or head == b"PK\x03\x04" or (len(head) == 4 and head[:2] == b"\0\0"
                                                               and head[2] in (0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E))


def read_batch(path: Path) -> tuple[Array, Array | None, str | None]:
    """Images (N, h, w), labels (N,) or None, and why labels that are there were not used, from an IDX
    images file (with the labels file of the standard name beside it, if there) or a .npz (the arrays
    x_test and y_test of a Keras-style dataset, images and labels, x and y, or a single array of images)."""
    blob = read_blob(path)
    labels = None
    if blob[:4] == b"PK\x03\x04":
        from bpcli.data.source import _read_member  # the checked, pickle-free reader of one .npz array

        try:
            archive = zipfile.ZipFile(io.BytesIO(blob))
        except (zipfile.BadZipFile, OSError, ValueError):
            raise DataError(f"{path}: not a readable .npz file") from None
        with archive:
            members = {name.removesuffix(".npy"): name for name in archive.namelist() if name.endswith(".npy")}
            key = next((k for k in NPZ_IMAGES if k in members), None)
            if key is None and len(members) == 1:
                key = next(iter(members))
            if key is None:
                held = ", ".join(sorted(members)[:8]) or "nothing"
                raise DataError(f"{path}: which array holds the images? expected x_test, images or x (it holds "
                                f"{held})")
            images = _read_member(archive, members[key], path)
            label_key = NPZ_LABELS.get(key)
            if label_key in members:
                labels = _read_member(archive, members[label_key], path)
    else:
        images = parse_idx(decompress(blob, str(path)), str(path))
        # The labels beside a standard images file: t10k-images-idx3-ubyte[.gz] -> t10k-labels-idx1-ubyte[.gz].
        beside = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
        if beside != path and beside.is_file():
            labels = parse_idx(decompress(read_blob(beside), str(beside)), str(beside))
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or images.shape[0] == 0:
        raise DataError(f"{path}: expected images of shape (N, height, width), found {images.shape}")
    ignored = None
    if labels is not None and (labels.ndim != 1 or len(labels) != len(images) or labels.dtype.kind not in "iu"):
        ignored = (f"its labels are not used: {len(labels):,} of {labels.dtype} in {labels.ndim} dimension"
                   f"{'s' * (labels.ndim != 1)} for {len(images):,} images (expected one whole number each)")
        labels = None
    return images, labels, ignored


def predict_batch(model: Model, path: Path) -> tuple[list[dict[str, Any]], float | None, list[str]]:
    """One row per image of an IDX/.npz file: index, the top classes and, when the file has labels, the
    true label; the accuracy when it has them; and notes on its labels. Pixels are read as the loaders
    read them: uint8 / 255, other types as they are; they must already be side × side (no preprocessing)."""
    images, labels, ignored = read_batch(path)
    notes = [f"{path}: {ignored}"] if ignored else []
    if labels is not None:
        unknown = int(np.count_nonzero((labels < 0) | (labels >= len(model.class_names))))
        if unknown:
            notes.append(f"{path}: {unknown:,} label{'s' * (unknown != 1)} outside 0..{len(model.class_names) - 1}"
                         ", the network's classes: those images count as wrong")
    side = model.shape
    if images.shape[1:] != side:
        raise UsageError(f"{path}: images of {images.shape[1]}×{images.shape[2]} pixels, but the network takes "
                         f"{side[0]}×{side[1]} ({model.net.sizes[0]} inputs)")
    check_pixels(images, str(path))
    x = images.reshape(len(images), -1).astype(np.float64)
    if images.dtype == np.uint8:
        x /= 255.0
    ks, ss = top_classes(model, x)
    key = "probability" if model.probability else "output"
    rows = []
    for i in range(len(images)):
        row: dict[str, Any] = {"index": i}
        if labels is not None:
            known = 0 <= labels[i] < len(model.class_names)
            row["true"] = model.class_names[int(labels[i])] if known else str(labels[i])
        for r in range(ks.shape[1]):
            suffix = f"_{r + 1}" if r else ""
            row[f"class{suffix}"] = model.class_names[int(ks[i, r])]
            row[f"{key}{suffix}"] = float(f"{ss[i, r]:.6g}")
        rows.append(row)
    accuracy = float((ks[:, 0] == labels).mean()) if labels is not None else None
    return rows, accuracy, notes


def rows_text(rows: list[dict[str, Any]], fmt: str) -> str:
    """Rows as CSV (a header line, then one line per image) or JSON lines."""
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows)
    import csv

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["index"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
