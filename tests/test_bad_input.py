"""Every malformed input a user can hand bpcli: IDX files and datasets (`DataError` naming the file)
and config files (`ConfigError` naming the field, with file:line where the loader knows it).

Datasets here are tiny generated MNIST-shaped directories, not copies of the real files.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from bpcli import config
from bpcli.data import CHECKSUM_FILE, FILES, decompress, load_mnist, parse_idx, read_idx
from bpcli.errors import ConfigError, DataError

# Element-type byte and big-endian dtype, as the IDX format defines them.
IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of `array` (its dtype must be one IDX knows)."""
    array = np.asarray(array)
    code = IDX_CODES[array.dtype.kind + str(array.dtype.itemsize)]
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def tiny_arrays(n_train: int = 30, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, size=(n_train, 4, 4), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(n_test, 4, 4), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }


def write_dataset(directory: Path, arrays: dict[str, np.ndarray] | None = None,
                  raw: dict[str, bytes] | None = None) -> Path:
    """A dataset directory: the four files gzip'd, and a SHA256SUMS matching their content, so each
    test reaches the check it is about rather than failing on a checksum first."""
    directory.mkdir(parents=True, exist_ok=True)
    contents = {key: idx_bytes(a) for key, a in (arrays or tiny_arrays()).items()}
    contents.update(raw or {})
    sums = []
    for key, content in contents.items():
        (directory / FILES[key]).write_bytes(gzip.compress(content, mtime=0))
        sums.append(f"{hashlib.sha256(content).hexdigest()}  {FILES[key]}")
    (directory / CHECKSUM_FILE).write_text("\n".join(sums) + "\n")
    return directory


def assert_one_line(error: pytest.ExceptionInfo[BaseException], *needles: str) -> str:
    text = str(error.value)
    assert "\n" not in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"
    return text


# -- IDX bytes -------------------------------------------------------------------------------------------

GOOD = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


def test_good_idx_round_trips() -> None:
    assert parse_idx(GOOD).tolist() == np.arange(24).reshape(2, 3, 4).tolist()
    wide = np.array([[1.5, -2.0]], dtype=np.float32)
    assert parse_idx(idx_bytes(wide)).tolist() == wide.tolist()


@pytest.mark.parametrize(
    ("blob", "needle"),
    [
        (b"", "truncated IDX file"),
        (b"\x00\x00\x08", "truncated IDX file"),
        (GOOD[:10], "truncated IDX header"),
        (GOOD[:-1], "truncated: dimensions 2 x 3 x 4 need 24 data bytes, found 23"),
        (GOOD + b"\x00", "has trailing bytes"),
        (b"\x01\x02" + GOOD[2:], "not an IDX file: magic number starts 0102"),
        (b"PK\x03\x04" + GOOD[4:], "not an IDX file"),
        (GOOD[:2] + b"\x07" + GOOD[3:], "unknown IDX element type 0x07"),
        (GOOD[:3] + b"\x00", "declares 0 dimensions"),
        (GOOD[:3] + b"\x02" + GOOD[4:], "dimensions 2 x 3 need 6 data bytes"),
        # Four dimensions of 65536: the product 2^64 must not wrap around to 0 and "match" no data.
        (b"\x00\x00\x08\x04" + (65536).to_bytes(4, "big") * 4, "need 18446744073709551616 data bytes"),
        # 255 dimensions of 1: allowed by the format, beyond NumPy's 64.
        (b"\x00\x00\x08\xff" + (1).to_bytes(4, "big") * 255 + b"\x00", "declares 255 dimensions"),
    ],
)
def test_malformed_idx_bytes(blob: bytes, needle: str) -> None:
    with pytest.raises(DataError) as e:
        parse_idx(blob, "some.idx")
    assert_one_line(e, "some.idx: ", needle)


@pytest.mark.parametrize(
    "blob",
    [
        gzip.compress(GOOD)[:20],  # stream cut short
        gzip.compress(GOOD)[:-4],  # length trailer missing
        b"\x1f\x8b" + b"\x00" * 30,  # gzip magic, garbage after
        (lambda g: g[:15] + bytes([g[15] ^ 0x55]) + g[16:])(gzip.compress(GOOD)),  # flipped byte
    ],
)
def test_corrupted_gzip_stream(blob: bytes) -> None:
    with pytest.raises(DataError) as e:
        parse_idx(decompress(blob, "x.gz"), "x.gz")
    assert_one_line(e, "x.gz: ")


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        read_idx(tmp_path / "nope.gz")
    assert_one_line(e, str(tmp_path / "nope.gz"), "file not found")


