"""What `bpcli plot` draws, and the figure it writes: learning curves (loss and accuracy per epoch, training
and validation) and each layer's speed of learning (RMS of dC/db^l = delta^l, or of dC/dw^l) per epoch,
for one or more run directories read from their metrics.jsonl.

A run may still be training (its metrics.jsonl grows by one committed row per epoch), interrupted, or
older than the per-layer statistics; each such case is a note, and whatever rows it has are drawn. The
terminal drawing is `bpcli.render.plot`; the PNG/SVG file is made here with matplotlib, imported only
when a file is asked for (the `plot` extra).
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bpcli import config as config_module
from bpcli.errors import BpcliError, UsageError
from bpcli.extras import need
from bpcli.files import read_regular, write_atomic
from bpcli.resume import command as resume_command
from bpcli.rundir import LOCK, MAX_METRICS, EpochMetrics, RunFiles

# One colour per run (Tableau 10, matplotlib's default cycle) and one per layer, first hidden layer to
# output, in spectrum order so that "early" and "late" read the same in the file and the terminal.
RUN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
LAYER_COLOURS = ("#d62728", "#ff7f0e", "#bcbd22", "#2ca02c", "#17becf", "#1f77b4", "#9467bd", "#e377c2")
GRADS = {"b": ("grad_rms_b", "RMS of dC/db (speed of learning)"), "w": ("grad_rms_w", "RMS of dC/dw")}

# The file's size: 10 inches wide, one row of panels per 3.2 inches, at 100 dots per inch.
WIDTH_IN, ROW_IN, DPI = 10.0, 3.2, 100
FORMATS = {".png": "png", ".svg": "svg"}


@dataclass(frozen=True)
class Series:
    """One line: y per epoch x (epochs without a value are left out)."""

    label: str
    x: tuple[int, ...]
    y: tuple[float, ...]
    colour: str
    dotted: bool = False  # training curves, so validation reads as the main line
    group: str = ""  # the legend's entry: a run's two curves share one (its name)


@dataclass
class Run:
    """A run directory as read for plotting."""

    name: str
    root: Path
    rows: list[EpochMetrics]
    notes: list[str] = field(default_factory=list)

    @property
    def has_layers(self) -> bool:
        return any(r.layers for r in self.rows)


@dataclass
class Plot:
    """Everything both drawings show: the curves per panel and the notes about the runs."""

    runs: list[Run]
    loss: list[Series]
    accuracy: list[Series]
    gradients: list[tuple[str, list[Series]]]  # (run name, one series per layer l = 2..L)
    grad: str  # "b" or "w"

    @property
    def notes(self) -> list[str]:
        return [note for run in self.runs for note in run.notes]

    @property
    def empty(self) -> bool:
        return not any(run.rows for run in self.runs)


# -- reading ----------------------------------------------------------------------------------------

def read_run(root: Path, name: str) -> Run:
    """The rows of `root`/metrics.jsonl, with a note for a cut-off file, rows without per-layer
    statistics, or a run that has not finished its epochs (still training, or interrupted)."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: no such run directory")
    files = RunFiles(root)
    if not files.metrics.is_file() and not files.config.is_file():
        raise UsageError(f"{root}: not a bpcli run directory (no metrics.jsonl or config.yaml)")
    # Lines counted before the rows are read: a live run may commit another row in between, which must
    # not read as a cut-off line.
    lines = _line_count(files.metrics)
    rows = files.read_metrics()
    run = Run(name, root, rows)
    if lines > len(rows):
        # read_metrics stops at the first line that is not a whole row: a write cut short, or damage.
        drawing = (f"drawing the {len(rows)} epoch{'s' * (len(rows) != 1)} before it" if rows else
                   "nothing to draw for it")
        run.notes.append(f"{name}: metrics.jsonl line {len(rows) + 1} is cut off or not a metrics row; {drawing}")
    elif not rows:
        result = files.latest_result() or {}
        state = "is empty" if files.metrics.is_file() else "is not there"
        run.notes.append(f"{name}: diverged in its first epoch; nothing to draw for it" if result.get("state") ==
                         "diverged" else f"{name}: no epoch has finished yet (metrics.jsonl {state}); nothing to "
                         "draw for it")
    if rows and not run.has_layers:
        run.notes.append(f"{name}: no per-layer statistics in metrics.jsonl (a run from before bpcli logged "
                         "them); its learning curves only")
    planned = _planned_epochs(files)
    diverged = (files.latest_result() or {}).get("state") == "diverged"
    if rows and diverged:
        run.notes.append(f"{name}: diverged after epoch {rows[-1].epoch} (bpcli runs {root} says how)")
    elif rows and planned is not None and rows[-1].epoch < planned:
        pid = _live_pid(root)
        done = f"epoch {rows[-1].epoch} of {planned}"
        run.notes.append(f"{name}: training, {done} so far (process {pid})" if pid is not None else
                         f"{name}: stopped after {done}; resume with: {resume_command(root)}")
    return run


