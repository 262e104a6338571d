"""`bpcli train` and `bpcli evaluate` end to end on a small slice of real MNIST, and exact resumption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bpcli import checkpoint, config
from bpcli.cli import app
from bpcli.runner import load_data
from bpcli.train import Interrupted, RunFiles, Trainer, fit

from conftest import CONFIGS, ROOT

TINY = str(CONFIGS / "tiny.yaml")


def small(mnist_dir: Path, *extra: str) -> list[str]:
    """--set options for a fast run on a slice of MNIST."""
    sets = [f"data.path={mnist_dir}", "data.limit=600", "data.validation_size=200", "training.epochs=1", *extra]
    return [arg for s in sets for arg in ("--set", s)]


def test_train_writes_the_run_directory_and_evaluate_reads_it(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", TINY, *small(mnist_dir, "training.epochs=2"), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert 0.5 < summary["test_accuracy"] <= 1 and summary["epochs"] == 2 and summary["run_dir"] == str(out)
    assert {"test_loss", "seconds"} <= summary.keys()
    assert {".bpcli.lock", ".commit.json", "best.npz", "config.yaml", "last.npz", "metrics.jsonl"} <= {
        p.name for p in out.iterdir()}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"} <= rows[0].keys()
    assert config.load(out / "config.yaml").data.limit == 600
    saved = checkpoint.load(out / "last.npz")
    assert saved.epoch == 2 and saved.network.sizes == (784, 16, 10) and saved.network.dtype == np.float32

    evaluated = CliRunner().invoke(app, ["evaluate", str(out / "last.npz"), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.output)["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    shown = CliRunner().invoke(app, ["evaluate", str(out)])
    assert "test accuracy" in shown.output and "confusion matrix" in shown.output


def test_train_not_on_a_terminal_logs_one_line_per_epoch(mnist_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", TINY, *small(mnist_dir, "training.epochs=2"), "--out", str(tmp_path / "r")],
                                env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("tiny: [784, 16, 10]") and str(tmp_path / "r") in lines[0]
    assert [line.split("  ")[0] for line in lines if line.startswith("epoch ")] == ["epoch 1/2", "epoch 2/2"]
    for text in ("train loss", "val loss", "confusion matrix", "test accuracy", str(tmp_path / "r")):
        assert text in result.output
    assert "\x1b" not in result.output


def test_existing_run_directory_is_not_overwritten(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    result = CliRunner().invoke(app, ["train", TINY, *small(mnist_dir), "--out", str(out)])
    assert result.exit_code == 2 and "already exists; pass --force" in result.output
    assert (out / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]  # not even a lock file left behind
    assert CliRunner().invoke(app, ["train", TINY, *small(mnist_dir), "--out", str(out), "--force", "-q"]).exit_code == 0


def test_output_size_must_match_classes(mnist_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", TINY, *small(mnist_dir, "model.layers=[784, 16, 12]"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "output size 12 does not match the 10 classes" in result.output
    result = CliRunner().invoke(app, ["train", TINY, *small(mnist_dir, "training.batch_size=5000"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "larger than the training set" in result.output


def test_divergence_stops_with_exit_code_3(mnist_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", TINY, *small(mnist_dir, "training.learning_rate=1e30",
                                                             "model.activation=relu", "model.init=normal"),
                                      "--out", str(tmp_path / "r")])
    assert result.exit_code == 3, result.output
    assert "diverged at epoch 1, batch" in result.output and "learning_rate" in result.output
    assert not (tmp_path / "r" / "last.npz").exists()  # nothing non-finite was saved
    # An L2 decay that overshoots zero is named, not blamed on the learning rate.
    decayed = CliRunner().invoke(app, ["train", TINY, *small(mnist_dir, "training.l2=1e308"), "--out",
                                       str(tmp_path / "l2")])
    assert decayed.exit_code == 3 and "the L2 decay step eta * l2 / n is" in decayed.output
    assert "lower training.l2" in decayed.output and "learning_rate" not in decayed.output


def _config(mnist_dir: Path, *extra: str) -> config.Config:
    return config.load(TINY, [f"data.path={mnist_dir}", "data.limit=500", "data.validation_size=100",
                              "training.epochs=3", "training.optimizer.name=adam", "training.schedule.name=cosine",
                              "training.l2=1.0", *extra])


def test_resume_after_interrupt_is_bitwise_identical(mnist_dir: Path, tmp_path: Path) -> None:
    cfg = _config(mnist_dir)
    data = load_data(cfg)
    straight = Trainer(cfg, data)
    fit(straight, RunFiles.create(tmp_path / "straight"))

    # Stop in the middle of epoch 2, then continue in a fresh trainer from the checkpoint on disk.
    first = Trainer(cfg, data)
    files = RunFiles.create(tmp_path / "interrupted")
    batches = iter(range(10_000))
    with pytest.raises(Interrupted):
        fit(first, files, should_stop=lambda: next(batches) == first.steps_per_epoch + 5)
    saved = checkpoint.load(files.last)
    assert (saved.epoch, saved.rng_state["position"]["batch"]) == (1, 5)
    resumed = Trainer(cfg, data)
    resumed.restore(saved)
    fit(resumed, files)

    for l in straight.net.layers:
        assert np.array_equal(straight.net.w[l], resumed.net.w[l])
        assert np.array_equal(straight.net.b[l], resumed.net.b[l])
    # The interrupted epoch's running loss and accuracy were checkpointed too, so the logs agree.
    keys = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate")
    logged = [[getattr(r, k) for k in keys] for r in files.read_metrics()]
    assert logged == [[getattr(r, k) for k in keys] for r in RunFiles(tmp_path / "straight").read_metrics()]
    assert [row[0] for row in logged] == [1, 2, 3]


# SIGHUP (a closed terminal or ssh session) killed the run with nothing saved.
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_checkpoints_and_resume_matches_uninterrupted_run(
    mnist_dir: Path, tmp_path: Path, signum: int, code: int
) -> None:
    sets = small(mnist_dir, "data.limit=3000", "training.epochs=40", "training.batch_size=10",
                 "model.layers=[784, 64, 10]")
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "bpcli", "train", TINY, *sets, "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stdout + stderr
    assert "checkpoint saved to" in stdout and "--resume" in stdout
    assert f"{signal.Signals(signum).name}: stopped at epoch" in stdout
    assert checkpoint.load(out / "last.npz").epoch < 40
    if signum != signal.SIGINT:
        return  # one signal is enough to show that resuming is exact

    resumed = CliRunner().invoke(app, ["train", TINY, *sets, "--resume", str(out), "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    straight = CliRunner().invoke(app, ["train", TINY, *sets, "--out", str(tmp_path / "straight"), "--quiet"])
    assert straight.exit_code == 0, straight.output
    a, b = checkpoint.load(out / "last.npz"), checkpoint.load(tmp_path / "straight" / "last.npz")
    assert a.epoch == b.epoch == 40
    for l in a.network.layers:
        assert np.array_equal(a.network.w[l], b.network.w[l]) and np.array_equal(a.network.b[l], b.network.b[l])


def test_resume_refuses_a_different_model(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert CliRunner().invoke(app, ["train", TINY, *small(mnist_dir), "--out", str(out), "-q"]).exit_code == 0
    result = CliRunner().invoke(app, ["train", TINY, *small(mnist_dir, "model.layers=[784, 8, 10]"), "--resume", str(out)])
    assert result.exit_code == 2 and "would be a different run (model.layers: [784, 16, 10] in the run, [784, 8, 10] here" in result.output


def test_damaged_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    result = CliRunner().invoke(app, ["evaluate", str(bad)])
    assert result.exit_code == 2 and "not a checkpoint (.npz)" in result.output
    result = CliRunner().invoke(app, ["evaluate", str(CONFIGS / "tiny.yaml")])  # a config is not a checkpoint
    assert result.exit_code == 2 and "not a checkpoint (.npz); give a run directory" in result.output
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "other.npz")])
    assert result.exit_code == 2 and "missing 'format'" in result.output
