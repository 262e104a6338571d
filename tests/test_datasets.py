"""Issue 12: any IDX or .npz dataset, recognised by its content, verified honestly.

Every foreign dataset here is made by the test itself: MNIST recompressed or decompressed (same content,
other bytes), MNIST with permuted labels (half known), synthetic IDX sets of other image sizes and class
counts, Keras-style .npz files. No file is fetched from anywhere.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bpcli import config
from bpcli.cli import app
from bpcli.data import FILES, load_dataset, load_test, registry
from bpcli.data.check import verify_path, write_checksums
from bpcli.errors import DataError

from conftest import CONFIGS

TINY = str(CONFIGS / "tiny.yaml")
NAMES = list(FILES.values())


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def synthetic(seed: int = 0, side: int = 20, classes: int = 5, n_train: int = 120,
              n_test: int = 30) -> dict[str, bytes]:
    """Raw IDX contents of a learnable synthetic set: side x side images whose bright row says the class."""
    rng = np.random.default_rng(seed)
    out = {}
    for part, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, classes, n)
        images = rng.integers(0, 40, (n, side, side))
        images[np.arange(n), labels * (side // classes), :] = 255
        out[f"{part}_images"], out[f"{part}_labels"] = idx_bytes(images), idx_bytes(labels)
    return out


def write_idx(directory: Path, contents: dict[str, bytes], raw: bool = False, level: int = 9) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for role, content in contents.items():
        name = FILES[role]
        if raw:
            (directory / name.removesuffix(".gz")).write_bytes(content)
        else:
            (directory / name).write_bytes(gzip.compress(content, compresslevel=level, mtime=0))
    return directory


def write_npz(path: Path, contents: dict[str, bytes]) -> Path:
    """A Keras-style .npz (x_train, y_train, x_test, y_test) holding the arrays of IDX contents."""
    from bpcli.data.idx import parse_idx

    keys = {"train_images": "x_train", "train_labels": "y_train", "test_images": "x_test", "test_labels": "y_test"}
    np.savez_compressed(path, **{keys[role]: parse_idx(c) for role, c in contents.items()})
    return path


def sums_text(contents: dict[str, bytes]) -> str:
    return "".join(f"{hashlib.sha256(c).hexdigest()}  {FILES[role]}\n" for role, c in contents.items())


@pytest.fixture(scope="module")
def mnist_content(mnist_dir: Path) -> dict[str, bytes]:
    """The decompressed content of the real MNIST files."""
    return {role: gzip.decompress((mnist_dir / name).read_bytes()) for role, name in FILES.items()}


def invoke(*args: str, env: dict[str, str] | None = None) -> object:
    return CliRunner().invoke(app, list(args), env=env)


# -- identified by content -----------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["recompressed", "raw"])
def test_mnist_is_recognised_however_it_is_compressed(tmp_path: Path, mnist_content: dict[str, bytes],
                                                      form: str) -> None:
    """Recompressed by a packager (other .gz bytes) or decompressed: the content is MNIST's, so it is MNIST."""
    d = write_idx(tmp_path / form, mnist_content, raw=form == "raw", level=1)
    data = load_dataset(d, validation_size=1000, limit=100)
    assert data.identity.label == "MNIST (verified)" and data.image_shape == (28, 28) and data.classes == 10
    report = verify_path(d)
    assert report.code == 0 and report.verdict == "MNIST (verified): all 4 files match published checksums"


def test_both_gz_and_raw_under_one_name_is_refused(tmp_path: Path, mnist_content: dict[str, bytes]) -> None:
    d = write_idx(tmp_path / "d", mnist_content, level=1)
    (d / "t10k-labels-idx1-ubyte").write_bytes(mnist_content["test_labels"])
    with pytest.raises(DataError, match="both t10k-labels-idx1-ubyte and t10k-labels-idx1-ubyte.gz are present"):
        load_dataset(d)


def permuted_labels(mnist_content: dict[str, bytes], seed: int = 0) -> dict[str, bytes]:
    """MNIST with its training labels shuffled: the images are MNIST's, the labels no known dataset's."""
    labels = np.frombuffer(mnist_content["train_labels"], np.uint8, offset=8)
    return {**mnist_content, "train_labels": idx_bytes(np.random.default_rng(seed).permutation(labels))}


