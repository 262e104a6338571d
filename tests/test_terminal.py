"""`bpcli train` in a real pseudo-terminal: the live view moves during an epoch, epoch rows appear as
epochs end, Ctrl-C saves and prints a resume command that continues the same run bitwise, and no
traceback ever reaches the screen. CliRunner cannot see any of this: it is not a terminal.

The screen is reconstructed with pyte (a terminal emulator), so the assertions are about what a person
would see, at 80 and 60 columns.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bpcli import checkpoint

from conftest import CONFIGS, ROOT

pexpect = pytest.importorskip("pexpect")
pyte = pytest.importorskip("pyte")

MNIST = str(CONFIGS / "mnist.yaml")
PROGRESS = re.compile(r"epoch (\d+)/(\d+) .*?([\d,]+)/([\d,]+)")


def _bpcli() -> list[str]:
    """The installed `bpcli` script beside this Python, as a user would type it; else `python -m bpcli`."""
    script = Path(sys.executable).parent / "bpcli"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "bpcli"]


class Terminal:
    """A command in a pseudo-terminal of a given size, with the screen it draws."""

    def __init__(self, argv: list[str], columns: int, cwd: Path, rows: int = 40) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "COLUMNS": str(columns),
               "LINES": str(rows)}
        env.pop("NO_COLOR", None)
        # SIGINT as an interactive shell gives its foreground job: pytest started in the background by
        # a script has it ignored, which the child would inherit (exec keeps SIG_IGN), and Ctrl-C would
        # then not reach a command that relies on Python's own handler (gradcheck).
        self.child = pexpect.spawn(argv[0], argv[1:], dimensions=(rows, columns), cwd=str(cwd), env=env,
                                   encoding="utf-8", codec_errors="replace", timeout=60,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.screen = pyte.Screen(columns, rows)
        self.stream = pyte.Stream(self.screen)
        self.raw = ""

    def read(self, seconds: float = 0.05) -> str:
        """Feed whatever arrived within `seconds` to the screen; return it."""
        try:
            chunk = self.child.read_nonblocking(65536, timeout=seconds)
        except pexpect.TIMEOUT:
            return ""
        except pexpect.EOF:
            return ""
        self.raw += chunk
        self.stream.feed(chunk)
        return chunk

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def wait_for(self, predicate: "callable[[list[str]], bool]", timeout: float = 60) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read()
            if predicate(self.lines()):
                return self.lines()
            if not self.child.isalive():
                self.read()
                break
        raise AssertionError("screen never matched; it shows:\n" + "\n".join(self.lines()))

    def finish(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self.child.isalive() and time.monotonic() < deadline:
            self.read(0.1)
        while self.read(0.05):
            pass
        self.child.close()
        assert self.child.exitstatus is not None, f"did not exit: {self.lines()}"
        return self.child.exitstatus


def _epoch_row(lines: list[str], epoch: int, epochs: int) -> bool:
    return any(re.match(rf"\s*{epoch}/{epochs}\s+\d", line) for line in lines)


def _sets(mnist_dir: Path, *extra: str) -> list[str]:
    sets = [f"data.path={mnist_dir}", "data.limit=20000", "data.validation_size=2000", "training.epochs=3", *extra]
    return [arg for s in sets for arg in ("--set", s)]


@pytest.mark.parametrize("columns", [80, 60])
def test_live_view_moves_during_an_epoch_and_rows_appear_as_epochs_end(
    mnist_dir: Path, tmp_path: Path, columns: int
) -> None:
    term = Terminal([*_bpcli(), "train", MNIST, *_sets(mnist_dir), "--out", str(tmp_path / "run")],
                    columns, tmp_path)
    seen: set[int] = set()  # examples-done counts shown for epoch 1 before its row appeared
    while not _epoch_row(term.lines(), 1, 3):
        term.read()
        for line in term.lines():
            m = PROGRESS.search(line)
            if m and m.group(1) == "1":
                seen.add(int(m.group(3).replace(",", "")))
        assert term.child.isalive() or _epoch_row(term.lines(), 1, 3), "\n".join(term.lines())
    assert len({n for n in seen if 0 < n < 18000}) >= 2, f"the progress counter did not move in epoch 1: {seen}"
    assert not _epoch_row(term.lines(), 3, 3), "epoch 3's row was there as soon as epoch 1's"
    assert term.finish() == 0
    screen = term.lines()
    assert all(len(line) <= columns for line in screen)
    assert _epoch_row(screen, 2, 3) and _epoch_row(screen, 3, 3)
    assert sum(1 for line in screen if line.startswith("mnist:")) <= 1  # the title is not left twice
    assert "…" not in "\n".join(screen)  # no number cut to fit
    assert "test accuracy" in "\n".join(screen) and "Traceback" not in term.raw
    # The summary is wrapped at word boundaries, not by the terminal mid-number ("97.4" / "0%").
    test = json.loads((tmp_path / "run" / "result.json").read_text())["test_accuracy"]
    best = max(json.loads(row)["val_accuracy"] for row in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
    text = "\n".join(screen)
    for label, accuracy in (("test accuracy", test), ("best validation accuracy", best)):
        words = r"\s+".join(label.split())
        shown = re.search(rf"{words}\s+(\S+)", text)  # \s+ also spans a wrap between two words
        assert shown and shown.group(1) == f"{100 * accuracy:.2f}%", text
    assert "metrics.jsonl" in text, text


def test_ctrl_c_prints_a_resume_command_that_continues_the_same_run_bitwise(mnist_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # threads=1: "auto" counts the cores other processes keep busy, and the straight run below must sum
    # in the same order as the resumed one (which keeps the count its checkpoint recorded).
    sets = _sets(mnist_dir, "training.epochs=2", "training.threads=1")  # --sets the resume must not repeat
    term = Terminal([*_bpcli(), "train", MNIST, *sets, "--out", str(run)], 80, tmp_path)
    term.wait_for(lambda lines: _epoch_row(lines, 1, 2))
    term.wait_for(lambda lines: any((m := PROGRESS.search(line)) and m.group(1) == "2" and m.group(3) != "0"
                                    for line in lines))
    term.child.sendintr()
    assert term.finish() == 130
    text = "\n".join(term.lines())
    assert "SIGINT: stopped at epoch 2, batch" in text and "Traceback" not in term.raw
    # From the byte stream, not the screen: a command too long for the line gets a line of its own that
    # bpcli never breaks (the terminal wraps it; copied, it is one line).
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", term.raw)
    command = re.search(r"resume with:\s*([^\r\n]+)", plain).group(1).strip()  # type: ignore[union-attr]
    assert command == f"bpcli train --resume {shlex.quote(str(run))}"
    assert checkpoint.load(run / "last.npz").rng_state["position"]["batch"] > 0  # saved inside epoch 2

    # The printed command, from another directory, continues the run to its end.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    argv = _bpcli() + shlex.split(command)[1:] + ["--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(argv, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr

    straight = subprocess.run(_bpcli() + ["train", MNIST, *sets, "--out", str(tmp_path / "straight"), "--quiet"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert straight.returncode == 0, straight.stdout + straight.stderr
    a, b = checkpoint.load(run / "last.npz"), checkpoint.load(tmp_path / "straight" / "last.npz")
    assert a.epoch == b.epoch == 2
    for l in a.network.layers:
        assert np.array_equal(a.network.w[l], b.network.w[l]) and np.array_equal(a.network.b[l], b.network.b[l])


@pytest.mark.parametrize("argv", [["configs"], ["data", "where"], ["gradcheck", "tiny", "--path", "reference"],
                                  ["train", "tiny", "--set", "training.optimizer.momentum=2"]],
                         ids=["configs", "where", "gradcheck", "error"])
def test_messages_wrap_between_words_on_a_narrow_terminal(argv: list[str]) -> None:
    """At 60 columns every word of the piped output is whole on the screen: the lines are wrapped by bpcli
    at spaces, not cut by the terminal mid-word ("scaled_no" / "rmal", "(PNG, JP" / "EG"). Piped, each
    message stays one line. Run in / (nothing is written), so that no path is a word wider than the screen."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "60"}
    piped = subprocess.run([*_bpcli(), *argv], cwd="/", env=env, capture_output=True, text=True, timeout=60)
    term = Terminal([*_bpcli(), *argv], 60, Path("/"), rows=100)
    code = term.finish()
    assert code == piped.returncode and "Traceback" not in term.raw
    words = (piped.stdout + piped.stderr).split()
    shown = "\n".join(term.lines()).split()
    assert max(len(line) for line in (piped.stdout + piped.stderr).splitlines()) > 60, piped  # so there is a wrap
    assert [w for w in words if not set(w) <= set("─━")] == [w for w in shown if not set(w) <= set("─━")]


