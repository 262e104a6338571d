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
