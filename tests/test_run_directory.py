"""The run directory under faults: a crash at every write step of an epoch, kill -9 at a random moment,
a full disk, leftovers of killed writes, and two runs wanting one directory. After each, resuming
gives bitwise the parameters, metrics and best.npz of an uninterrupted run, or the user gets one line
and keeps what they had."""

from __future__ import annotations

import errno
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

from bpcli import checkpoint, config, rundir
from bpcli.cli import app
from bpcli.runner import load_data
from bpcli.rundir import RunDirError, RunFiles
from bpcli.train import Interrupted, Trainer, fit

from conftest import CONFIGS, ROOT

TINY = str(CONFIGS / "tiny.yaml")
METRIC_KEYS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate")


class Crash(BaseException):
    """Stands for the process dying: nothing in bpcli catches it."""


def _config(mnist_dir: Path) -> config.Config:
    return config.load(TINY, [f"data.path={mnist_dir}", "data.limit=400", "data.validation_size=100",
                              "training.epochs=2", "training.optimizer.name=momentum", "training.batch_size=50"])


def _same_run(a: Path, b: Path) -> None:
    """Run directories a and b hold bitwise the same parameters, metrics and best checkpoint."""
    for name in ("last.npz", "best.npz"):
        x, y = checkpoint.load(a / name), checkpoint.load(b / name)
        assert (x.epoch, x.step) == (y.epoch, y.step), name
        for l in x.network.layers:
            assert np.array_equal(x.network.w[l], y.network.w[l]) and np.array_equal(x.network.b[l], y.network.b[l])
    rows = [[getattr(r, k) for k in METRIC_KEYS] for r in RunFiles(a).read_metrics()]
    assert rows == [[getattr(r, k) for k in METRIC_KEYS] for r in RunFiles(b).read_metrics()]


def _resume(cfg: config.Config, root: Path) -> None:
    """What `train --resume root` does: lock and recover, load, restore, finish."""
    files = RunFiles.open(root)
    trainer = Trainer(cfg, load_data(cfg))
    trainer.restore(checkpoint.load(root / "last.npz"))
    fit(trainer, files)
    files.release()


