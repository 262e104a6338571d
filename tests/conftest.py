"""Shared fixtures: seeded randomness and the MNIST directory (the project's copy, or shared/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def _mnist_dir() -> Path:
    for candidate in (ROOT / "data" / "mnist", ROOT.parent / "shared" / "data" / "mnist"):
        if (candidate / "train-images-idx3-ubyte.gz").is_file():
            return candidate
    pytest.skip("MNIST files not found")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return _mnist_dir()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decompressed-dataset cache (bpcli/data/cache.py) of the test session, never the user's: one
    directory for the session, so only the first test that reads MNIST pays for decompressing it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


def train_tiny(root: Path, mnist_dir: Path, *sets: str) -> Path:
    """A run of configs/tiny.yaml on the real MNIST in `mnist_dir`, made by `bpcli train` itself with the
    given `--set KEY=VALUE` items, in `root`; for tests of commands that use a trained network."""
    from typer.testing import CliRunner

    from bpcli.cli import app

    argv = ["train", str(CONFIGS / "tiny.yaml"), "--set", f"data.path={mnist_dir}"]
    argv += [arg for item in sets for arg in ("--set", item)]
    result = CliRunner().invoke(app, [*argv, "--out", str(root), "--quiet"])
    assert result.exit_code == 0, result.output
    return root