def test_half_matching_dataset_is_refused_naming_each_file(tmp_path: Path, mnist_content: dict[str, bytes]) -> None:
    d = write_idx(tmp_path / "d", permuted_labels(mnist_content), level=1)
    with pytest.raises(DataError) as e:
        load_dataset(d)
    text = str(e.value)
    assert "\n" not in text and text.startswith(f"{d}: mixed or damaged dataset: ")
    assert "train-labels-idx1-ubyte.gz matches no known dataset (content SHA-256 " in text
    assert "; the other files are MNIST;" in text
    assert "data.verify: false" in text
    # The same files with the explicit opt-in load, and are called what they are.
    data = load_dataset(d, validation_size=1000, limit=100, verify=False)
    assert data.identity.label == "unverified dataset"
    result = invoke("data", "verify", str(d), env={"COLUMNS": "80"})
    assert result.exit_code == 1 and "mixed or damaged dataset" in " ".join(result.stdout.split())


def test_one_damaged_file_of_a_known_dataset_is_named(tmp_path: Path, mnist_content: dict[str, bytes]) -> None:
    labels = bytearray(mnist_content["test_labels"])
    labels[100] = (labels[100] + 1) % 10  # one label changed: still valid IDX, no longer MNIST
    d = write_idx(tmp_path / "d", {**mnist_content, "test_labels": bytes(labels)}, level=1)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz matches no known dataset"):
        load_dataset(d)


# -- unknown datasets: refused unless the user opts in -------------------------------------------------------


