"""Views for `bpcli train` and `bpcli evaluate`: a live view for terminals, plain lines for logs, JSON
lines for programs, and the confusion matrix.

The three training views share one interface (`start`, `epoch_start`, `batch`, `epoch_end`, `stop`),
so the runner picks one and the training loop never knows which. Every number comes from
`bpcli.train`; nothing here computes beyond formatting and the progress bar's own rate and time left.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Callable, Protocol

import numpy as np
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from bpcli.render import layers as layer_view
from bpcli.render.measure import natural_width
from bpcli.train import EpochMetrics, Summary

WIDE = 72  # the epoch table's full headers need this many columns; below it, short headers
REFRESH_SECONDS = 0.1  # the live view is redrawn at most this often (10 frames a second)


class TrainView(Protocol):
    """What the runner calls while training; each view draws it its own way."""

    def start(self, title: str, epochs: int, examples: int, run_dir: str) -> None: ...
    def epoch_start(self, epoch: int) -> None: ...
    def batch(self, done: int) -> None: ...
    def epoch_end(self, row: EpochMetrics) -> None: ...
    def stop(self) -> None: ...


# -- the epoch rows, shared by the live and the plain view ---------------------------------------------

@dataclass(frozen=True)
class _Column:
    wide: str
    narrow: str
    cell: Callable[[EpochMetrics, int], str]


def _opt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


COLUMNS = (
    _Column("epoch", "epoch", lambda r, e: f"{r.epoch}/{e}"),
    _Column("train loss", "loss", lambda r, e: f"{r.train_loss:.4f}"),
    _Column("train acc", "acc", lambda r, e: _pct(r.train_accuracy)),
    _Column("val loss", "v.loss", lambda r, e: _opt(r.val_loss, ".4f")),
    _Column("val acc", "v.acc", lambda r, e: _pct(r.val_accuracy)),
    _Column("lr", "lr", lambda r, e: f"{r.learning_rate:.3g}"),
    _Column("time", "s", lambda r, e: f"{r.seconds + r.eval_seconds:.1f}"),
)
_SAMPLE = EpochMetrics(epoch=0, train_loss=10.0, train_accuracy=1.0, val_loss=10.0, val_accuracy=1.0,
                       learning_rate=1.23e-05, seconds=999.0, eval_seconds=0.0)


def _widths(epochs: int, wide: bool) -> list[int]:
    """Each column as wide as its header or its widest plausible cell, so rows printed one at a time
    line up without knowing the later rows."""
    sample = EpochMetrics(**{**asdict(_SAMPLE), "epoch": epochs})
    return [max(len(c.wide if wide else c.narrow), len(c.cell(sample, epochs))) for c in COLUMNS]


def header_line(epochs: int, width: int) -> Text:
    wide = width >= WIDE
    widths, gap = _widths(epochs, wide), "  " if wide else " "
    return Text(gap.join((c.wide if wide else c.narrow).rjust(w) for c, w in zip(COLUMNS, widths)), style="bold")


def row_line(row: EpochMetrics, epochs: int, width: int, best: bool) -> Text:
    """One finished epoch, right-aligned under `header_line`; the best validation accuracy so far in
    bold green."""
    wide = width >= WIDE
    widths, gap = _widths(epochs, wide), "  " if wide else " "
    text = Text()
    for i, (c, w) in enumerate(zip(COLUMNS, widths)):
        if i:
            text.append(gap)
        text.append(c.cell(row, epochs).rjust(w), style="bold green" if best and c.narrow == "v.acc" else "")
    return text


def plain_line(row: EpochMetrics, epochs: int) -> str:
    """One finished epoch as a self-describing log line (no table to line up with)."""
    val = f"  val loss {_opt(row.val_loss, '.4f')} acc {_pct(row.val_accuracy)}" if row.val_loss is not None else ""
    return (f"epoch {row.epoch}/{epochs}  train loss {row.train_loss:.4f} acc {_pct(row.train_accuracy)}{val}"
            f"  lr {row.learning_rate:.3g}  {row.seconds + row.eval_seconds:.1f} s")


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def progress_line(epoch: int, epochs: int, done: int, total: int, elapsed: float, width: int) -> RenderableType:
    """`epoch 2/9 ━━━━━━━╸━━━━  23,040/55,000  41,233 ex/s  0:01 left`, fitted to `width` columns: the
    rate, then the time left, then the bar give way on narrow terminals; the line never wraps (a wrapped
    live line is what leaves stale copies on screen)."""
    rate = done / elapsed if elapsed > 0 and done else 0.0
    parts = [f"{done:,}/{total:,}"]
    extras = [f"{rate:,.0f} ex/s" if rate else "", f"{_clock((total - done) / rate)} left" if rate else ""]
    left = f"epoch {epoch}/{epochs}"
    right = "  ".join(p for p in parts + extras if p)
    while extras and len(left) + len(right) + 14 > width:
        extras.pop(0)
        right = "  ".join(p for p in parts + extras if p)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    bar = width - len(left) - len(right) - 2
    if bar >= 8:
        grid.add_column(width=bar, no_wrap=True)
    grid.add_column(no_wrap=True)
    cells: list[RenderableType] = [Text(left, style="bold")]
    if bar >= 8:
        cells.append(ProgressBar(total=max(total, 1), completed=done, width=bar))
    cells.append(Text(right, style="cyan"))
    grid.add_row(*cells)
    return grid


# -- the views ----------------------------------------------------------------------------------------

class LiveView:
    """For a terminal: finished epochs as table rows that scroll, under them one progress line redrawn
    as batches finish.

    Drawing happens in the training thread, at most every REFRESH_SECONDS, from the batch callback:
    there is no display thread that could die unseen (Rich's refresh thread once did, with a frozen bar
    as the only sign). If drawing fails anyway, the view says so in one line and carries on as
    `PlainView`; training is never stopped by its display.
    """

    def __init__(self, console: Console, layers: bool = True) -> None:
        self.console = console
        self.layers = layers
        self.layer_lines: list[Text] = []  # the latest epoch's per-layer table, shown above the bar
        self.live: Live | None = None
        self.fallback: PlainView | None = None
        self.epochs = self.examples = self.epoch = self.done = 0
        self.best = -1.0
        self._epoch_started = self._drawn = 0.0

    def start(self, title: str, epochs: int, examples: int, run_dir: str) -> None:
        self.epochs, self.examples = epochs, examples
        # Wrapped by Rich at word boundaries: left to the terminal, a line a little wider than it is cut
        # mid-word or mid-number ("97.4" / "0%" at 80 columns).
        self.console.print(f"[bold]{escape(title)}[/]", highlight=False)
        self.console.print(header_line(epochs, self.console.width), no_wrap=True, overflow="ignore")
        self.live = Live(Text(""), console=self.console, auto_refresh=False, transient=True,
                         redirect_stdout=False, redirect_stderr=False)
        self._guard(self.live.start)

    def epoch_start(self, epoch: int) -> None:
        self.epoch, self.done = epoch, 0
        self._epoch_started = time.monotonic()
        self._draw(force=True)

    def batch(self, done: int) -> None:
        self.done = done
        self._draw(force=False)

    def epoch_end(self, row: EpochMetrics) -> None:
        best = row.val_accuracy is not None and row.val_accuracy > self.best
        if best:
            self.best = row.val_accuracy  # type: ignore[assignment]
        if self.fallback is not None:
            self.fallback.epoch_end(row)
            return
        if self.layers and row.layers:
            self.layer_lines = layer_view.table_lines(row.layers, self.console.width - 3, row.epoch)
        # Printing while the live line is up puts the row above it.
        self._guard(lambda: self.console.print(row_line(row, self.epochs, self.console.width, best),
                                               no_wrap=True, overflow="ignore"))

    def stop(self) -> None:
        if self.live is not None:
            live, self.live = self.live, None
            try:
                # The live area goes (transient); the last per-layer table stays under the epoch rows.
                live.update(Text(""), refresh=True)
                for line in self.layer_lines:
                    self.console.print(line, no_wrap=True, overflow="ignore")
                live.stop()
            except Exception:  # the terminal may be gone (closed window); nothing left to show
                pass

    def _draw(self, force: bool) -> None:
        if self.live is None:
            return
        now = time.monotonic()
        if not force and now - self._drawn < REFRESH_SECONDS:
            return
        self._drawn = now
        # Three columns short of the edge: the terminal echoes Ctrl-C as "^C" after the line, and a
        # full line would wrap it onto a new one that the view then erases instead of the bar.
        self._guard(lambda: self._update(progress_line(self.epoch, self.epochs, self.done, self.examples,
                                                       now - self._epoch_started, self.console.width - 3)))

    def _update(self, line: RenderableType) -> None:
        if self.live is not None:
            self.live.update(Group(*self.layer_lines, line), refresh=True)

    def _guard(self, draw: Callable[[], object]) -> None:
        """Run one drawing step; on any error stop drawing, say so once, and log plain lines instead."""
        if self.fallback is not None:
            return
        try:
            draw()
        except Exception as e:  # noqa: BLE001 - a display bug must not end a training run
            self.stop()
            self.fallback = PlainView(self.console, self.layers)
            self.fallback.epochs = self.epochs
            self.console.print(f"warning: the live view stopped ({type(e).__name__}: {e}); training goes on, "
                               "one line per epoch", soft_wrap=True, highlight=False, markup=False)


class PlainView:
    """For a file or a pipe: a start line, then one flushed line per epoch as it ends; no progress bar
    and no escape codes, so `| tee log` shows the run as it goes."""

    def __init__(self, console: Console, layers: bool = True) -> None:
        self.console = console
        self.layers = layers
        self.epochs = 0

    def start(self, title: str, epochs: int, examples: int, run_dir: str) -> None:
        self.epochs = epochs
        self._print(f"{title}; {epochs} epoch{'s' * (epochs != 1)}; run directory {run_dir}")

    def epoch_start(self, epoch: int) -> None:
        pass

    def batch(self, done: int) -> None:
        pass

    def epoch_end(self, row: EpochMetrics) -> None:
        self._print(plain_line(row, self.epochs))
        if self.layers and row.layers:
            self._print(layer_view.plain_line(row.layers))

    def stop(self) -> None:
        pass

    def _print(self, line: str) -> None:
        self.console.print(line, soft_wrap=True, highlight=False, markup=False)
        self.console.file.flush()


class JsonLinesView:
    """`--log-format jsonl`: one JSON object per line on stdout: a start event, one per epoch (the
    metrics.jsonl row), and the summary (written by the runner)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write

    def start(self, title: str, epochs: int, examples: int, run_dir: str) -> None:
        self.write(json.dumps({"event": "start", "title": title, "epochs": epochs, "examples": examples,
                               "run_dir": run_dir}))

    def epoch_start(self, epoch: int) -> None:
        pass

    def batch(self, done: int) -> None:
        pass

    def epoch_end(self, row: EpochMetrics) -> None:
        self.write(json.dumps({"event": "epoch", **asdict(row)}))

    def stop(self) -> None:
        pass


