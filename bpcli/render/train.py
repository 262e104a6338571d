"""Rich views for `bpcli train` and `bpcli evaluate`: progress, per-epoch table, confusion matrix."""

from __future__ import annotations

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from bpcli.train import EpochMetrics, Summary


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def epoch_table(title: str) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for name in ("epoch", "train loss", "train acc", "val loss", "val acc", "lr", "seconds"):
        table.add_column(name, justify="right")
    return table


def add_epoch_row(table: Table, row: EpochMetrics, epochs: int, best: bool) -> None:
    val_acc = "-" if row.val_accuracy is None else f"{100 * row.val_accuracy:.2f}%"
    table.add_row(
        f"{row.epoch}/{epochs}",
        f"{row.train_loss:.4f}",
        f"{100 * row.train_accuracy:.2f}%",
        _fmt(row.val_loss, ".4f"),
        f"[bold green]{val_acc}[/]" if best else val_acc,
        f"{row.learning_rate:.3g}",
        f"{row.seconds + row.eval_seconds:.1f}",
    )


class TrainView:
    """A live display: the table of finished epochs above a progress bar for the current one."""

    def __init__(self, console: Console, title: str, epochs: int, examples: int) -> None:
        self.epochs = epochs
        self.examples = examples
        self.table = epoch_table(title)
        self.best: float = -1.0
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[cyan]{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("train", total=examples, epoch=0, epochs=epochs, rate="", visible=False)
        self.live = Live(Group(self.table, self.progress), console=console, refresh_per_second=8, transient=False)
        self._done = 0

    def __enter__(self) -> TrainView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.update(self.task, visible=False)
        self.live.__exit__(*exc)  # type: ignore[arg-type]

    def epoch_start(self, epoch: int) -> None:
        self.progress.reset(self.task, total=self.examples, epoch=epoch, epochs=self.epochs, visible=True)
        self._done = 0

    def batch(self, done: int) -> None:
        # Rich is refreshed by its own thread; updating every batch would cost more than small batches.
        if done - self._done >= self.examples // 100 or done == self.examples:
            self._done = done
            task = self.progress.tasks[0]
            speed = task.speed
            self.progress.update(self.task, completed=done, rate=f"{speed:,.0f} ex/s" if speed else "")

    def epoch_end(self, row: EpochMetrics) -> None:
        best = row.val_accuracy is not None and row.val_accuracy > self.best
        if best:
            self.best = row.val_accuracy  # type: ignore[assignment]
        add_epoch_row(self.table, row, self.epochs, best)
        self.progress.update(self.task, visible=False)


def confusion_table(confusion: np.ndarray) -> Table:
    """Rows are true labels, columns predictions; the diagonal (correct) in green."""
    classes = len(confusion)
    table = Table(title="confusion matrix (rows: true label, columns: predicted)", title_justify="left",
                  header_style="bold", pad_edge=False)
    table.add_column("", justify="right", style="bold")
    for c in range(classes):
        table.add_column(str(c), justify="right")
    table.add_column("recall", justify="right", style="italic")
    for r in range(classes):
        cells = [f"[green]{v}[/]" if r == c else (f"[red]{v}[/]" if v else "[dim]0[/]")
                 for c, v in enumerate(confusion[r])]
        total = confusion[r].sum()
        table.add_row(str(r), *cells, f"{100 * confusion[r, r] / total:.1f}%" if total else "-")
    return table


def summary(console: Console, s: Summary) -> None:
    console.print()
    console.print(confusion_table(s.confusion))
    best = (f", best validation accuracy {100 * s.best_val_accuracy:.2f}% at epoch {s.best_epoch}"
            if s.best_val_accuracy is not None else "")
    console.print(
        f"[bold]test accuracy [green]{100 * s.test_accuracy:.2f}%[/green][/bold] (loss {s.test_loss:.4f}) "
        f"after {s.epochs} epochs{best}",
        soft_wrap=True,
    )
    console.print(
        f"time {s.seconds:.1f} s ({s.train_seconds:.1f} s training); outputs in [cyan]{s.run_dir}[/]: "
        "config.yaml, metrics.jsonl, last.npz, best.npz",
        soft_wrap=True,
    )
