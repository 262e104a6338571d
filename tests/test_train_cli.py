"""What `bpcli train` and `bpcli evaluate` say and do around a run: resuming from the run directory
alone, the one change a resume allows, messages on stderr when stdout is JSON, signals at awkward
moments, file modes, layouts from 60 to 120 columns, and help that reads well."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import stat
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from bpcli import checkpoint, runner
from bpcli.cli import app, console as cli_console
from bpcli.render import train as view
from bpcli.train import EpochMetrics

from conftest import CONFIGS

TINY = str(CONFIGS / "tiny.yaml")


def sets(mnist_dir: Path, *extra: str) -> list[str]:
    items = [f"data.path={mnist_dir}", "data.limit=600", "data.validation_size=200", "training.epochs=2",
             "training.schedule.name=cosine", *extra]
    return [arg for s in items for arg in ("--set", s)]


@pytest.fixture
def finished_run(mnist_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", TINY, *sets(mnist_dir), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def test_resuming_a_finished_run_says_so_and_how_to_extend_it(finished_run: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--resume", str(finished_run)])
    assert result.exit_code == 0
    assert result.output.strip() == (f"{finished_run} has already finished its 2 epochs; to train it longer: "
                                     f"bpcli train --resume {finished_run} --set training.epochs=N")


def test_extending_a_finished_run_continues_it_and_explains_the_schedule(finished_run: Path) -> None:
    before = checkpoint.load(finished_run / "last.npz")
    result = CliRunner().invoke(app, ["train", "--resume", str(finished_run), "--set", "training.epochs=3", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "note: training.epochs 2 -> 3: the run continues to epoch 3; the cosine schedule now ends at epoch 3" \
        in result.stderr
    summary = json.loads(result.stdout)
    assert summary["epochs"] == 3 and summary["status"] == "finished"
    # This session trained one epoch; the run as a whole three.
    rows = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert summary["train_seconds"] == pytest.approx(rows[2]["seconds"])
    assert summary["run_train_seconds"] == pytest.approx(sum(r["seconds"] for r in rows))
    after = checkpoint.load(finished_run / "last.npz")
    assert after.epoch == 3 and after.config.training.epochs == 3
    assert not np.array_equal(after.network.w[2], before.network.w[2])


def test_resume_refuses_changes_other_than_epochs_and_names_each(finished_run: Path, mnist_dir: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--resume", str(finished_run), "--set", "training.seed=3",
                                      "--set", "training.learning_rate=0.25"])
    assert result.exit_code == 2
    assert ("this would be a different run (training.learning_rate: 0.5 in the run, 0.25 here; training.seed: 0 in "
            "the run, 3 here)") in result.output
    # The config the run was started with is the same run; its relative data path is the same directory.
    same = CliRunner().invoke(app, ["train", TINY, *sets(mnist_dir), "--resume", str(finished_run)])
    assert same.exit_code == 0 and "already finished" in same.output
    shorter = CliRunner().invoke(app, ["train", "--resume", str(finished_run), "--set", "training.epochs=1"])
    assert shorter.exit_code == 2 and "the run has already done 2; choose 2 or more" in shorter.output
    for extra in (["--out", "elsewhere"], ["--force"]):
        refused = CliRunner().invoke(app, ["train", "--resume", str(finished_run), *extra])
        assert refused.exit_code == 2 and "cannot be used with --resume" in refused.output


def test_train_without_config_or_resume_is_one_line() -> None:
    result = CliRunner().invoke(app, ["train"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: train needs a CONFIG file, e.g. `bpcli train configs/tiny.yaml`, or --resume RUN_DIR to continue a run"]
    result = CliRunner().invoke(app, ["train", str(CONFIGS)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("error: ")


class _StopAfter:
    """Stands in for the SIGINT handler: reports a stop request at the n-th question."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, flag: runner.StopFlag) -> bool:
        self.n -= 1
        if self.n <= 0:
            flag.signum = signal.SIGINT
        return flag.signum is not None