class QuietView(JsonLinesView):
    """`--quiet` and `--json`: nothing while training."""

    def __init__(self) -> None:
        super().__init__(lambda line: None)


# -- evaluation -----------------------------------------------------------------------------------------

def confusion_table(confusion: np.ndarray, width: int = 80, class_names: Sequence[str] = ()) -> Table:
    """Rows are true labels, columns predictions; the diagonal (correct) in green. Below 80 columns the
    borders and column rules go, so that ten 4-digit columns and the recall fit in 60.

    Class names label the rows when the table still fits with them, and the columns when every name is
    as short as a number (4 characters); otherwise the label numbers stand in, and `confusion_legend`
    gives the names below the table. Numbers are never cut."""
    classes = len(confusion)
    names = list(class_names) if len(class_names) == classes else [str(c) for c in range(classes)]
    short = all(len(n) <= 4 for n in names)
    table = _confusion(confusion, width, names, names if short else [str(c) for c in range(classes)])
    if short or natural_width(table) <= width:
        return table
    return _confusion(confusion, width, [str(c) for c in range(classes)], [str(c) for c in range(classes)])


def confusion_legend(confusion: np.ndarray, class_names: Sequence[str], width: int = 80) -> list[str]:
    """'classes: 0 T-shirt/top · 1 Trouser · ...' in lines of at most `width` columns, never breaking a
    name: the key to the numbered columns, when `confusion_table` could not use the names as headers."""
    if len(class_names) != len(confusion) or all(len(n) <= 4 for n in class_names):
        return []
    lines, line = [], "classes:"
    for c, name in enumerate(class_names):
        entry = f"{c} {name}"
        if len(line) + 3 + len(entry) > width and line.strip():
            lines.append(line)
            line = f"  {entry}"
        else:
            line += f" {entry}" if line.endswith(":") else f" · {entry}"
    return lines + [line]