def _line_count(path: Path) -> int:
    try:
        return sum(1 for line in read_regular(path, MAX_METRICS).decode(errors="replace").splitlines() if line.strip())
    except OSError:
        return 0


def _planned_epochs(files: RunFiles) -> int | None:
    """training.epochs of the run's config.yaml, if it can be read (it is only used for a note)."""
    try:
        return config_module.load(files.config).training.epochs
    except (BpcliError, OSError):
        return None


def _live_pid(root: Path) -> int | None:
    """The process holding the run's lock, if it is alive. The lock file keeps the holder's PID while it
    runs (emptied on release); testing the flock itself could make a `train --resume` starting at that
    moment refuse the directory as in use."""
    try:
        pid = int(read_regular(root / LOCK, 32).decode(errors="replace").strip())
    except (OSError, ValueError):
        return None
    if pid <= 0:  # os.kill(0 or -n) would address process groups
        return None
    try:
        os.kill(pid, 0)
    except PermissionError:  # alive, another user's
        return pid
    except OSError:
        return None
    return pid


def run_names(roots: list[Path]) -> list[str]:
    """Each run's directory name, or its path as given where two names would be the same."""
    names = [Path(r).name or str(r) for r in roots]
    return [str(r) if names.count(n) > 1 else n for r, n in zip(roots, names)]


# -- what to draw -------------------------------------------------------------------------------------

def curves(runs: list[Run], grad: str = "b") -> Plot:
    """The series of every panel. Gradient RMS values that are 0 or not finite are left out: the
    panel is on a log scale."""
    if grad not in GRADS:
        raise UsageError(f"--grad {grad!r}: expected b (dC/db, the speed of learning) or w (dC/dw)")
    key = GRADS[grad][0]
    loss: list[Series] = []
    accuracy: list[Series] = []
    gradients: list[tuple[str, list[Series]]] = []
    for i, run in enumerate(runs):
        colour = RUN_COLOURS[i % len(RUN_COLOURS)]
        for split, dotted in (("train", True), ("val", False)):
            what = "train" if split == "train" else "validation"
            loss.append(_series(run.name, what, run.rows, f"{split}_loss", colour, dotted))
            accuracy.append(_series(run.name, what, run.rows, f"{split}_accuracy", colour, dotted))
        if run.has_layers:
            gradients.append((run.name, _layer_series(run.rows, key)))
    keep = [s for s in loss if s.x], [s for s in accuracy if s.x]
    return Plot(runs, keep[0], keep[1], gradients, grad)


def _series(name: str, what: str, rows: list[EpochMetrics], key: str, colour: str, dotted: bool) -> Series:
    points = [(r.epoch, float(v)) for r in rows if (v := getattr(r, key)) is not None and math.isfinite(v)]
    return Series(f"{name} {what}", tuple(p[0] for p in points), tuple(p[1] for p in points), colour, dotted, name)


def _layer_series(rows: list[EpochMetrics], key: str) -> list[Series]:
    """One series per layer l, over the epochs whose row has that layer's statistics."""
    points: dict[int, list[tuple[int, float]]] = {}
    width: dict[int, int] = {}
    for r in rows:
        for stats in r.layers or []:
            l, value = int(stats["l"]), stats.get(key)
            width[l] = int(stats.get("n", 0))
            if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
                points.setdefault(l, []).append((r.epoch, float(value)))
    return [Series(f"l={l} (n={width[l]})", tuple(p[0] for p in pts), tuple(p[1] for p in pts),
                   LAYER_COLOURS[k % len(LAYER_COLOURS)], group=f"l={l} (n={width[l]})")
            for k, (l, pts) in enumerate(sorted(points.items()))]