def test_unknown_dataset_trains_only_after_opting_in(tmp_path: Path) -> None:
    """A 20x20, 5-class IDX set: refused as unknown; with data.verify=false it trains end to end through
    the CLI, image size and class count taken from the data, and the run says it is unverified."""
    d = write_idx(tmp_path / "syn", synthetic(), raw=True)
    sets = ["--set", f"data.path={d}", "--set", "model.layers=[400, 16, 5]", "--set", "data.validation_size=20",
            "--set", "data.limit=0", "--set", "training.epochs=3", "--set", "training.batch_size=10",
            "--set", "training.learning_rate=0.5"]
    refused = invoke("train", TINY, *sets, "--out", str(tmp_path / "no"))
    assert refused.exit_code == 2
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
    assert f"{d}: unknown dataset" in refused.stderr and "data.verify: false" in refused.stderr
    result = invoke("train", TINY, *sets, "--set", "data.verify=false", "--out", str(tmp_path / "run"), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["test_accuracy"] > 0.5  # the bright row is easy to learn
    plain = invoke("train", TINY, *sets, "--set", "data.verify=false", "--set", "training.epochs=1",
                   "--out", str(tmp_path / "run2"))
    assert plain.exit_code == 0 and "data: unverified dataset" in plain.stdout.splitlines()[0]
    record = json.loads((tmp_path / "run" / "dataset.json").read_text())
    assert record["status"] == "unverified" and record["image_shape"] == [20, 20] and record["classes"] == 5


def test_layers_that_do_not_fit_the_data_say_what_the_data_is(tmp_path: Path) -> None:
    d = write_idx(tmp_path / "syn", synthetic())
    result = invoke("train", TINY, "--set", f"data.path={d}", "--set", "data.verify=false", "--set",
                    "data.validation_size=20", "--set", "data.limit=0", "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert "model.layers[0]: input size 784 does not match the data (400 values per example" in result.stderr
    assert "set it to 400" in result.stderr


def test_write_records_sha256sums_and_the_run_then_says_so(tmp_path: Path) -> None:
    contents = synthetic(1)
    d = write_idx(tmp_path / "syn", contents)
    assert invoke("data", "verify", str(d)).exit_code == 1  # unknown: nothing vouches for it
    result = invoke("data", "verify", str(d), "--write")
    assert result.exit_code == 0, result.output
    assert (d / "SHA256SUMS").read_text() == sums_text(contents)
    assert "not a dataset bpcli knows: unverified dataset" in " ".join(result.stdout.split())
    data = load_dataset(d, validation_size=20)
    assert data.identity.label == "unverified dataset, matching its SHA256SUMS"
    # Writing again keeps the list; a file that no longer matches it is not blessed over it.
    (d / FILES["test_labels"]).write_bytes(gzip.compress(idx_bytes(np.zeros(30, np.uint8))))
    with pytest.raises(DataError, match="does not match this line; not overwriting"):
        write_checksums(d)


# -- SHA256SUMS is never a silent off switch --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "SHA256SUMS: lists no files, so it would verify nothing"),
        ("\n# only a comment\n\n", "SHA256SUMS: lists no files"),
        ("not a checksum line\n", "SHA256SUMS:1: not a checksum line"),
        ("{line0}{line1}garbage here\n", "SHA256SUMS:3: not a checksum line"),
        ("{line0}{line0}", "SHA256SUMS:2: train-images-idx3-ubyte.gz is already listed on line 1"),
        ("{line0}{line1}", "SHA256SUMS: does not list t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz"),
        ("{line0}{line1}{line2}{bad3}", "t10k-labels-idx1-ubyte.gz: checksum mismatch: SHA-256 "),
    ],
)
def test_a_bad_sha256sums_is_an_error_naming_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    contents = synthetic(2)
    d = write_idx(tmp_path / "syn", contents)
    lines = sums_text(contents).splitlines(keepends=True)
    bad3 = "0" * 64 + "  " + NAMES[3] + "\n"
    (d / "SHA256SUMS").write_text(text.format(line0=lines[0], line1=lines[1], line2=lines[2], bad3=bad3))
    with pytest.raises(DataError) as e:
        load_dataset(d, validation_size=20)
    assert "\n" not in str(e.value) and message in str(e.value)
    result = invoke("data", "verify", str(d), env={"COLUMNS": "400"})
    # Unreadable lists are exit 2, lists that do not match the files exit 1; never "verified", never 0.
    assert result.exit_code in (1, 2) and "verified" not in result.stdout
    assert message in " ".join((result.stdout + result.stderr).split())


def test_a_raw_file_may_be_listed_under_its_gz_name(tmp_path: Path) -> None:
    """SHA256SUMS lists content digests, so `gunzip` does not invalidate the list."""
    contents = synthetic(3)
    d = write_idx(tmp_path / "syn", contents, raw=True)
    (d / "SHA256SUMS").write_text(sums_text(contents))
    assert load_dataset(d, validation_size=20).identity.status == "checksums"


# -- .npz ----------------------------------------------------------------------------------------------------


def test_keras_style_npz_of_mnist_is_mnist(tmp_path: Path, mnist_content: dict[str, bytes]) -> None:
    path = write_npz(tmp_path / "mnist.npz", mnist_content)
    data = load_dataset(path, validation_size=1000, limit=100)
    assert data.identity.label == "MNIST (verified)" and len(data.test) == 10_000
    assert verify_path(path).code == 0


def test_synthetic_npz_is_unknown_until_opted_in(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "syn.npz", synthetic(4))
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset(path, validation_size=20)
    assert load_dataset(path, validation_size=20, verify=False).input_size == 400
    assert invoke("data", "verify", str(path), "--write").exit_code == 0
    assert (tmp_path / "SHA256SUMS").read_text().endswith("  syn.npz\n")
    assert load_dataset(path, validation_size=20).identity.status == "checksums"
    images, labels, identity = load_test(path)
    assert images.shape == (30, 20, 20) and labels.shape == (30,)


def test_npz_with_a_pickled_object_array_is_refused(tmp_path: Path) -> None:
    arrays = {"x_train": np.zeros((4, 2, 2), np.uint8), "y_train": np.array([{"a": 1}] * 4, dtype=object),
              "x_test": np.zeros((2, 2, 2), np.uint8), "y_test": np.zeros(2, np.uint8)}
    path = tmp_path / "pickled.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataError) as e:
        load_dataset(path, validation_size=1, verify=False)
    assert str(e.value) == (f"{path}: y_train: an object array, which only pickle can load; bpcli loads .npz files "
                            "with allow_pickle=False (plain numeric arrays only), so it is refused")


def test_npz_missing_a_key_or_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "partial.npz"
    np.savez(path, x_train=np.zeros((4, 2, 2), np.uint8), y_train=np.zeros(4, np.uint8))
    with pytest.raises(DataError, match=r"no x_test, y_test in the \.npz \(it holds x_train, y_train\)"):
        load_dataset(path, verify=False)
    bogus = tmp_path / "bogus.npz"
    bogus.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="not a .npz file"):
        load_dataset(bogus, verify=False)


def test_npz_declaring_a_huge_array_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as z:
        for key in ("x_train", "y_train", "x_test", "y_test"):
            z.writestr(f"{key}.npy", _npy_header((100_000, 1000, 1000)))  # a header and no data
    with pytest.raises(DataError, match=r"x_train: declares shape \(100000, 1000, 1000\)"):
        load_dataset(path, verify=False)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return out.getvalue()  # the magic string, the version and the header dictionary


# -- class names ----------------------------------------------------------------------------------------------