def test_read_idx_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        read_idx(tmp_path)
    assert_one_line(e, str(tmp_path), "cannot read")


def test_read_idx_checksum_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(GOOD))
    assert read_idx(path, hashlib.sha256(GOOD).hexdigest()).shape == (2, 3, 4)
    with pytest.raises(DataError) as e:
        read_idx(path, "0" * 64)
    assert_one_line(e, str(path), "checksum mismatch", "download it again")


def test_read_idx_corrupted_gzip_file(tmp_path: Path) -> None:
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(GOOD)[:-6])
    with pytest.raises(DataError) as e:
        read_idx(path)
    assert_one_line(e, str(path), "corrupted gzip stream")


# -- datasets ---------------------------------------------------------------------------------------------


def test_generated_dataset_loads(tmp_path: Path) -> None:
    data = load_mnist(write_dataset(tmp_path / "d"), validation_size=5)
    assert (len(data.train), len(data.validation), len(data.test), data.input_size) == (25, 5, 10, 16)


def test_missing_directory_says_how_to_get_data(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_mnist(tmp_path / "absent")
    assert_one_line(e, str(tmp_path / "absent"), "bpcli data download mnist --dir")


def test_missing_file(tmp_path: Path) -> None:
    d = write_dataset(tmp_path / "d")
    (d / FILES["test_labels"]).unlink()
    with pytest.raises(DataError) as e:
        load_mnist(d)
    assert_one_line(e, FILES["test_labels"], "missing", "bpcli data download")


@pytest.mark.parametrize(
    ("key", "damage", "needle"),
    [
        ("train_images", lambda b: b[: len(b) // 2], "corrupted gzip stream"),
        ("train_labels", lambda b: b"\x1f\x8b\x08" + b[3:40], "corrupted gzip stream"),
        ("test_images", lambda b: gzip.compress(gzip.decompress(b)[:-3]), "checksum mismatch"),
        ("test_labels", lambda b: gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 4), "checksum mismatch"),
    ],
)
def test_damaged_file_in_dataset(tmp_path: Path, key: str, damage: object, needle: str) -> None:
    d = write_dataset(tmp_path / "d")
    path = d / FILES[key]
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(DataError) as e:
        load_mnist(d, validation_size=5)
    assert_one_line(e, str(path), needle)


def test_unknown_dataset_without_sha256sums_is_refused_naming_both_opt_ins(tmp_path: Path) -> None:
    """Without SHA256SUMS, files that are no known dataset are an unknown dataset (it used to be checked
    against MNIST's checksums and told to download MNIST again, whatever it was)."""
    d = write_dataset(tmp_path / "d")
    (d / CHECKSUM_FILE).unlink()
    with pytest.raises(DataError) as e:
        load_mnist(d, validation_size=5)
    assert_one_line(e, str(d), "unknown dataset", "data.verify: false", f"bpcli data verify {d} --write")
    assert load_mnist(d, validation_size=5, verify=False).identity.label == "unverified dataset"


@pytest.mark.parametrize(
    ("key", "content", "needle"),
    [
        ("train_images", b"\x00\x00\x08\x03" + (30).to_bytes(4, "big") * 3, "IDX file truncated"),
        ("train_images", b"\x07\x07" + idx_bytes(tiny_arrays()["train_images"])[2:], "not an IDX file"),
        ("test_labels", b"\x00\x00\x0A\x01" + (10).to_bytes(4, "big") + b"\x00" * 10, "unknown IDX element type"),
    ],
)
def test_malformed_file_in_dataset(tmp_path: Path, key: str, content: bytes, needle: str) -> None:
    d = write_dataset(tmp_path / "d", raw={key: content})
    with pytest.raises(DataError) as e:
        load_mnist(d, validation_size=5)
    assert_one_line(e, str(d / FILES[key]), needle)


def _with(**changes: np.ndarray) -> dict[str, np.ndarray]:
    arrays = tiny_arrays()
    arrays.update(changes)
    return arrays


@pytest.mark.parametrize(
    ("arrays", "needles"),
    [
        (_with(train_labels=np.zeros(29, dtype=np.uint8)), (FILES["train_images"], "30 train images", "29 labels")),
        (_with(test_images=np.zeros((11, 4, 4), dtype=np.uint8)), (FILES["test_images"], "11 test images")),
        (_with(train_images=np.zeros(30, dtype=np.uint8)), (FILES["train_images"], "2+ dimensions")),
        (_with(test_labels=np.zeros((10, 1), dtype=np.uint8)), (FILES["test_labels"], "labels 1")),
        (_with(train_labels=np.full(30, 1000, dtype=np.int32)), (FILES["train_labels"], "label 1000 out of range")),
        (_with(test_labels=np.full(10, -1, dtype=np.int8)), (FILES["test_labels"], "label -1 out of range")),
        (_with(train_labels=np.zeros(30, dtype=np.float32)), (FILES["train_labels"], "labels must be integers")),
        (_with(test_images=np.zeros((10, 5, 5), dtype=np.uint8)), ("train images are (4, 4) but test images (5, 5)",)),
        # Float pixels that are no image: NaN, and 1e300 (float32 overflow, read as a diverging rate).
        (_with(train_images=np.full((30, 4, 4), np.nan)), (FILES["train_images"], "NaN or infinite")),
        (_with(test_images=np.full((10, 4, 4), 1e300)), (FILES["test_images"], "as large as 1e+300 are no image")),
    ],
)
def test_inconsistent_dataset(tmp_path: Path, arrays: dict[str, np.ndarray], needles: tuple[str, ...]) -> None:
    d = write_dataset(tmp_path / "d", arrays)
    with pytest.raises(DataError) as e:
        load_mnist(d, validation_size=5)
    assert_one_line(e, str(d), *needles)


def test_validation_split_larger_than_training_set(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_mnist(write_dataset(tmp_path / "d"), validation_size=30)
    assert_one_line(e, "data.validation_size 30", "leaves no training examples")


# -- config files -----------------------------------------------------------------------------------------


def load_text(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()) -> config.Config:
    path = tmp_path / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    return config.load(path, overrides)


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        # not YAML
        ("model:\n  layers: [784, 10\n", ("cfg.yaml:3", "not valid YAML")),
        ("model: {layers: [784, 10]}\n\tbad: 1\n", ("cfg.yaml:2", "not valid YAML")),
        ("a: 1\n---\nb: 2\n", ("cfg.yaml", "not valid YAML")),
        ("training:\n  epochs: !!int abc\n", ("cfg.yaml", "not valid YAML", "abc")),
        ("training:\n  epochs: 2020-13-45\n", ("cfg.yaml", "not valid YAML", "month")),
        ("x: !!python/object:os.system {}\n", ("cfg.yaml:1", "not valid YAML")),
        ("[" * 600, ("cfg.yaml", "nested too deeply")),
        # not a mapping
        ("- model\n- training\n", ("cfg.yaml", "must be a YAML mapping", "got a list")),
        ("just text\n", ("must be a YAML mapping", "got a string")),
        ("model: [784, 10]\n", ("cfg.yaml:1", "model:", "expected a mapping of fields, got a list")),
        # unknown keys
        ("modle:\n  layers: [784, 10]\n", ("cfg.yaml:1", "modle", "did you mean 'model'")),
        ("training:\n  epochs: 3\n  learning_rat: 0.1\n", ("cfg.yaml:3", "training.learning_rat", "did you mean 'learning_rate'")),
        ("training:\n  zzz: 1\n", ("cfg.yaml:2", "training.zzz", "known fields: epochs")),
        # wrong types
        ("training:\n  epochs: three\n", ("cfg.yaml:2", "training.epochs", "expected an integer, got a string")),
        ("training:\n  epochs: 2.5\n", ("training.epochs", "expected an integer, got a number")),
        ("training:\n  epochs: true\n", ("training.epochs", "expected an integer, got a boolean")),
        ("model:\n  layers: 784,10\n", ("cfg.yaml:2", "model.layers", "expected a list of integers")),
        ("model:\n  layers: [784, 1.5, 10]\n", ("model.layers[1]", "expected an integer")),
        ("training:\n  learning_rate: fast\n", ("cfg.yaml:2", "training.learning_rate", "expected a number")),
        ("training:\n  learning_rate: [0.1]\n", ("training.learning_rate", "expected a number, got a list")),
        ("training: 5\n", ("cfg.yaml:1", "training", "expected a mapping of fields")),
        ("data:\n  path: 3\n", ("cfg.yaml:2", "data.path", "expected a string")),
        ("name: 42\n", ("cfg.yaml:1", "name", "expected a string")),
        # sizes <= 0, empty layer list
        ("model:\n  layers: [784, 0, 10]\n", ("cfg.yaml:2", "model.layers[1]", "must be positive, got 0")),
        ("model:\n  layers: [784, -5, 10]\n", ("model.layers[1]", "got -5")),
        ("model:\n  layers: []\n", ("cfg.yaml:2", "model.layers", "at least two sizes")),
        ("model:\n  layers: [784]\n", ("model.layers", "at least two sizes")),
        ("training:\n  batch_size: 0\n", ("cfg.yaml:2", "training.batch_size", "must be > 0")),
        ("training:\n  epochs: -1\n", ("training.epochs", "must be in 1..100,000, got -1")),
        ("training:\n  epochs: 10000000000000000000000000\n", ("training.epochs", "must be in 1..100,000")),
        ("training:\n  threads: 100000\n", ("training.threads", "must be in 0..1024")),
        ("training:\n  learning_rate: 0.1\n  schedule: {name: cosine, min_learning_rate: 5}\n",
         ("training.schedule.min_learning_rate", "above learning_rate 0.1")),
        ('data:\n  path: "a\\0b"\n', ("data.path", "NUL character")),
        ("data:\n  validation_size: -1\n", ("data.validation_size", "must be >= 0")),
        # learning rate <= 0 or not finite
        ("training:\n  learning_rate: 0\n", ("cfg.yaml:2", "training.learning_rate", "must be >= 1e-10")),
        ("training:\n  learning_rate: -0.1\n", ("training.learning_rate", "must be >= 1e-10")),
        ("training:\n  learning_rate: .nan\n", ("cfg.yaml:2", "training.learning_rate", "finite")),
        ("training:\n  learning_rate: .inf\n", ("training.learning_rate", "finite")),
        ("training:\n  learning_rate: -.inf\n", ("training.learning_rate", "finite")),
        ("training:\n  learning_rate: nan\n", ("training.learning_rate", "finite")),
        ("training:\n  learning_rate: 1e999\n", ("training.learning_rate", "finite")),
        ("training:\n  learning_rate: " + "9" * 400 + "\n", ("training.learning_rate", "too large for a float")),
        ("training:\n  optimizer:\n    momentum: 1.0\n", ("cfg.yaml:3", "training.optimizer.momentum", "[0, 1)")),
        # bad names
        ("model:\n  activation: sigmod\n", ("cfg.yaml:2", "model.activation", "did you mean 'sigmoid'")),
        ("model:\n  activation: 3\n", ("model.activation", "is not one of sigmoid | tanh | relu")),
        ("model:\n  cost: crossentropy\n", ("model.cost", "did you mean 'cross_entropy'")),
        ("training:\n  optimizer:\n    name: adamw\n", ("cfg.yaml:3", "training.optimizer.name", "did you mean 'adam'")),
        ("training:\n  dtype: float16\n", ("training.dtype", "float32 | float64")),
        ("model:\n  output: identity\n", ("model.cost", "cross_entropy needs a softmax or sigmoid output")),
    ],
)
def test_bad_config(tmp_path: Path, text: str, needles: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as e:
        load_text(tmp_path, text)
    assert_one_line(e, *needles)


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("training.epochs", ("--set", "expected KEY=VALUE")),
        ("=3", ("expected KEY=VALUE",)),
        ("training.epochs=abc", ("--set", "training.epochs", "expected an integer")),
        ("training.epochs=2020-13-45", ("--set", "training.epochs", "expected an integer")),
        ("training.learning_rate=.nan", ("--set", "training.learning_rate", "finite")),
        ("training.lr=0.1", ("--set", "training.lr", "unknown field")),
        ("training.epochs.x=1", ("--set training.epochs.x=1", "training.epochs is not a section")),
        ("model.layers=[]", ("--set", "model.layers", "at least two sizes")),
    ],
)
def test_bad_override(tmp_path: Path, override: str, needles: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as e:
        load_text(tmp_path, "training:\n  epochs: 3\n", (override,))
    assert_one_line(e, *needles)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        config.load(tmp_path / "nope.yaml")
    assert_one_line(e, "nope.yaml", "no such config file")


def test_config_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        config.load(tmp_path)
    assert_one_line(e, str(tmp_path), "cannot read config file")


def test_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert_one_line(e, "cfg.yaml", "cannot read config file")


def test_empty_config_is_the_defaults(tmp_path: Path) -> None:
    assert load_text(tmp_path, "").model == config.ModelConfig()