def _confusion(confusion: np.ndarray, width: int, rows: Sequence[str], columns: Sequence[str]) -> Table:
    classes = len(confusion)
    narrow = width < 80
    table = Table(title="confusion matrix (rows: true label, columns: predicted)", title_justify="left",
                  header_style="bold underline" if narrow else "bold", pad_edge=not narrow, box=None if narrow else box.HEAVY_HEAD,
                  padding=(0, 0, 0, 1) if narrow else (0, 1), show_edge=not narrow)
    table.add_column("", justify="right", style="bold", no_wrap=True)
    for c in range(classes):
        table.add_column(escape(columns[c]), justify="right", no_wrap=True)
    table.add_column("recall", justify="right", style="italic", no_wrap=True)
    for r in range(classes):
        cells = [f"[green]{v}[/]" if r == c else (f"[red]{v}[/]" if v else "[dim]0[/]")
                 for c, v in enumerate(confusion[r])]
        total = confusion[r].sum()
        table.add_row(escape(rows[r]), *cells, f"{100 * confusion[r, r] / total:.1f}%" if total else "-")
    return table


def _print_confusion(console: Console, confusion: np.ndarray, class_names: Sequence[str]) -> None:
    console.print(confusion_table(confusion, console.width, class_names))
    for line in confusion_legend(confusion, class_names, console.width):
        console.print(line, highlight=False, markup=False)


