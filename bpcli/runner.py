"""What `bpcli train` and `bpcli evaluate` do between parsing options and drawing results.

This is the glue the CLI would otherwise hold: load the data, build or restore the trainer, set up
the run directory, turn SIGINT/SIGTERM into a checkpoint, and pick the view (live, quiet or JSON).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from types import FrameType

import numpy as np
from rich.console import Console

from bpcli import checkpoint as ckpt_io
from bpcli.config import Config
from bpcli.data import Dataset, load_mnist
from bpcli.errors import DivergenceError, UsageError
from bpcli.render import train as view
from bpcli.train import Interrupted, RunFiles, Trainer, evaluate as evaluate_split, fit


class StopFlag:
    """Records the first SIGINT or SIGTERM instead of dying, so the loop can stop between batches."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __call__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means: stop now
        self.signum = signum

    def __enter__(self) -> StopFlag:
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]


def load_data(cfg: Config) -> Dataset:
    return load_mnist(
        cfg.data.path,
        validation_size=cfg.data.validation_size,
        seed=cfg.training.seed,
        dtype=cfg.training.dtype,
        limit=cfg.data.limit,
    )


def train(
    cfg: Config,
    out: Path | None,
    resume: Path | None,
    force: bool,
    quiet: bool,
    as_json: bool,
    console: Console,
    started: float,
    config_path: Path | None = None,
) -> int:
    """Train as `cfg` says; returns the exit code (0, or 130/143 after an interrupt)."""
    resumed = None
    if resume is not None:
        resumed = ckpt_io.load(resume)
        if resumed.config.model != cfg.model or resumed.config.data != cfg.data:
            raise UsageError(
                f"--resume {resume}: the checkpoint's model or data section differs from this config; "
                "resume with the config the run was started with"
            )
    data = load_data(cfg)
    trainer = Trainer(cfg, data)
    if resumed is not None:
        trainer.restore(resumed)
        files = RunFiles(Path(resume) if Path(resume).is_dir() else Path(resume).parent)
    else:
        files = RunFiles.create(out if out is not None else RunFiles.default_root(cfg.name), force)
    ckpt_io.write_atomic(files.config, cfg.to_yaml().encode())

    epochs = cfg.training.epochs
    try:
        # Overflow on the way to divergence is detected and reported by the loop; NumPy's warnings
        # would only add noise above that message.
        with StopFlag() as stop, np.errstate(over="ignore", invalid="ignore"):
            if quiet:
                summary = fit(trainer, files, should_stop=stop, started=started)
            else:
                title = f"{cfg.name}: {list(cfg.model.layers)} {cfg.model.activation}/{cfg.model.output}, " \
                        f"{cfg.training.optimizer.name}, {len(data.train):,} training examples"
                with view.TrainView(console, title, epochs, len(data.train)) as live:
                    summary = fit(trainer, files, live.epoch_start, live.batch, live.epoch_end, stop, started)
    except Interrupted:
        pos = trainer.position
        name = "SIGINT" if stop.signum == signal.SIGINT else "SIGTERM"
        where = f"epoch {pos.epoch + 1}, batch {pos.batch}/{trainer.steps_per_epoch}"
        cmd = f"bpcli train {config_path or 'CONFIG'} --resume {files.root}"
        console.print(f"[yellow]{name}: stopped at {where}; checkpoint saved to {files.last}[/]", soft_wrap=True)
        console.print(f"resume with: [bold]{cmd}[/]", soft_wrap=True, highlight=False)
        return 128 + (stop.signum or signal.SIGINT)
    except DivergenceError as e:
        kept = f"; the last good checkpoint is {files.last}" if files.last.is_file() else ""
        raise DivergenceError(f"{e}{kept}") from None

    if as_json:
        result = summary.to_json()
        result.pop("confusion")
        print(json.dumps(result))
    elif quiet:
        console.print(f"test accuracy {100 * summary.test_accuracy:.2f}% after {summary.epochs} epochs, "
                      f"{summary.seconds:.1f} s; outputs in {summary.run_dir}", highlight=False, soft_wrap=True)
    else:
        view.summary(console, summary)
    return 0


def evaluate(checkpoint_path: Path, data_path: Path | None, as_json: bool, console: Console) -> None:
    """Test accuracy and confusion matrix of the network in a checkpoint."""
    started = time.perf_counter()
    ckpt = ckpt_io.load(checkpoint_path)
    cfg = ckpt.config
    data = load_mnist(data_path or cfg.data.path, validation_size=0, dtype=cfg.training.dtype)
    if data.input_size != cfg.model.layers[0] or data.classes != cfg.model.layers[-1]:
        raise UsageError(
            f"{checkpoint_path}: the network is {list(cfg.model.layers)} but the data has {data.input_size} inputs "
            f"and {data.classes} classes"
        )
    result = evaluate_split(ckpt.network, data.test)
    if as_json:
        print(json.dumps({"test_accuracy": result.accuracy, "test_loss": result.loss, "epoch": ckpt.epoch,
                          "confusion": result.confusion.tolist(), "seconds": time.perf_counter() - started}))
        return
    console.print(view.confusion_table(result.confusion))
    console.print(f"[bold]test accuracy [green]{100 * result.accuracy:.2f}%[/green][/bold] (loss {result.loss:.4f}) "
                  f"on {len(data.test):,} examples; network {list(cfg.model.layers)} after {ckpt.epoch} epochs")
