"""A dataset path (a directory of IDX files, or a `.npz`) -> a checked, identified, split `Dataset`.

The order matters: read and hash the files (`source`), let `registry` say what they are or refuse
them (with `verify`, per the directory's SHA256SUMS and the known datasets), and only then parse and
check their structure. Image size and class count come from the data, never from a constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bpcli.data import source
from bpcli.data.idx import MAX_LABEL
from bpcli.data.registry import ROLES, UNKNOWN, Identity, identify, judge
from bpcli.data.sums import read_sums
from bpcli.errors import DataError

Array = np.ndarray


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
    identity: Identity = UNKNOWN
    image_shape: tuple[int, ...] = ()  # of one example as stored (28, 28), before flattening

    @property
    def input_size(self) -> int:
        return self.train.x.shape[1]

    @property
    def class_names(self) -> tuple[str, ...]:
        """Label k's name: the known dataset's, else the label itself."""
        names = self.identity.class_names
        return names if len(names) == self.classes else tuple(str(k) for k in range(self.classes))


def one_hot(labels: Array, classes: int, dtype: np.dtype | type = np.float32) -> Array:
    y = np.zeros((len(labels), classes), dtype=dtype)
    y[np.arange(len(labels)), labels] = 1
    return y


# Rows converted per step of `_pixels`: 4096 MNIST rows are 3 MB of uint8, a step that stays in cache.
_ROWS = 4096


def _pixels(images: Array, rows: Array | None, dtype: np.dtype) -> Array:
    """x = images[rows] as (N, n_1) in `dtype`, uint8 pixels scaled by 1/255 (other types as they are).

    Gathered, converted and scaled a block of rows at a time straight into x, so the gathered uint8
    copy of the whole split (43 MB for MNIST's training set) never exists: loading set a run's peak
    memory once evaluation stopped doing so. The numbers are those of images[rows].astype(dtype) *
    (1/255 in dtype): uint8 converts exactly, and the product is the same single rounding.
    """
    n = len(images) if rows is None else len(rows)
    flat = images.reshape(len(images), math.prod(images.shape[1:]))
    x = np.empty((n, flat.shape[1]), dtype)
    scale = dtype.type(1.0 / 255.0) if images.dtype == np.uint8 else dtype.type(1.0)
    for i in range(0, n, _ROWS):
        block = flat[i : i + _ROWS] if rows is None else flat[rows[i : i + _ROWS]]
        np.multiply(block, scale, out=x[i : i + _ROWS], dtype=dtype)
    return x


def _split(images: Array, labels: Array, classes: int, dtype: np.dtype, rows: Array | None = None) -> Split:
    """The examples `rows` of (images, labels) (all if None) as a Split in `dtype`."""
    labels = labels if rows is None else labels[rows]
    return Split(_pixels(images, rows, dtype), one_hot(labels, classes, dtype), labels.astype(np.int64))


def read_identified(path: str | Path, roles: tuple[str, ...] = ROLES,
                    verify: bool = True) -> tuple[dict[str, Array], Identity, source.Found]:
    """The arrays of `roles` under `path`, checked for structure, and what the dataset is (DataError when
    `verify` and nothing vouches for the files; see `registry.identify`)."""
    found = source.read(path, roles)
    sums = read_sums(found.sums_dir) if verify else None
    identity = identify(judge(list(found.facts.values()), sums), sums, verify, str(found.path))
    arrays = {role: found.array(role) for role in roles}
    check_structure(found, arrays)
    return arrays, identity, found


def _where(found: source.Found, role: str) -> str:
    return found.facts[role].path if found.kind == "idx" else f"{found.path}: {source.NPZ_KEYS[role]}"


def check_structure(found: source.Found, arrays: dict[str, Array]) -> None:
    """Images with 2+ dimensions, one integer label in 0..MAX_LABEL per image, all images one shape."""
    for part in ("train", "test"):
        images, labels = arrays.get(f"{part}_images"), arrays.get(f"{part}_labels")
        if images is None or labels is None:
            continue
        image_file, label_file = _where(found, f"{part}_images"), _where(found, f"{part}_labels")
        if images.ndim < 2 or labels.ndim != 1:
            raise DataError(f"{image_file}, {label_file}: {part} images must have 2+ dimensions and labels 1, "
                            f"got {images.ndim} and {labels.ndim}")
        if len(images) != len(labels):
            raise DataError(f"{image_file}: {len(images)} {part} images but {Path(label_file).name} has "
                            f"{len(labels)} labels")
    for role in ("train_labels", "test_labels"):
        labels = arrays.get(role)
        if labels is None:
            continue
        if labels.dtype.kind not in "iu":  # a float label cannot index a one-hot column
            raise DataError(f"{_where(found, role)}: labels must be integers, the file stores {labels.dtype}")
        bad = labels[(labels < 0) | (labels > MAX_LABEL)]
        if bad.size:
            raise DataError(f"{_where(found, role)}: label {int(bad[0])} out of range: labels must be 0..{MAX_LABEL}")
    for role in ("train_images", "test_images"):
        if arrays.get(role) is not None:
            check_pixels(arrays[role], _where(found, role))
    train, test = arrays.get("train_images"), arrays.get("test_images")
    if train is not None and test is not None and train.shape[1:] != test.shape[1:]:
        raise DataError(f"{found.path}: train images are {train.shape[1:]} but test images {test.shape[1:]}")


MAX_PIXEL = 1e6  # |x| above this is no image: 1e300 overflowed float32 and read as a diverging learning rate


def check_pixels(images: Array, where: str) -> None:
    """Float images must be finite and within ±MAX_PIXEL (integer types always are: uint8 is 0..255)."""
    if images.dtype.kind not in "fc" or images.size == 0:
        return
    if not np.isfinite(images).all():
        raise DataError(f"{where}: the images hold NaN or infinite values")
    largest = float(np.abs(images).max())
    if largest > MAX_PIXEL:
        raise DataError(f"{where}: pixel values as large as {largest:.3g} are no image; expected uint8 0..255 or "
                        f"numbers within ±{MAX_PIXEL:g} (the loaders scale uint8 to 0..1)")


def class_count(identity: Identity, *labels: Array) -> int:
    """The number of classes: the known dataset's, else one more than the largest label."""
    largest = max((int(part.max(initial=0)) for part in labels), default=0)
    return max(len(identity.class_names), largest + 1)


def load_dataset(
    path: str | Path,
    validation_size: int = 10_000,
    seed: int = 0,
    dtype: str | np.dtype = "float32",
    limit: int = 0,
    verify: bool = True,
) -> Dataset:
    """Load a dataset: pixels scaled to [0, 1] (uint8 images; other types are taken as they are), one-hot
    targets, a seeded split of the training set into train and validation, the test set kept apart.

    `limit` > 0 keeps only that many training examples (after the validation split), for quick runs.
    `verify` False accepts files nothing vouches for (the identity then says "unverified").
    """
    arrays, identity, _ = read_identified(path, ROLES, verify)
    classes = class_count(identity, arrays["train_labels"], arrays["test_labels"])
    n = len(arrays["train_labels"])
    if validation_size >= n:
        raise DataError(f"data.validation_size {validation_size} leaves no training examples (the set has {n})")
    dtype = np.dtype(dtype)
    # Split on the stored (uint8) images, before scaling, so float copies are made once.
    order = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(order[:validation_size]), np.sort(order[validation_size:])
    if limit:
        train_idx = train_idx[:limit]
    images, labels = arrays["train_images"], arrays["train_labels"]
    return Dataset(
        train=_split(images, labels, classes, dtype, train_idx),
        validation=_split(images, labels, classes, dtype, val_idx),
        test=_split(arrays["test_images"], arrays["test_labels"], classes, dtype),
        classes=classes,
        identity=identity,
        image_shape=tuple(images.shape[1:]),
    )


def load_test(path: str | Path, verify: bool = True) -> tuple[Array, Array, Identity]:
    """Only the test images and labels (as stored) and the dataset's identity, judged on those files:
    for a single example, without reading the training set."""
    arrays, identity, _ = read_identified(path, ("test_images", "test_labels"), verify)
    return arrays["test_images"], arrays["test_labels"], identity