@pytest.fixture
def known_synthetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A synthetic 5-class set registered as a known dataset with long class names (a stand-in for
    Fashion-MNIST, whose files this machine does not have)."""
    contents = synthetic(5)
    files = tuple(registry.FileSpec(FILES[role], content_sha256=hashlib.sha256(c).hexdigest())
                  for role, c in contents.items())
    spec = registry.DatasetSpec("garments", "Garments", (), files,
                                ("T-shirt/top", "Trouser", "Pullover", "Ankle boot", "Sandal"))
    monkeypatch.setitem(registry.DATASETS, "garments", spec)
    return write_idx(tmp_path / "garments", contents, level=1)


def test_class_names_in_the_run_header_confusion_matrix_and_evaluate(known_synthetic: Path, tmp_path: Path) -> None:
    sets = ["--set", f"data.path={known_synthetic}", "--set", "model.layers=[400, 16, 5]", "--set",
            "data.validation_size=20", "--set", "data.limit=0", "--set", "training.epochs=2", "--set",
            "training.batch_size=10"]
    for width in ("60", "80"):
        result = invoke("train", TINY, *sets, "--out", str(tmp_path / f"run{width}"), env={"COLUMNS": width})
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert "data: Garments (verified)" in lines[0]
        start = next(i for i, line in enumerate(lines) if line.startswith("confusion matrix"))
        end = next(i for i, line in enumerate(lines) if line.startswith("test accuracy"))
        table = lines[start:end]  # the matrix and its legend
        assert all(len(line) <= int(width) for line in table)
        assert any(line.startswith("classes: 0 T-shirt/top · 1 Trouser") for line in table)
    evaluated = invoke("evaluate", str(tmp_path / "run80"), env={"COLUMNS": "80"})
    assert evaluated.exit_code == 0, evaluated.output
    assert "T-shirt/top" in evaluated.stdout and "of Garments (verified)" in " ".join(evaluated.stdout.split())
    as_json = json.loads(invoke("evaluate", str(tmp_path / "run80"), "--json").stdout)
    assert as_json["class_names"][3] == "Ankle boot" and as_json["dataset"]["name"] == "garments"


def test_explain_trace_names_the_class(known_synthetic: Path) -> None:
    result = invoke("explain", TINY, "--set", f"data.path={known_synthetic}", "--set", "model.layers=[400, 8, 5]",
                    "--weight", "2,0,0", "--section", "trace", "--format", "markdown")
    assert result.exit_code == 0, result.output
    labels = np.frombuffer(gzip.decompress((known_synthetic / FILES["test_labels"]).read_bytes()), np.uint8, offset=8)
    name = ("T-shirt/top", "Trouser", "Pullover", "Ankle boot", "Sandal")[labels[0]]
    assert f"(label {labels[0]} ({name}))" in result.stdout


# -- paths that work from anywhere ---------------------------------------------------------------------------


def test_relative_data_path_is_found_next_to_the_config_then_in_the_cwd(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    write_idx(project / "data" / "syn", synthetic(6))
    (project / "configs").mkdir()
    cfg_file = project / "configs" / "syn.yaml"
    cfg_file.write_text("data:\n  path: ../data/syn\n  verify: false\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert config.load(cfg_file).data.path == str(project / "data" / "syn")
    # Not next to the config: the current directory, as before.
    cfg_file.write_text("data:\n  path: data/syn\n")
    monkeypatch.chdir(project)
    assert config.load(cfg_file).data.path == str(project / "data" / "syn")
    # In neither place: where the config says, which the loader's error names with the way to get it.
    monkeypatch.chdir(elsewhere)
    cfg_file.write_text("data:\n  path: ../data/fashion-mnist\n")
    wanted = project / "data" / "fashion-mnist"
    assert config.load(cfg_file).data.path == str(wanted)
    with pytest.raises(DataError, match=f"get the data with `bpcli data download fashion-mnist --dir {wanted}`"):
        load_dataset(config.load(cfg_file).data.path)
    # A --set path is the shell's: the current directory first, and left as typed when it is nowhere.
    assert config.load(cfg_file, ["data.path=nowhere"]).data.path == "nowhere"
    with pytest.raises(DataError, match="looked for next to the config file and in the current directory"):
        load_dataset("nowhere")


def test_evaluate_from_another_directory_and_after_the_data_moved(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = write_idx(tmp_path / "syn", synthetic(7))
    cfg_file = tmp_path / "syn.yaml"
    cfg_file.write_text("model:\n  layers: [400, 8, 5]\ndata:\n  path: syn\n  verify: false\n  validation_size: 20\n"
                        "  limit: 0\ntraining:\n  epochs: 1\n  batch_size: 10\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert invoke("train", str(cfg_file), "--out", str(tmp_path / "run"), "--quiet").exit_code == 0
    assert invoke("evaluate", str(tmp_path / "run"), "--json").exit_code == 0
    d.rename(tmp_path / "moved")
    result = invoke("evaluate", str(tmp_path / "run"))
    assert result.exit_code == 2 and "is not there (moved or deleted)" in result.stderr
    assert "--data PATH" in result.stderr
    assert invoke("evaluate", str(tmp_path / "run"), "--data", str(tmp_path / "moved"), "--json").exit_code == 0


def test_evaluate_refuses_a_different_known_dataset(known_synthetic: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Two known datasets of one shape: only the identity the run recorded can tell them apart."""
    other = synthetic(9)
    files = tuple(registry.FileSpec(FILES[role], content_sha256=hashlib.sha256(c).hexdigest())
                  for role, c in other.items())
    monkeypatch.setitem(registry.DATASETS, "other", registry.DatasetSpec("other", "Other", (), files))
    other_dir = write_idx(tmp_path / "other", other)
    run = tmp_path / "run"
    assert invoke("train", TINY, "--set", f"data.path={known_synthetic}", "--set", "model.layers=[400, 8, 5]",
                  "--set", "data.validation_size=20", "--set", "data.limit=0", "--set", "training.epochs=1",
                  "--out", str(run), "--quiet").exit_code == 0
    result = invoke("evaluate", str(run), "--data", str(other_dir))
    assert result.exit_code == 2
    assert f"the run was trained on Garments, but {other_dir} is Other; give Garments with --data PATH" in result.stderr
    (run / "dataset.json").write_text("{not json")  # a damaged record is no record, not a crash
    assert invoke("evaluate", str(run), "--data", str(other_dir)).exit_code == 0


