"""bpcli runs: every state a run directory can be in (finished, interrupted, running, diverged, broken),
read without evaluating or writing anything; the table at 60, 80 and 120 columns with every number
whole; --json; and two runs compared side by side."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bpcli import checkpoint, config, runs
from bpcli.cli import app, console as cli_console
from bpcli.runner import load_data
from bpcli.rundir import RESULT, RunFiles
from bpcli.train import Interrupted, Trainer, fit

from conftest import CONFIGS

TINY = str(CONFIGS / "tiny.yaml")
runner = CliRunner()


def _sets(mnist_dir: Path, *more: str) -> list[str]:
    out = []
    for item in (f"data.path={mnist_dir}", "data.limit=1000", "data.validation_size=200", *more):
        out += ["--set", item]
    return out


def _train(root: Path, mnist_dir: Path, *more: str) -> int:
    result = runner.invoke(app, ["train", TINY, *_sets(mnist_dir, *more), "--out", str(root), "--quiet"])
    return result.exit_code


def _interrupt(root: Path, cfg: config.Config, after_batches: int, resume: bool = False) -> None:
    """Train in `root` through the trainer API and stop after `after_batches` batches, as Ctrl-C would."""
    files = RunFiles.open(root) if resume else RunFiles.create(root)
    files.write("config.yaml", cfg.to_yaml().encode())
    trainer = Trainer(cfg, load_data(cfg))
    if resume:
        trainer.restore(checkpoint.load(root / "last.npz"))
    batches = 0

    def on_batch(done: int) -> None:
        nonlocal batches
        batches += 1

    try:
        with pytest.raises(Interrupted):
            fit(trainer, files, on_batch=on_batch, should_stop=lambda: batches >= after_batches)
    finally:
        files.release()


@pytest.fixture(scope="module")
def runs_dir(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run in each state that stays put (running is made per test: it needs a live lock)."""
    root = tmp_path_factory.mktemp("runs")
    assert _train(root / "finished", mnist_dir) == 0
    assert _train(root / "longer", mnist_dir, "training.epochs=3", "model.activation=relu",
                  "training.optimizer.name=momentum") == 0
    assert _train(root / "diverged", mnist_dir, "training.learning_rate=1e9", "model.activation=relu",
                  "model.output=identity", "model.cost=quadratic") == 3
    cfg = config.load(TINY, [f"data.path={mnist_dir}", "data.limit=1000", "data.validation_size=200",
                             "training.epochs=4"])
    _interrupt(root / "interrupted", cfg, after_batches=40)  # 32 batches an epoch: inside epoch 2
    broken = root / "broken"
    shutil.copytree(root / "finished", broken)
    (broken / "last.npz").write_bytes(b"PK\x03\x04 not really a checkpoint")
    (root / "not-a-run").mkdir()
    (root / "not-a-run" / "notes.txt").write_text("hello\n")
    return root


def _by_name(directory: Path) -> dict[str, runs.Run]:
    return {r.name: r for r in runs.read_all(directory)}


def test_each_state_is_read_from_the_directory_alone(runs_dir: Path) -> None:
    found = _by_name(runs_dir)
    assert set(found) == {"finished", "longer", "diverged", "interrupted", "broken"}
    assert {name: r.state for name, r in found.items()} == {
        "finished": "finished", "longer": "finished", "diverged": "diverged", "interrupted": "interrupted",
        "broken": "broken"}
    fin = found["finished"]
    result = json.loads((runs_dir / "finished" / RESULT).read_text())
    assert fin.test_accuracy == result["test_accuracy"] and 0.5 < fin.test_accuracy <= 1
    assert fin.test_loss == result["test_loss"]
    assert (fin.epochs_done, fin.epochs_planned, fin.layers) == (2, 2, [784, 16, 10])
    rows = RunFiles(runs_dir / "finished").read_metrics()
    assert fin.best_val_accuracy == max(r.val_accuracy for r in rows)  # type: ignore[type-var]
    assert fin.seconds == pytest.approx(sum(r.seconds + r.eval_seconds for r in rows))
    assert found["longer"].optimizer == "momentum 0.9, η=0.5"
    stopped = found["interrupted"]
    assert (stopped.epochs_done, stopped.epochs_planned, stopped.batch) == (1, 4, 8)
    assert stopped.resume == f"bpcli train --resume {runs_dir / 'interrupted'}"
    assert stopped.test_accuracy is None
    assert "training diverged" in (found["diverged"].problem or "")
    assert "not a readable bpcli checkpoint" in (found["broken"].problem or "")


