"""A file the user names for output (`--out FILE`, `--json FILE`) is never replaced without --force, as
`bpcli train` refuses an existing run directory and `bpcli init` an existing config: the refusal is one
line, exit code 2, before any work, and the file keeps its bytes; with --force the command writes it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bpcli.cli import app

from conftest import CONFIGS, train_tiny

runner = CliRunner()
KEPT = b"a result the user keeps\n"


@pytest.fixture(scope="module")
def run(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("outputs") / "run", mnist_dir, "data.limit=2000", "training.epochs=1")


def images(folder: Path) -> Path:
    path = folder / "digits.npz"
    np.savez(path, x_test=np.random.default_rng(0).integers(0, 256, (4, 28, 28), dtype=np.uint8))
    return path


# (the command's arguments before the file, the option naming it, the file's name, extras it needs)
WRITERS = [
    (lambda run, tmp, data: ["export", str(run)], "--out", "net.npz", ()),
    (lambda run, tmp, data: ["predict", str(run), str(images(tmp))], "--out", "rows.csv", ()),
    (lambda run, tmp, data: ["plot", str(run)], "--out", "curves.svg", ("matplotlib",)),
    (lambda run, tmp, data: ["show", str(run), "--weights", "2", "--mistakes", "2"], "--out", "net.png",
     ("matplotlib",)),
    (lambda run, tmp, data: ["gradcheck", str(CONFIGS / "tiny.yaml"), "--set", f"data.path={data}", "--path",
                             "reference", "--entries", "3"], "--json", "gc.json", ()),
]


def command(writer: tuple, run: Path, mnist_dir: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """The output file of one of WRITERS and the command line writing it (skipped without its extras)."""
    args, option, name, extras = writer
    for extra in extras:
        pytest.importorskip(extra)
    return tmp_path / name, [*args(run, tmp_path, mnist_dir), option, str(tmp_path / name)]


@pytest.mark.parametrize("writer", WRITERS, ids=[w[2] for w in WRITERS])
def test_an_existing_file_is_replaced_only_with_force(run: Path, mnist_dir: Path, tmp_path: Path, writer: tuple) -> None:
    target, argv = command(writer, run, mnist_dir, tmp_path)
    option, name = writer[1], writer[2]
    target.write_bytes(KEPT)
    refused = runner.invoke(app, argv)
    assert refused.exit_code == 2, refused.output
    assert refused.stderr == f"error: {option} {target}: the file exists; pass --force to replace it, or give " \
                             "another name\n"
    assert target.read_bytes() == KEPT and sorted(p.name for p in tmp_path.iterdir() if p.name != "digits.npz") \
        == [name]  # nothing else written either, not even a temporary file
    forced = runner.invoke(app, [*argv, "--force"])
    assert forced.exit_code == 0, forced.output
    assert target.read_bytes() != KEPT and target.stat().st_size > 0


@pytest.mark.parametrize("writer", WRITERS, ids=[w[2] for w in WRITERS])
def test_a_fifo_is_never_replaced_by_a_file_even_with_force(run: Path, mnist_dir: Path, tmp_path: Path,
                                                            writer: tuple) -> None:
    """The atomic write renames a new file over the name: over /dev/full it replaced the device."""
    target, argv = command(writer, run, mnist_dir, tmp_path)
    os.mkfifo(target)
    refused = runner.invoke(app, [*argv, "--force"])
    assert refused.exit_code == 2
    assert refused.stderr == f"error: {writer[1]} {target}: not a regular file; give a file name\n"
    assert stat.S_ISFIFO(target.stat().st_mode)
