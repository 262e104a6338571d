"""Train, validation and test sets never share an example: by index on a dataset whose images spell out
their own index, and by content on real MNIST.

Why: a validation split that overlaps the training set has the right sizes and trains normally; only
its numbers are dishonest (validation accuracy measured on examples the network learned from, and
`best.npz` chosen by them). Checking sizes cannot see that; checking which examples went where can.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from bpcli.data import FILES, Dataset, Split, load_mnist

Array = np.ndarray
N_TRAIN, N_TEST = 300, 40


def idx_bytes(array: Array) -> bytes:
    """The IDX encoding of a uint8 array (element type 0x08)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def numbered_images(first: int, count: int) -> Array:
    """count 2 x 2 images; image k holds the number first + k in its first two pixels (base 256)."""
    numbers = np.arange(first, first + count)
    images = np.zeros((count, 2, 2), dtype=np.uint8)
    images[:, 0, 0], images[:, 0, 1] = numbers // 256, numbers % 256
    return images


@pytest.fixture(scope="module")
def numbered_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MNIST-format directory: training image i spells i, test image k spells 10_000 + k, and each
    label is the number mod 10, so every loaded row says which file row it came from."""
    directory = tmp_path_factory.mktemp("numbered")
    train, test = numbered_images(0, N_TRAIN), numbered_images(10_000, N_TEST)
    arrays = {"train_images": train, "train_labels": (np.arange(N_TRAIN) % 10).astype(np.uint8),
              "test_images": test, "test_labels": (np.arange(10_000, 10_000 + N_TEST) % 10).astype(np.uint8)}
    for key, array in arrays.items():
        (directory / FILES[key]).write_bytes(gzip.compress(idx_bytes(array), mtime=0))
    return directory


def numbers(s: Split) -> list[int]:
    """The number each row of a loaded split spells (pixels come back scaled to [0, 1])."""
    pixels = np.rint(s.x[:, :2] * 255).astype(np.int64)
    return list(pixels[:, 0] * 256 + pixels[:, 1])


def load(directory: Path, **options: int) -> Dataset:
    return load_mnist(directory, verify=False, **options)  # made-up files: no known checksums


def test_validation_and_training_are_a_partition_of_the_training_file(numbered_dir: Path) -> None:
    data = load(numbered_dir, validation_size=60, seed=0)
    train, val = numbers(data.train), numbers(data.validation)
    assert (len(train), len(val)) == (240, 60)
    assert not set(train) & set(val)
    assert sorted(train + val) == list(range(N_TRAIN))
    assert len(set(train)) == len(train) and len(set(val)) == len(val)  # no example twice within a split
    # The test file stays whole and apart.
    assert numbers(data.test) == list(range(10_000, 10_000 + N_TEST))
    # Labels stayed with their images.
    for s in (data.train, data.validation, data.test):
        assert list(s.labels) == [k % 10 for k in numbers(s)]
        assert np.array_equal(s.y.argmax(axis=1), s.labels)


def test_validation_is_a_seeded_random_draw_not_a_slice(numbered_dir: Path) -> None:
    picks = {seed: numbers(load(numbered_dir, validation_size=60, seed=seed).validation) for seed in (0, 1)}
    assert picks[0] == numbers(load(numbered_dir, validation_size=60, seed=0).validation)  # same seed, same split
    assert picks[0] != picks[1]
    # Drawn from the whole file, not its first or last rows.
    assert min(picks[0]) < 60 and max(picks[0]) >= N_TRAIN - 60
    assert picks[0] not in (list(range(60)), list(range(N_TRAIN - 60, N_TRAIN)))


def test_limit_takes_training_examples_outside_the_validation_split(numbered_dir: Path) -> None:
    full = load(numbered_dir, validation_size=60, seed=2)
    limited = load(numbered_dir, validation_size=60, seed=2, limit=100)
    train = numbers(limited.train)
    assert len(train) == 100 and numbers(limited.validation) == numbers(full.validation)
    assert set(train) <= set(numbers(full.train))
    assert not set(train) & set(numbers(limited.validation))


def test_no_validation_keeps_the_whole_training_file_in_order(numbered_dir: Path) -> None:
    data = load(numbered_dir, validation_size=0)
    assert numbers(data.train) == list(range(N_TRAIN)) and len(data.validation) == 0


# -- real MNIST ----------------------------------------------------------------------------------------


def rows(s: Split) -> list[bytes]:
    return [row.tobytes() for row in s.x]


def test_real_mnist_splits_are_disjoint_by_index_and_content(mnist_dir: Path) -> None:
    # MNIST's 60,000 training images are all different, and none is also a test image, so equal
    # bytes mean the same example: a row's position in the unsplit file is its index.
    whole = load_mnist(mnist_dir, validation_size=0)
    index = {row: i for i, row in enumerate(rows(whole.train))}
    assert len(index) == 60_000
    data = load_mnist(mnist_dir, validation_size=10_000, seed=0)
    train = [index[row] for row in rows(data.train)]
    val = [index[row] for row in rows(data.validation)]
    assert (len(train), len(val)) == (50_000, 10_000)
    assert not set(train) & set(val)
    assert sorted(train + val) == list(range(60_000))
    assert np.array_equal(data.train.labels, whole.train.labels[train])
    assert np.array_equal(data.validation.labels, whole.train.labels[val])
    test = set(rows(data.test))
    assert len(test) == 10_000 and not test & index.keys()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("source", [np.uint8, np.int16, np.float64])
def test_pixels_block_by_block_are_the_plain_formula_bit_for_bit(dtype: str, source: type) -> None:
    """`_pixels` gathers and scales in blocks; the numbers must be those of the one-line formula, for
    several blocks and a short last one, with rows in any order, and for all rows."""
    from bpcli.data import load as load_module

    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (3 * load_module._ROWS + 17, 4, 3)).astype(source)
    dt = np.dtype(dtype)
    scale = dt.type(1 / 255) if source is np.uint8 else dt.type(1.0)
    for rows in (rng.permutation(len(images))[: 2 * load_module._ROWS + 5], None):
        picked = images if rows is None else images[rows]
        expected = picked.reshape(len(picked), -1).astype(dt)
        expected *= scale
        got = load_module._pixels(images, rows, dt)
        assert got.dtype == dt and got.flags.c_contiguous
        np.testing.assert_array_equal(got, expected)