def load(roots: list[Path], grad: str = "b") -> Plot:
    """Read every run directory and work out the series to draw."""
    return curves([read_run(Path(r), n) for r, n in zip(roots, run_names(roots))], grad)


# -- the file ---------------------------------------------------------------------------------------------

@dataclass
class Figure:
    """What was written: the file, its size in pixels (PNG) or points (SVG), and the data of every line
    drawn, read back from matplotlib: {panel title: {line label: (x, y)}}."""

    path: Path
    width: float
    height: float
    drawn: dict[str, dict[str, tuple[list[float], list[float]]]]


def output_format(path: Path) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise UsageError(f"--out {path}: expected a .png or .svg file name")
    return fmt


def write_figure(plot: Plot, path: Path) -> Figure:
    """Draw `plot` with matplotlib and write it to `path` (.png or .svg) atomically: one row with the
    loss and accuracy panels, then one panel per run with per-layer statistics, two to a row, sharing
    one log-scale y axis so the runs compare at a glance."""
    fmt = output_format(path)
    need("matplotlib", "bpcli plot --out")
    need("PIL.Image", "bpcli plot --out")
    from matplotlib.figure import Figure as MplFigure  # no pyplot: no global state, no GUI backend

    n_grad = len(plot.gradients)
    rows = 1 + math.ceil(n_grad / 2)
    fig = MplFigure(figsize=(WIDTH_IN, ROW_IN * rows), dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(rows, 2)
    ax_loss, ax_acc = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    _lines(ax_loss, plot.loss, "loss (dashed: train, solid: validation)", "cost C")
    _lines(ax_acc, plot.accuracy, "accuracy (dashed: train, solid: validation)", "accuracy")
    ax_acc.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")
    shared = None
    for k, (name, series) in enumerate(plot.gradients):
        ax = fig.add_subplot(grid[1 + k // 2, k % 2], sharey=shared)
        shared = shared or ax
        _lines(ax, series, f"{name}: {GRADS[plot.grad][1]}", "RMS by layer", log=True)
    if n_grad % 2:
        fig.add_subplot(grid[rows - 1, 1]).axis("off")
    drawn = {ax.get_title(): {line.get_label(): ([float(v) for v in line.get_xdata()],
                                                 [float(v) for v in line.get_ydata()]) for line in ax.get_lines()}
             for ax in fig.axes if ax.get_title()}
    save(fig, path, fmt, "bpcli plot --out")
    scale = DPI if fmt == "png" else 72  # SVG sizes are in points
    return Figure(Path(path), round(WIDTH_IN * scale, 1), round(ROW_IN * rows * scale, 1), drawn)


def _lines(ax: Any, series: list[Series], title: str, ylabel: str, log: bool = False) -> None:
    for s in series:
        few = len(s.x) <= 30  # markers while single epochs can be told apart
        ax.plot(s.x, s.y, color=s.colour, linestyle="--" if s.dotted else "-", marker="o" if few else None,
                markersize=3, linewidth=1.4, label=s.label)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, alpha=0.3)
    if log:
        ax.set_yscale("log")
    if series:
        from matplotlib.lines import Line2D

        # One entry per run (or layer): the line style is said once, in the title.
        entries = {s.group: s.colour for s in series}
        ax.legend([Line2D([], [], color=c) for c in entries.values()], list(entries), fontsize=7, loc="best")


def save(fig: Any, path: Path, fmt: str, purpose: str) -> None:
    """Write a matplotlib figure to `path` atomically, with no creation date (the same data give the same
    bytes). A PNG is stored with a palette of 256 colours (Pillow): a chart has few colours beyond its
    anti-aliasing, so it looks the same at about a third of the size."""
    buffer = io.BytesIO()
    metadata: dict[str, str | None] = {"Software": "bpcli"} if fmt == "png" else {"Date": None, "Creator": "bpcli"}
    fig.savefig(buffer, format=fmt, dpi=DPI, metadata=metadata)
    if fmt == "png":
        image_module = need("PIL.Image", purpose)
        image = image_module.open(io.BytesIO(buffer.getvalue())).convert("RGB")
        small = image.quantize(256, method=image_module.Quantize.FASTOCTREE, dither=image_module.Dither.NONE)
        buffer = io.BytesIO()
        small.save(buffer, format="PNG", optimize=True)
    write_atomic(path, buffer.getvalue())
