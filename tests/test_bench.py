"""The benchmark scripts still run: each in its smallest mode, as a subprocess, checked through its JSON.

These are smoke tests, not measurements (the numbers of a 1-epoch run on 3,000 images mean nothing):
they guard the scripts that README's benchmark tables are reproduced with against a change of the
APIs they drive. PyTorch is left out even where it is installed, so the tests stay fast and the same
on every machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def run(script: str, *args: str, tmp_path: Path) -> dict:
    # A private cache and data directory: the scripts start `bpcli train`, which fills the per-user
    # cache of decompressed datasets; a test must not touch the user's.
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_DATA_HOME=str(tmp_path / "data"))
    result = subprocess.run([sys.executable, str(BENCH / script), *args, "--json"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_epoch_bench_compares_bpcli_with_its_floor(tmp_path: Path) -> None:
    out = run("epoch.py", "--quick", "--no-torch", "--case", "b10 relu", tmp_path=tmp_path)
    (case,) = out["cases"]
    assert case["layers"] == [784, 30, 10] and case["batch_size"] == 10
    assert case["bpcli_s"] > 0 and case["floor_s"] > 0 and case["torch_s"] is None
    assert case["ratio_floor"] == pytest.approx(case["bpcli_s"] / case["floor_s"])
    assert case["peak_rss_mb"] > 0


def test_time_to_accuracy_bench_runs_the_cli_on_the_configs_recipe(tmp_path: Path) -> None:
    out = run("time_to_accuracy.py", "--only", "bpcli", "--rounds", "1", "--threads", "1", "--set", "training.epochs=1",
              "--set", "data.limit=3000", "--set", "data.validation_size=500", tmp_path=tmp_path)
    recipe = out["recipe"]
    assert recipe["layers"] == [784, 512, 256, 10] and recipe["epochs"] == 1 and recipe["threads"] == 1
    (bpcli,) = out["runs"]["bpcli"]
    assert bpcli["wall_s"] > 0 and 0 < bpcli["test_accuracy"] <= 1 and len(bpcli["epochs"]) == 1


def test_startup_bench_times_help_and_the_first_batch(tmp_path: Path) -> None:
    out = run("startup.py", str(ROOT / "configs" / "tiny.yaml"), "--repeats", "1", tmp_path=tmp_path)
    medians = out["medians_s"]
    assert set(medians) == {"python -c pass", "bpcli --help", "first batch (cache warm)", "first batch (cache cold)"}
    assert all(t > 0 for t in medians.values())