# -- readable at 60 and 80 columns ---------------------------------------------------------------------------


@pytest.mark.parametrize("width", [60, 80])
def test_verify_table_fits_and_puts_long_errors_below(tmp_path: Path, width: int) -> None:
    contents = synthetic(8)
    d = write_idx(tmp_path / "syn", contents)
    (d / "SHA256SUMS").write_text(sums_text(contents))
    blob = (d / NAMES[0]).read_bytes()
    (d / NAMES[0]).write_bytes(blob[: len(blob) // 2])  # a corrupt gzip stream: a long message
    (d / NAMES[3]).write_bytes(gzip.compress(idx_bytes(np.zeros(30, np.uint8))))  # valid, but not as listed
    result = invoke("data", "verify", str(d), env={"COLUMNS": str(width)})
    assert result.exit_code == 2  # a file cannot be read: worse than a mismatch
    lines = result.stdout.splitlines()
    assert all(len(line) <= width for line in lines), "\n".join(lines)
    text = " ".join(result.stdout.split())
    assert "[1] train-images-idx3-ubyte.gz: corrupted gzip stream" in text
    assert "[2] t10k-labels-idx1-ubyte.gz: checksum mismatch: SHA256SUMS line 4 says" in text
    assert "check…" not in result.stdout and "…" not in result.stdout
    assert hashlib.sha256(contents["train_labels"]).hexdigest()[:12] in result.stdout
    assert hashlib.sha256(contents["train_labels"]).hexdigest()[:13] not in result.stdout


def test_a_dataset_path_named_for_another_known_dataset_gets_a_note(mnist_dir: Path, tmp_path: Path) -> None:
    """fashion-mnist/ holding MNIST's files trained without a word (found by a new user)."""
    from bpcli.data import load_dataset
    from bpcli.runner import mismatched_name

    named = tmp_path / "fashion-mnist"
    named.mkdir()
    for p in mnist_dir.glob("*.gz"):
        (named / p.name).symlink_to(p)
    data = load_dataset(named, validation_size=100, limit=500)
    assert mismatched_name(str(named), data) == (f"data.path {named} holds MNIST (verified by its checksums), "
                                                 "not Fashion-MNIST, as its name says")
    assert mismatched_name(str(mnist_dir), load_dataset(mnist_dir, validation_size=100, limit=500)) is None


def test_verify_names_a_fifo_for_a_data_file_instead_of_calling_it_missing(mnist_dir: Path, tmp_path: Path) -> None:
    import os

    d = tmp_path / "d"
    d.mkdir()
    for p in mnist_dir.glob("*.gz"):
        (d / p.name).symlink_to(p)
    (d / "train-images-idx3-ubyte.gz").unlink()
    os.mkfifo(d / "train-images-idx3-ubyte.gz")
    result = invoke("data", "verify", str(d), env={"COLUMNS": "120"})
    assert result.exit_code == 2 and "train-images-idx3-ubyte.gz: not a regular file" in result.output