def summary(console: Console, s: Summary, class_names: Sequence[str] = ()) -> None:
    # On a terminal Rich wraps at word boundaries (the terminal itself would cut a number in two); in a
    # log each message stays one line, whatever its length, for grep.
    soft = not console.is_terminal
    console.print()
    _print_confusion(console, s.confusion, class_names)
    best = (f", best validation accuracy {100 * s.best_val_accuracy:.2f}% at epoch {s.best_epoch}"
            if s.best_val_accuracy is not None else "")
    console.print(
        f"[bold]test accuracy [green]{100 * s.test_accuracy:.2f}%[/green][/bold] (loss {s.test_loss:.4f}) "
        f"after {s.epochs} epoch{'s' * (s.epochs != 1)}{best}",
        soft_wrap=soft, highlight=False,
    )
    earlier = (f"; {s.run_train_seconds:.1f} s over all {s.epochs} epochs of the run"
               if s.run_train_seconds > s.train_seconds + 0.05 else "")
    console.print(
        f"time {s.seconds:.1f} s ({s.train_seconds:.1f} s training{earlier}); outputs in "
        f"[cyan]{escape(s.run_dir)}[/]: config.yaml, metrics.jsonl, last.npz, best.npz",
        soft_wrap=soft, highlight=False,
    )


def evaluation(console: Console, confusion: np.ndarray, accuracy: float, loss: float, examples: int,
               layers: list[int], epoch: int, batch: int, source: str, class_names: Sequence[str] = (),
               data_label: str = "") -> None:
    """What `bpcli evaluate` prints: the confusion matrix, the accuracy, and which checkpoint it was (saved
    after `epoch` epochs and, when interrupted inside the next, `batch` batches of it)."""
    _print_confusion(console, confusion, class_names)
    article = "an " if data_label.startswith("unverified") else ""
    of = f" of {article}{escape(data_label)}" if data_label else ""
    inside = f" and {batch:,} batches of epoch {epoch + 1}" if batch else ""
    console.print(f"[bold]test accuracy [green]{100 * accuracy:.2f}%[/green][/bold] (loss {loss:.4f}) on "
                  f"{examples:,} examples{of}; network {layers} after {epoch} epoch{'s' * (epoch != 1)}{inside}, "
                  f"from {escape(source)}",
                  soft_wrap=not console.is_terminal, highlight=False)
