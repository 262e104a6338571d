"""`bpcli runs`: what each run directory holds, read without evaluating or writing anything; and two runs
compared, config and metrics side by side.

A run is read only through bpcli's own readers: `RunFiles` (metrics.jsonl, the JSON records, the
lock), `checkpoint.load` (last.npz, which also proves it usable) and `config` (config.yaml, for a run
that has no checkpoint yet). Its state:

    running      a live process holds the directory's lock (looked at, never taken)
    finished     all planned epochs done; result.json (written when a run ends) holds its test accuracy
    diverged     result.json says the latest session diverged (last.npz is the last good epoch)
    pruned       a sweep trial its pruner stopped on purpose after an epoch (result.json says so)
    interrupted  stopped before its planned epochs (Ctrl-C, SIGTERM, kill, crash): `train --resume` continues it,
                 or, for a sweep's trial, continuing the sweep runs it again
    broken       its config or checkpoint cannot be read, or it stopped before saving any checkpoint

result.json counts only when it is newer than the latest commit (.commit.json): a run resumed after it
finished or diverged has committed since, and its record is out of date.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bpcli import checkpoint as ckpt_io
from bpcli import config as config_module
from bpcli.config import Config
from bpcli.errors import BpcliError, UsageError
from bpcli.resume import command as resume_command, differences
from bpcli.sweep import SWEEP_FILE
from bpcli.rundir import COMMIT, LOCK, RESULT, EpochMetrics, RunFiles, finite

# What marks a directory as a run directory (any one of them).
MARKERS = ("config.yaml", "last.npz", "metrics.jsonl", COMMIT, LOCK, RESULT)
# runs/<config name>-<timestamp>[-n], as RunFiles.default_root names them.
STAMP = re.compile(r"-(\d{8}-\d{6})(?:-\d+)?$")


@dataclass
class Run:
    """One run directory as read: what it trained, how far it got, how well, and in what state."""

    name: str
    path: Path
    state: str
    started: float | None = None  # seconds since the epoch
    layers: list[int] | None = None
    activation: str | None = None
    output: str | None = None
    optimizer: str | None = None  # e.g. "momentum 0.9, η=0.1"
    epochs_done: int | None = None
    epochs_planned: int | None = None
    batch: int = 0  # batches done in the unfinished epoch (an interrupt inside an epoch)
    best_val_accuracy: float | None = None
    best_epoch: int | None = None
    test_accuracy: float | None = None
    test_loss: float | None = None
    seconds: float | None = None  # training and validation compute over all its epochs
    pid: int | None = None
    problem: str | None = None  # why broken, or the divergence message
    resume: str | None = None  # the command that continues an interrupted run
    sweep: Path | None = None  # the sweep directory of a trial, whose `sweep --resume` runs it again
    config: Config | None = field(default=None, repr=False)
    metrics: list[EpochMetrics] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "state": self.state,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)) if self.started else None,
                "layers": self.layers, "activation": self.activation, "output": self.output,
                "optimizer": self.optimizer, "epochs_done": self.epochs_done, "epochs_planned": self.epochs_planned,
                "batch": self.batch, "best_val_accuracy": self.best_val_accuracy, "best_epoch": self.best_epoch,
                "test_accuracy": self.test_accuracy, "test_loss": self.test_loss, "seconds": self.seconds,
                "pid": self.pid, "problem": self.problem, "resume_command": self.resume,
                "sweep": str(self.sweep) if self.sweep else None}


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / m).exists() for m in MARKERS)


def find(directory: str | Path = "runs") -> list[Path]:
    """The run directories in `directory` (or `directory` itself if it is one), oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"{directory}: no such directory; runs are in runs/ of the directory `bpcli train` ran in, "
                         "or give the directory that holds them")
    if is_run_dir(directory):
        return [directory]
    try:
        return sorted(p for p in directory.iterdir() if is_run_dir(p))
    except OSError as e:
        raise UsageError(f"{directory}: cannot list it ({e.strerror or e})") from None


def describe_optimizer(cfg: Config) -> str:
    t = cfg.training
    o = t.optimizer
    name = f"momentum {o.momentum:g}" if o.name == "momentum" else o.name
    return f"{name}, η={t.learning_rate:g}"


def read(path: str | Path) -> Run:
    """Everything `bpcli runs` shows of one run directory; never raises for a damaged one (it is broken)."""
    path = Path(path)
    files = RunFiles(path)
    run = Run(path.name or str(path), path, "broken")
    run.pid = files.in_use()
    problems: list[str] = []
    ckpt = None
    if files.last.is_file():
        try:
            ckpt = ckpt_io.load(files.last)
        except BpcliError as e:
            problems.append(str(e))
    cfg = ckpt.config if ckpt is not None else None
    if cfg is None and files.config.is_file():
        try:
            cfg = config_module.load(files.config)
        except BpcliError as e:
            problems.append(str(e))
    run.metrics = files.read_metrics()
    run.config = cfg
    run.started = _started(files)
    if cfg is not None:
        m = cfg.model
        run.layers, run.activation, run.output = list(m.layers), m.activation, m.output
        run.optimizer = describe_optimizer(cfg)
        run.epochs_planned = cfg.training.epochs
    if ckpt is not None:
        run.epochs_done = ckpt.epoch
        run.batch = ckpt.batch
    else:
        run.epochs_done = len(run.metrics) if cfg is not None else None
    scored = [r for r in run.metrics if r.val_accuracy is not None]
    if scored:
        best = max(scored, key=lambda r: r.val_accuracy)  # type: ignore[arg-type, return-value]
        run.best_val_accuracy, run.best_epoch = best.val_accuracy, best.epoch
    if run.metrics:
        run.seconds = sum(r.seconds + r.eval_seconds for r in run.metrics)
    result = files.latest_result()
    if run.pid is not None:
        run.state = "running"
    elif problems:
        run.problem = problems[0]
    elif cfg is None:
        run.problem = "no config.yaml and no checkpoint: not a run bpcli can read"
    elif result is not None and result.get("state") == "diverged":
        run.state = "diverged"
        message = result.get("message")
        run.problem = message[:300] if isinstance(message, str) else "training diverged"
    elif ckpt is None:
        run.problem = "no checkpoint: it stopped before its first epoch ended; start it again"
    elif result is not None and result.get("state") == "pruned":
        run.state = "pruned"
    elif ckpt.epoch >= cfg.training.epochs and run.batch == 0:
        run.state = "finished"
        if result is not None and result.get("state") == "finished":
            run.test_accuracy = finite(result.get("test_accuracy"), 0, 1)
            run.test_loss = finite(result.get("test_loss"))
    else:
        run.state = "interrupted"
        if (path.parent / SWEEP_FILE).is_file():
            run.sweep = path.parent  # `train --resume` would continue it outside the study
        else:
            run.resume = resume_command(path)
    return run