@pytest.fixture(scope="module")
def straight(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("straight") / "run"
    cfg = _config(mnist_dir)
    files = RunFiles.create(root)
    fit(Trainer(cfg, load_data(cfg)), files)
    files.release()
    return root


@pytest.mark.slow
def test_a_crash_at_every_write_step_resumes_to_the_uninterrupted_run(
    mnist_dir: Path, straight: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(mnist_dir)
    data = load_data(cfg)
    real_replace = os.replace
    calls = 0

    def counting(*args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        real_replace(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", counting)
    files = RunFiles.create(tmp_path / "count")
    fit(Trainer(cfg, data), files)
    files.release()
    steps = calls  # every rename a run makes: staged files, the commit record, installs
    assert steps >= 12

    for k in range(1, steps + 1):
        seen = 0

        def crash_at_k(*args: object, **kwargs: object) -> None:
            nonlocal seen
            seen += 1
            if seen == k:
                raise Crash
            real_replace(*args, **kwargs)  # type: ignore[arg-type]

        root = tmp_path / f"crash-{k}"
        monkeypatch.setattr(os, "replace", crash_at_k)
        files = RunFiles.create(root)
        with pytest.raises(Crash):
            fit(Trainer(cfg, data), files)
        files.release()
        monkeypatch.setattr(os, "replace", real_replace)
        if not (root / "last.npz").exists():  # died before the first commit: start again
            files = RunFiles.create(root, force=True)
            fit(Trainer(cfg, data), files)
            files.release()
        else:
            _resume(cfg, root)
        _same_run(root, straight)
        assert not [p.name for p in root.iterdir() if p.name.endswith((".tmp", ".next"))]


@pytest.mark.slow
def test_kill_9_at_a_random_moment_then_resume_is_the_uninterrupted_run(
    mnist_dir: Path, tmp_path: Path
) -> None:
    sets = [f"data.path={mnist_dir}", "data.limit=3000", "data.validation_size=500", "training.epochs=40",
            "training.batch_size=10"]
    argv = [sys.executable, "-m", "bpcli", "train", TINY, *[a for s in sets for a in ("--set", s)], "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = tmp_path / "run"
    proc = subprocess.Popen([*argv, "--out", str(run)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (run / rundir.COMMIT).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(float(np.random.default_rng().uniform(0, 0.3)))  # anywhere in the next epochs
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    resumed = subprocess.run([sys.executable, "-m", "bpcli", "train", "--resume", str(run), "--quiet"], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    subprocess.run([*argv, "--out", str(tmp_path / "straight")], env=env, cwd=ROOT, check=True, timeout=120,
                   stdout=subprocess.DEVNULL)
    _same_run(run, tmp_path / "straight")


def test_an_interrupt_between_epochs_resumes_bitwise(mnist_dir: Path, straight: Path, tmp_path: Path) -> None:
    cfg = _config(mnist_dir)
    trainer = Trainer(cfg, load_data(cfg))
    files = RunFiles.create(tmp_path / "run")
    asked = 0

    def stop_before_epoch_2() -> bool:  # the first question of epoch 2 comes before its first batch
        nonlocal asked
        asked += 1
        return asked == trainer.steps_per_epoch + 1

    with pytest.raises(Interrupted):
        fit(trainer, files, should_stop=stop_before_epoch_2)
    files.release()
    saved = checkpoint.load(tmp_path / "run" / "last.npz")
    assert (saved.epoch, saved.rng_state["position"]["batch"]) == (1, 0)
    _resume(cfg, tmp_path / "run")
    _same_run(tmp_path / "run", straight)


def test_a_full_disk_is_one_line_and_the_last_checkpoint_stays(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = rundir.write_atomic
    checkpoints = 0

    def fills_up(path: Path, data: bytes) -> None:
        nonlocal checkpoints
        checkpoints += path.name == ".last.npz.next"
        if checkpoints > 1:  # epoch 1 is committed; the disk is full when epoch 2's checkpoint is written
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(rundir, "write_atomic", fills_up)
    out = tmp_path / "run"
    sets = [f"data.path={mnist_dir}", "data.limit=400", "data.validation_size=100", "training.epochs=2"]
    result = CliRunner().invoke(app, ["train", TINY, *[a for s in sets for a in ("--set", s)], "--out", str(out),
                                      "--quiet"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"error: cannot write {out / 'last.npz'}: the disk is full; the run's last complete checkpoint is unchanged; "
        "free space or choose another directory with --out, then resume"]
    assert checkpoint.load(out / "last.npz").epoch == 1 and len(RunFiles(out).read_metrics()) == 1


def test_leftovers_of_killed_writes_are_removed_and_uncommitted_files_ignored(straight: Path, tmp_path: Path) -> None:
    root = tmp_path / "run"
    root.mkdir()
    for p in straight.iterdir():
        (root / p.name).write_bytes(p.read_bytes())
    (root / ".last.npz.k2j3h4.tmp").write_bytes(b"half a checkpoint")
    (root / ".metrics.jsonl.next").write_bytes(b'{"epoch": 99}\n')  # staged, never committed
    before = (root / "metrics.jsonl").read_bytes()
    RunFiles.open(root).release()
    assert sorted(p.name for p in root.iterdir() if p.name.endswith((".tmp", ".next"))) == []
    assert (root / "metrics.jsonl").read_bytes() == before


def test_two_runs_cannot_share_a_directory_and_force_spares_a_live_one(tmp_path: Path) -> None:
    root = tmp_path / "run"
    first = RunFiles.create(root)
    (root / "last.npz").write_bytes(b"the live run's")
    for force in (False, True):
        with pytest.raises(RunDirError, match=rf"is in use by a bpcli run \(process {os.getpid()}\)"):
            RunFiles.create(root, force=force)
    assert (root / "last.npz").read_bytes() == b"the live run's"
    first.release()
    RunFiles.create(root, force=True).release()  # once it is over, --force replaces its outputs
    assert not (root / "last.npz").exists()


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_note(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    sets = [f"data.path={mnist_dir}", "data.limit=400", "data.validation_size=100", "training.epochs=1"]
    argv = ["train", TINY, *[a for s in sets for a in ("--set", s)], "--out", str(out), "--json"]
    assert CliRunner().invoke(app, argv).exit_code == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / rundir.LOCK).write_text(dead.stdout)
    result = CliRunner().invoke(app, ["train", "--resume", str(out), "--set", "training.epochs=2", "--json"])
    assert result.exit_code == 0, result.output
    assert f"note: took over the lock of process {dead.stdout.strip()} in {out}, which is no longer running" \
        in result.stderr
    assert json.loads(result.stdout)["epochs"] == 2


def test_a_position_beyond_the_epoch_is_refused_on_resume(straight: Path, tmp_path: Path) -> None:
    root = tmp_path / "run"
    root.mkdir()
    for p in straight.iterdir():
        (root / p.name).write_bytes(p.read_bytes())
    ckpt = checkpoint.load(root / "last.npz")
    ckpt.rng_state["position"]["batch"] = ckpt.step  # within what load can check, beyond an epoch of 8 batches
    ckpt.rng_state["position"]["epoch_rng_state"] = ckpt.rng_state["rng"]
    ckpt.config = config.load(TINY, [f"data.path={ckpt.config.data.path}", "data.limit=400",
                                     "data.validation_size=100", "training.epochs=3",
                                     "training.optimizer.name=momentum", "training.batch_size=50"])
    checkpoint.save(root / "last.npz", ckpt)
    (root / rundir.COMMIT).unlink()
    result = CliRunner().invoke(app, ["train", "--resume", str(root)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert (f"error: --resume {root}: checkpoint of epoch 2: its position is batch {ckpt.step}, beyond the 8 "
            "batches of an epoch of this data") in result.output


def test_two_sigterms_10_ms_apart_give_one_message_and_a_resumable_run(mnist_dir: Path, tmp_path: Path) -> None:
    sets = [f"data.path={mnist_dir}", "data.limit=3000", "data.validation_size=500", "training.epochs=30",
            "training.batch_size=10"]
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "bpcli", "train", TINY, *[a for s in sets for a in ("--set", s)],
                             "--out", str(run), "--quiet"], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not (run / rundir.COMMIT).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, output
    assert output.count("SIGTERM: stopped at epoch") == 1 and output.count("resume with:") == 1
    assert checkpoint.load(run / "last.npz").epoch < 30


def test_a_disk_too_small_for_the_checkpoints_is_refused_before_training(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2 << 20, 0, 2 << 20))
    out = tmp_path / "run"
    sets = [f"data.path={mnist_dir}", "data.limit=400", "data.validation_size=100", "training.epochs=1",
            "model.layers=[784, 512, 10]"]
    result = CliRunner().invoke(app, ["train", TINY, *[a for s in sets for a in ("--set", s)], "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: run directory {out} has 2.0 MiB free, and this run's checkpoints need "
                                    "about 6.5 MiB")
    assert not (out / "last.npz").exists() and not (out / "metrics.jsonl").exists()


def test_a_commit_record_naming_files_outside_the_run_installs_nothing_there(tmp_path: Path) -> None:
    """A crafted .commit.json (a run directory someone sent you) names /abs/victim and ../victim with
    staged content of the right digest: opening the run must not overwrite them; its own file still
    installs."""
    import hashlib

    root = tmp_path / "run"
    root.mkdir()
    outside = [tmp_path / "victim-abs.txt", tmp_path / "victim-rel.txt"]
    for victim in outside:
        victim.write_text("mine\n")
    payload, own = b"overwritten\n", b'{"epoch": 1}\n'
    names = {str(outside[0]): payload, "../victim-rel.txt": payload, "metrics.jsonl": own}
    for name, data in names.items():
        staged = root / f".{name}{rundir.STAGED}"
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_bytes(data)
    record = {"epoch": 1, "batch": 0, "time": 0, "files": {n: hashlib.sha256(d).hexdigest() for n, d in names.items()}}
    (root / rundir.COMMIT).write_text(json.dumps(record))
    RunFiles.open(root).release()
    assert [v.read_text() for v in outside] == ["mine\n", "mine\n"]
    assert (root / "metrics.jsonl").read_bytes() == own


@pytest.mark.parametrize("damage", ["a bad line", "a directory"])
def test_resume_refuses_metrics_that_lost_rows_and_changes_nothing(mnist_dir: Path, tmp_path: Path,
                                                                    damage: str) -> None:
    """metrics.jsonl with fewer readable rows than last.npz's epochs is damage: resuming replaced it with
    the rows it could read plus a new one (a gap in the epochs; the rest gone), or, for a directory, left
    staged files behind. Now: one line, exit 2, and every file as it was."""
    import hashlib

    root = tmp_path / "run"
    sets = [f"data.path={mnist_dir}", "data.limit=400", "data.validation_size=100", "training.epochs=2"]
    argv = ["train", TINY, *[a for s in sets for a in ("--set", s)], "--out", str(root), "-q"]
    assert CliRunner().invoke(app, argv).exit_code == 0
    first = (root / "metrics.jsonl").read_text().splitlines()[0]
    if damage == "a bad line":
        (root / "metrics.jsonl").write_text(first + "\n{not json\n")
    else:
        (root / "metrics.jsonl").unlink()
        (root / "metrics.jsonl").mkdir()

    def snapshot() -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
                for p in root.iterdir() if p.name != ".bpcli.lock"}

    before = snapshot()
    result = CliRunner().invoke(app, ["train", "--resume", str(root), "--set", "training.epochs=3"])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1, result.output
    assert "holds 1 of the 2 epochs" in result.stderr or "holds 0 of the 2 epochs" in result.stderr
    assert snapshot() == before