def test_interrupt_with_json_keeps_stdout_json_and_messages_on_stderr(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = _StopAfter(3)
    monkeypatch.setattr(runner.StopFlag, "__call__", lambda self: stop(self))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", TINY, *sets(mnist_dir), "--out", str(out), "--json"])
    assert result.exit_code == 130
    report = json.loads(result.stdout)
    assert report == {"status": "interrupted", "signal": "SIGINT", "epoch": 1, "batch": 2, "run_dir": str(out),
                      "resume_command": f"bpcli train --resume {out}"}
    assert "SIGINT: stopped at epoch 1, batch 2/" in result.stderr
    assert f"resume with: bpcli train --resume {out}" in result.stderr


def test_log_format_jsonl_prints_one_object_per_epoch(mnist_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", TINY, *sets(mnist_dir), "--out", str(tmp_path / "r"),
                                      "--log-format", "jsonl"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events] == ["start", "epoch", "epoch", "summary"]
    logged = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in e.items() if k != "event"} for e in events[1:3]] == logged


def test_second_ctrl_c_stops_at_once_with_a_message(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with runner.StopFlag() as flag:
        os.kill(os.getpid(), signal.SIGINT)
        assert flag() and flag.name == "SIGINT"
        os.kill(os.getpid(), signal.SIGTERM)  # a repeated TERM is ignored: the run is already stopping
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)

    def impatient(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "fit", impatient)
    result = CliRunner().invoke(app, ["train", TINY, *sets(mnist_dir), "--out", str(tmp_path / "r")])
    assert result.exit_code == 130
    assert result.output.strip().splitlines()[-1] == ("stopped at once, before the first checkpoint was saved; "
                                                      "start the run again with --force to train it (its directory "
                                                      "holds no checkpoint to resume)")