def read_all(directory: str | Path = "runs") -> list[Run]:
    runs = [read(p) for p in find(directory)]
    return sorted(runs, key=lambda r: (r.started or 0.0, r.name))


def _started(files: RunFiles) -> float | None:
    """When the run started: the timestamp bpcli put in the directory's default name, else when its
    config.yaml was last written (the start of its latest session)."""
    stamp = STAMP.search(files.root.name)
    if stamp:
        try:
            return time.mktime(time.strptime(stamp.group(1), "%Y%m%d-%H%M%S"))
        except (ValueError, OverflowError):
            pass
    for p in (files.config, files.last):
        try:
            return p.stat().st_mtime
        except OSError:
            continue
    return None


# -- comparing two runs -----------------------------------------------------------------------------------

@dataclass
class Row:
    """One metric of two runs: the values (None: the run has none) and how to show them."""

    label: str
    a: float | None
    b: float | None
    unit: str  # "%" (a fraction shown as a percentage), "loss", "s", "epochs"
    better: str = ""  # "higher" or "lower": which way the difference is good; "" no judgement
    note_a: str = ""
    note_b: str = ""

    @property
    def difference(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass
class Comparison:
    a: Run
    b: Run
    config: list[tuple[str, Any, Any]]  # (dotted key, value in A, value in B), only where they differ
    metrics: list[Row]
    epochs: list[tuple[int, float | None, float | None]]  # (epoch, validation accuracy in A, in B)


def compare(a_path: str | Path, b_path: str | Path, max_epochs: int = 12) -> Comparison:
    """Two runs side by side: the config fields that differ, and their metrics with B - A."""
    runs = []
    for p in (a_path, b_path):
        if not is_run_dir(Path(p)):
            raise UsageError(f"{p}: not a run directory (no config.yaml, last.npz or metrics.jsonl in it)")
        runs.append(read(p))
    a, b = runs
    for r in runs:
        if r.config is None:
            raise UsageError(f"{r.path}: its config cannot be read ({r.problem}), so there is nothing to compare")
    assert a.config is not None and b.config is not None
    config_rows = [(k, x, y) for k, x, y in differences(a.config, b.config) if k != "name"]

    def last(r: Run, key: str) -> float | None:
        return getattr(r.metrics[-1], key) if r.metrics else None

    rows = [
        Row("epochs done", a.epochs_done, b.epochs_done, "epochs", note_a=f"of {a.epochs_planned}",
            note_b=f"of {b.epochs_planned}"),
        Row("best val accuracy", a.best_val_accuracy, b.best_val_accuracy, "%", "higher",
            f"epoch {a.best_epoch}" if a.best_epoch else "", f"epoch {b.best_epoch}" if b.best_epoch else ""),
        Row("final val accuracy", last(a, "val_accuracy"), last(b, "val_accuracy"), "%", "higher"),
        Row("final val loss", last(a, "val_loss"), last(b, "val_loss"), "loss", "lower"),
        Row("final train accuracy", last(a, "train_accuracy"), last(b, "train_accuracy"), "%", "higher"),
        Row("final train loss", last(a, "train_loss"), last(b, "train_loss"), "loss", "lower"),
        Row("test accuracy", a.test_accuracy, b.test_accuracy, "%", "higher"),
        Row("test loss", a.test_loss, b.test_loss, "loss", "lower"),
        Row("time", a.seconds, b.seconds, "s", "lower"),
    ]
    va = {r.epoch: r.val_accuracy for r in a.metrics}
    vb = {r.epoch: r.val_accuracy for r in b.metrics}
    every = sorted(va.keys() | vb.keys())
    if len(every) > max_epochs:  # evenly spread, the first and last included
        picks = {every[round(i * (len(every) - 1) / (max_epochs - 1))] for i in range(max_epochs)}
        every = sorted(picks)
    epochs = [(e, va.get(e), vb.get(e)) for e in every]
    return Comparison(a, b, config_rows, rows, epochs)


def comparison_json(c: Comparison) -> dict[str, Any]:
    return {"a": c.a.to_json(), "b": c.b.to_json(),
            "config": [{"key": k, "a": x, "b": y} for k, x, y in c.config],
            "metrics": [{"metric": r.label, "a": r.a, "b": r.b, "b_minus_a": r.difference} for r in c.metrics],
            "val_accuracy_by_epoch": [{"epoch": e, "a": x, "b": y} for e, x, y in c.epochs]}