def test_evaluate_and_plot_of_a_run_that_diverged_in_its_first_epoch_say_so(runs_dir: Path) -> None:
    """evaluate said only 'checkpoint not found', and plot 'no epoch has finished yet' as if it might."""
    run = runs_dir / "diverged"
    evaluated = CliRunner().invoke(app, ["evaluate", str(run)])
    assert evaluated.exit_code == 2
    assert "checkpoint not found; the run saved none: it stopped or diverged before its first epoch ended" \
        in evaluated.stderr
    drawn = CliRunner().invoke(app, ["plot", str(run)])
    assert "diverged: diverged in its first epoch; nothing to draw for it" in " ".join(drawn.output.split())


def test_a_live_run_is_running_and_listing_never_takes_its_lock(runs_dir: Path, tmp_path: Path) -> None:
    live = tmp_path / "live"
    shutil.copytree(runs_dir / "interrupted", live)
    files = RunFiles.open(live)
    try:
        run = runs.read(live)
        assert run.state == "running" and run.pid is not None
        runs.read(live)
        other = RunFiles(live)
        with pytest.raises(Exception, match="in use by a bpcli run"):
            other.lock()  # the listing did not release or take over the live run's lock
    finally:
        files.release()
    after = runs.read(live)
    assert after.state == "interrupted" and after.pid is None
    RunFiles.open(live).release()  # and nothing of the listing is left holding it


def test_a_run_resumed_after_it_finished_is_no_longer_reported_finished(runs_dir: Path, mnist_dir: Path,
                                                                         tmp_path: Path) -> None:
    again = tmp_path / "again"
    shutil.copytree(runs_dir / "finished", again)
    cfg = config.load(TINY, [f"data.path={mnist_dir}", "data.limit=1000", "data.validation_size=200",
                             "training.epochs=3"])
    _interrupt(again, cfg, after_batches=5, resume=True)
    run = runs.read(again)
    assert run.state == "interrupted" and run.test_accuracy is None  # result.json is older than the last commit


def test_a_run_killed_before_its_first_checkpoint_is_broken_and_says_why(tmp_path: Path) -> None:
    run = tmp_path / "early"
    run.mkdir()
    (run / "config.yaml").write_text(config.load(TINY).to_yaml())
    got = runs.read(run)
    assert got.state == "broken" and "before its first epoch ended" in (got.problem or "")


def _listing(width: int, directory: Path, monkeypatch: pytest.MonkeyPatch, *more: str) -> tuple[int, str]:
    monkeypatch.setattr(cli_console, "_width", width)
    result = runner.invoke(app, ["runs", str(directory), *more])
    return result.exit_code, result.stdout