def test_a_long_gradcheck_says_where_it_is_and_ctrl_c_stops_it_without_an_error(mnist_dir: Path,
                                                                                  tmp_path: Path) -> None:
    """300 examples of mnist.yaml's network take about a minute: a spinner names the group being
    differentiated (the screen was blank), and Ctrl-C is a stop, not an `error:` (exit 130)."""
    argv = [*_bpcli(), "gradcheck", MNIST, "--set", f"data.path={mnist_dir}", "--batch", "300", "--path",
            "reference", "--json", str(tmp_path / "gc.json")]
    term = Terminal(argv, 80, tmp_path)
    term.wait_for(lambda lines: any("numerical derivatives of w^2" in line for line in lines))
    term.child.sendintr()
    assert term.finish() == 130
    text = "\n".join(term.lines())
    assert "SIGINT: stopped" in text and "error" not in text and "Traceback" not in term.raw
    assert not (tmp_path / "gc.json").exists()  # nothing half-written


def test_closing_the_terminal_saves_the_position(mnist_dir: Path, tmp_path: Path) -> None:
    """SIGHUP after the terminal closed: every write to it fails (EIO), and a live view drawing once more
    ended the run before its position was saved (exit 2, or a traceback). It saves, and exits 129."""
    import pty
    import select

    run = tmp_path / "run"
    argv = [*_bpcli(), "train", MNIST, *_sets(mnist_dir, "training.epochs=3", "training.threads=1"),
            "--out", str(run)]
    pid, fd = pty.fork()
    if pid == 0:  # the child: bpcli in the pseudo-terminal, SIGINT/SIGHUP as a shell gives them
        os.environ["PYTHONPATH"] = str(ROOT)
        os.execvp(argv[0], argv)
    deadline = time.monotonic() + 60
    seen = ""
    while time.monotonic() < deadline and "epoch 2/3" not in seen:  # inside the second epoch
        if select.select([fd], [], [], 0.1)[0]:
            try:
                seen += os.read(fd, 65536).decode(errors="replace")
            except OSError:
                break
    os.close(fd)  # the terminal goes away: the kernel sends SIGHUP
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 129
    saved = checkpoint.load(run / "last.npz")
    assert 1 <= saved.epoch < 3 and not (run / "result.json").exists()  # stopped and saved, not finished


def test_print_config_is_never_wrapped_on_a_narrow_terminal(tmp_path: Path) -> None:
    """Rich wrapped long YAML lines at the terminal's width: copied to a file, the config was invalid."""
    deep = tmp_path / ("a-rather-long-directory-name-" * 3) / "mnist"
    term = Terminal([*_bpcli(), "train", "tiny", "--set", f"data.path={deep}", "--print-config"], 40, tmp_path)
    assert term.finish() == 0
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", term.raw)
    assert f"  path: {deep}\r\n" in plain
