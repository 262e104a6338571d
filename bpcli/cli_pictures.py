"""`bpcli plot` and `bpcli show`: pictures of runs and of trained networks, in the terminal (Rich only)
or as a file (the `plot` extra: matplotlib and Pillow). Registered on bpcli's app by the import at the
end of `bpcli.cli`; like every command, only parsing and wiring live here."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from bpcli.cli import command, console


@command("plot", short_help="Learning curves and each layer's speed of learning, per run.")
def plot_command(
    run_dirs: list[Path] = typer.Argument(
        ..., metavar="RUN_DIR", help="Run directories (finished, running or interrupted)."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", metavar="FILE",
        help="Write a .png or .svg file (needs bpcli\\[plot]) instead of drawing in the terminal.",
    ),
    force: bool = typer.Option(False, "--force", metavar="", help="Replace an existing --out FILE."),
    grad: str = typer.Option(
        "b", "--grad", metavar="b|w",
        help="Per-layer panel: RMS of dC/db (= delta, a neuron's speed of learning) or of dC/dw.",
    ),
) -> None:
    """Loss and accuracy per epoch (training and validation) and each layer's gradient RMS per epoch on a
    log scale, from each run's metrics.jsonl; several runs are overlaid under their names. Without --out
    the charts are drawn in the terminal."""
    from bpcli import plot
    from bpcli.errors import UsageError
    from bpcli.files import refuse_to_replace
    from bpcli.render import plot as view

    if out is not None:
        plot.output_format(out)  # a wrong suffix is refused before any reading
        refuse_to_replace(out, force, "--out")
    drawing = plot.load(run_dirs, grad)
    if drawing.empty:
        _say(drawing.notes)
        raise UsageError("nothing to plot: no run has finished an epoch yet")
    if out is None:
        view.render(console, drawing)
        return
    _say(drawing.notes, plot.write_figure(drawing, out).path)


@command("show", short_help="Pictures of a network: layer 2's weights, its test mistakes.")
def show_command(
    run: Path = typer.Argument(..., metavar="RUN", help="A run directory (its last.npz) or a checkpoint (.npz)."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", metavar="FILE",
        help="Write a .png file (needs bpcli\\[plot]) instead of drawing in the terminal.",
    ),
    force: bool = typer.Option(False, "--force", metavar="", help="Replace an existing --out FILE."),
    weights: Optional[int] = typer.Option(
        None, "--weights", min=0, metavar="N",
        help="How many of layer 2's neurons to draw (default 8; 100 in a file).",
    ),
    mistakes: Optional[int] = typer.Option(
        None, "--mistakes", min=0, metavar="N",
        help="How many wrongly classified test images (default 8; 24 in a file).",
    ),
    data_path: Optional[Path] = typer.Option(
        None, "--data", metavar="DIR", help="Dataset directory (default: the run's)."
    ),
) -> None:
    """The first layer's weight vectors w^2_j drawn as images, and the test images the network gets wrong
    (true label, the label it gave, how sure it was), the surest first. In the terminal as half-block
    character images; with --out as a PNG."""
    from bpcli import pictures
    from bpcli.errors import UsageError
    from bpcli.files import refuse_to_replace
    from bpcli.render import pictures as view

    if out is not None and out.suffix.lower() != ".png":
        raise UsageError(f"--out {out}: expected a .png file name")
    if out is not None:
        refuse_to_replace(out, force, "--out")
    default = pictures.FILE_COUNTS if out is not None else pictures.TERMINAL_COUNTS
    counts = (default[0] if weights is None else weights, default[1] if mistakes is None else mistakes)
    drawn = pictures.load(run, data_path, counts)
    if out is None:
        view.render(console, drawn)
        return
    _say(drawn.notes, pictures.write_figure(drawn, out).path)


def _say(notes: list[str], written: Path | None = None) -> None:
    """The notes a picture came with (runs left out, statistics missing), then the file it was written to."""
    for note in notes:
        console.print(f"note: {escape(note)}", soft_wrap=True, highlight=False, style="yellow")
    if written is not None:
        console.print(f"wrote {escape(str(written))}", soft_wrap=True, highlight=False)