@pytest.mark.parametrize("width", [60, 80, 120])
def test_the_table_fits_the_width_and_never_cuts_a_number(runs_dir: Path, width: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = _listing(width, runs_dir, monkeypatch)
    assert code == 0
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= width
    for run in runs.read_all(runs_dir):
        assert run.name in out
        words = set(re.split(r"\s+", out))
        for number in (f"{run.epochs_done}/{run.epochs_planned}",):
            assert number in words, (run.name, number)
        for value in (run.best_val_accuracy, run.test_accuracy):
            if value is not None:
                assert f"{100 * value:.2f}%" in words, (run.name, value)
    # What needs a sentence is below the table, whole.
    flat = " ".join(out.split())
    assert "interrupted was interrupted after epoch 1 of 4 (inside epoch 2, batch 8); resume it with:" in flat
    if len(f"  bpcli train --resume {runs_dir / 'interrupted'}") <= width:  # the command on a line of its own
        assert f"  bpcli train --resume {runs_dir / 'interrupted'}" in out.splitlines()
    assert "diverged diverged: training diverged" in flat and "broken is broken:" in flat


def test_layouts_change_with_the_width(runs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wide = _listing(160, runs_dir, monkeypatch)[1]
    assert re.search(r"\bnetwork\b", wide.splitlines()[0]) and "784-16-10 sigmoid/softmax" in wide
    compact = _listing(80, runs_dir, monkeypatch)[1]
    assert "network" not in compact.splitlines()[0] and "best val" in compact.splitlines()[0]
    narrow = _listing(60, runs_dir, monkeypatch)[1]
    assert "· best val " in narrow


def test_json_lists_every_run(runs_dir: Path) -> None:
    result = runner.invoke(app, ["runs", str(runs_dir), "--json"])
    assert result.exit_code == 0
    listed = {r["name"]: r for r in json.loads(result.stdout)}
    assert listed["interrupted"]["resume_command"].startswith("bpcli train --resume ")
    assert listed["finished"]["test_accuracy"] == runs.read(runs_dir / "finished").test_accuracy
    assert listed["broken"]["state"] == "broken" and listed["broken"]["problem"]
    assert set(listed["finished"]) >= {"started", "layers", "optimizer", "epochs_done", "epochs_planned",
                                       "best_val_accuracy", "test_accuracy", "seconds", "state"}


def test_a_run_directory_itself_lists_one_run_and_a_missing_one_is_one_line(runs_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["runs", str(runs_dir / "finished"), "--json"])
    assert [r["name"] for r in json.loads(result.stdout)] == ["finished"]
    result = runner.invoke(app, ["runs", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1 and "no such directory" in result.stderr
    empty = runner.invoke(app, ["runs", str(tmp_path)])
    assert empty.exit_code == 0 and "no runs here yet" in empty.stdout


def test_compare_shows_config_and_metric_differences_side_by_side(runs_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = runs_dir / "finished", runs_dir / "longer"
    c = runs.compare(a, b)
    assert {k for k, _, _ in c.config} == {"model.activation", "training.epochs", "training.optimizer.name"}
    assert ("training.epochs", 2, 3) in c.config
    rows = {r.label: r for r in c.metrics}
    ra, rb = runs.read(a), runs.read(b)
    assert ra.test_accuracy is not None and rb.test_accuracy is not None
    assert rows["test accuracy"].difference == pytest.approx(rb.test_accuracy - ra.test_accuracy)
    assert [e for e, _, _ in c.epochs] == [1, 2, 3] and c.epochs[2][1] is None
    for width in (60, 120):
        monkeypatch.setattr(cli_console, "_width", width)
        result = runner.invoke(app, ["runs", "compare", str(a), str(b)])
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert "…" not in out and max(len(line) for line in out.splitlines()) <= width
        assert re.search(r"training\.epochs\s+2\s+3", out)
        diff = 100 * (rb.test_accuracy - ra.test_accuracy)
        assert re.search(rf"test accuracy\s+{100 * ra.test_accuracy:.2f}%\s+{100 * rb.test_accuracy:.2f}%\s+"
                         rf"{diff:+.2f} pts", out)
    result = runner.invoke(app, ["runs", "compare", str(a), str(b), "--json"])
    report = json.loads(result.stdout)
    assert {"key": "training.epochs", "a": 2, "b": 3} in report["config"]
    bad = runner.invoke(app, ["runs", "compare", str(a)])
    assert bad.exit_code == 2 and "usage: bpcli runs compare A B" in bad.stderr
    not_run = runner.invoke(app, ["runs", "compare", str(a), str(runs_dir / "not-a-run")])
    assert not_run.exit_code == 2 and "not a run directory" in not_run.stderr


@pytest.mark.parametrize("width", [60, 80, 100, 120, 150])
def test_long_run_names_and_networks_are_never_folded(runs_dir: Path, width: int, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Run names as bpcli makes them (config name and timestamp) stay whole, as do the words of the
    network and optimizer: a layout that cannot keep them whole gives way to a narrower one."""
    names = ["deep-sigmoid-scaled-20261129-043136", "finished-20261129-043112", "longer-20261129-043144-2"]
    for name, source in zip(names, ("finished", "finished", "longer")):
        shutil.copytree(runs_dir / source, tmp_path / name)
    code, out = _listing(width, tmp_path, monkeypatch)
    assert code == 0 and "…" not in out
    assert max(len(line) for line in out.splitlines()) <= width
    words = set(out.split())
    for name in names:
        assert name in words
    assert {"784-16-10", "momentum", "η=0.5", "sigmoid/softmax", "relu/softmax"} <= words