def test_a_signal_after_the_last_write_still_exits_0(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fit = runner.fit

    def late_signal(trainer, files, *callbacks, **kwargs):  # type: ignore[no-untyped-def]
        summary = real_fit(trainer, files, *callbacks, **kwargs)
        callbacks[3].signum = signal.SIGINT  # should_stop is the StopFlag
        return summary

    monkeypatch.setattr(runner, "fit", late_signal)
    result = CliRunner().invoke(app, ["train", TINY, *sets(mnist_dir), "--out", str(tmp_path / "r"), "--quiet"])
    assert result.exit_code == 0
    assert "note: SIGINT arrived after the last epoch; the test pass was finished and the outputs are complete" in result.output


def test_resuming_a_run_stopped_during_its_test_pass_tests_it(finished_run: Path, tmp_path: Path) -> None:
    """Stopped at once during the final test pass, a run had every epoch and no result.json; its printed
    resume command said 'already finished' and never tested it."""
    import shutil

    run = tmp_path / "stopped-in-test"
    shutil.copytree(finished_run, run)
    expected = json.loads((run / "result.json").read_text())
    (run / "result.json").unlink()
    result = CliRunner().invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert "has finished its epochs but not its test pass (stopped during it): testing it now" in result.output
    tested = json.loads((run / "result.json").read_text())
    assert tested["state"] == "finished" and tested["test_accuracy"] == expected["test_accuracy"]
    again = CliRunner().invoke(app, ["train", "--resume", str(run)])
    assert "has already finished its 2 epochs" in again.output


def test_run_files_get_the_umask_mode_not_0600(finished_run: Path) -> None:
    old = os.umask(0o022)
    os.umask(old)
    expected = 0o666 & ~old
    for name in ("config.yaml", "metrics.jsonl", "last.npz", "best.npz"):
        assert stat.S_IMODE((finished_run / name).stat().st_mode) == expected, name


def test_evaluate_names_the_checkpoint_it_used(finished_run: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate", str(finished_run), "--json"])
    assert json.loads(result.stdout)["checkpoint"] == str(finished_run / "last.npz")
    shown = CliRunner().invoke(app, ["evaluate", str(finished_run / "best.npz")])
    assert f"after 2 epochs, from {finished_run / 'best.npz'}" in shown.output.replace("\n", "")


@pytest.mark.parametrize("width", [60, 80, 120])
def test_evaluate_and_gradcheck_fit_the_terminal_without_cutting_numbers(
    finished_run: Path, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_console, "_width", width)
    for argv in (["evaluate", str(finished_run)],
                 ["gradcheck", TINY, "--set", "model.layers=[784, 12, 10]", "--random-data"],
                 ["gradcheck", TINY, "--random-data", "--method", "directional", "--entries", "3"]):
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        # The closing lines are soft-wrapped sentences (the terminal wraps them at spaces).
        assert all(len(line) <= width for line in lines if not line.startswith(("note:", "PASS", "test accuracy")))
        assert "…" not in result.output


@pytest.mark.parametrize("width", [60, 80, 120])
def test_epoch_rows_and_progress_line_fit(width: int) -> None:
    row = EpochMetrics(epoch=10, train_loss=0.123456, train_accuracy=0.98765, val_loss=0.0712, val_accuracy=0.9841,
                       learning_rate=1.2345e-05, seconds=123.4, eval_seconds=0.5)
    lines = [view.header_line(30, width).plain, view.row_line(row, 30, width, best=True).plain]
    assert len({len(line) for line in lines}) == 1 and len(lines[0]) <= width  # aligned, and within the width
    assert "98.41%" in lines[1] and "1.23e-05" in lines[1] and "123.9" in lines[1]
    out = io.StringIO()
    Console(file=out, width=width, force_terminal=False).print(
        view.progress_line(3, 30, 23_040, 55_000, 0.5, width - 3))
    drawn = out.getvalue().splitlines()
    assert len(drawn) == 1 and len(drawn[0].rstrip()) <= width - 3 and "23,040/55,000" in drawn[0]


def test_a_failing_live_view_says_so_once_and_training_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise KeyError("rate")

    monkeypatch.setattr(view, "progress_line", broken)
    out = io.StringIO()
    live = view.LiveView(Console(file=out, width=80, force_terminal=True, color_system=None))
    live.start("title", 2, 100, "runs/x")
    for epoch in (1, 2):
        live.epoch_start(epoch)
        live.batch(50)
        live.epoch_end(EpochMetrics(epoch, 0.5, 0.8, 0.4, 0.85, 0.1, 1.0, 0.1))
    live.stop()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert text.count("warning: the live view stopped (KeyError: 'rate'); training goes on") == 1
    assert "epoch 1/2  train loss 0.5000" in text and "epoch 2/2  train loss 0.5000" in text
    assert "Traceback" not in text


def test_help_reads_well_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    for argv in (["-h"], ["train", "-h"], ["evaluate", "-h"], ["gradcheck", "-h"], ["explain", "-h"],
                 ["data", "-h"], ["data", "download", "-h"]):
        result = CliRunner().invoke(app, argv, env={"COLUMNS": "80"}, terminal_width=80)
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output
    listing = CliRunner().invoke(app, ["-h"], env={"COLUMNS": "80"}).output
    for name in ("train", "evaluate", "explain", "gradcheck", "data"):
        assert re.search(rf"│ {name}\s+\S.*\.\s+│", listing), name  # one full sentence per command


def test_shell_completion_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    # Typer detects the shell from the parent processes unless told not to; with no shell among them
    # (a test run started from a service or in the background) it names none and exits 1. The shell
    # is given here, as a user of --show-completion SHELL would.
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    result = CliRunner().invoke(app, ["--show-completion", "bash"])
    assert result.exit_code == 0 and "_bpcli_completion" in result.output


def test_an_internal_error_is_exit_4_and_one_line(finished_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("operands could not be broadcast\n  together with shapes (3,) (4,)")

    monkeypatch.setattr(runner, "evaluate", broken)
    result = CliRunner().invoke(app, ["evaluate", str(finished_run)])
    assert result.exit_code == 4 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        "error: internal error (ValueError: operands could not be broadcast together with shapes (3,) (4,)); this is "
        "a bug in bpcli: please report it with the command you ran (run it again with --debug or BPCLI_DEBUG=1 for "
        "the traceback)"]
    for argv, env in ((["--debug", "evaluate", str(finished_run)], {}),
                      (["evaluate", str(finished_run)], {"BPCLI_DEBUG": "1"})):
        debugged = CliRunner().invoke(app, argv, env=env)
        assert isinstance(debugged.exception, ValueError)  # the traceback is shown, not swallowed


def test_a_reader_that_goes_away_stops_the_run_quietly_and_it_resumes(mnist_dir: Path, tmp_path: Path) -> None:
    """`bpcli train ... | head -1`: exit 141 (128 + SIGPIPE) with nothing on stderr, as any Unix tool."""
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "run"
    argv = [sys.executable, "-m", "bpcli", "train", TINY, *sets(mnist_dir, "training.epochs=30"), "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"tiny: ")
    proc.stdout.close()  # the reader goes away
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141 and err == b""
    resumed = CliRunner().invoke(app, ["train", "--resume", str(out), "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["epochs"] == 30
