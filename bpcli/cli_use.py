"""`bpcli predict`, `bpcli runs` and `bpcli export`: using a trained network, on your own images, among
your other runs, and outside bpcli. Registered on bpcli's app by the import at the end of `bpcli.cli`;
like every command, only parsing and wiring live here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from bpcli.cli import command, console, err_console


@command("predict", short_help="A trained network's top 3 classes for images of digits.")
def predict_command(
    run: Path = typer.Argument(..., metavar="RUN_DIR_OR_CHECKPOINT",
                               help="A run directory (its last.npz) or a checkpoint (.npz)."),
    images: list[Path] = typer.Argument(
        ..., metavar="IMAGE",
        help="Image files (PNG, JPEG, BMP, ...; needs bpcli\\[predict]), or IDX / .npz files of images already "
             "in the dataset's form.",
    ),
    show: bool = typer.Option(False, "--show", metavar="", help="Draw each image as the network sees it."),
    as_json: bool = typer.Option(False, "--json", metavar="",
                                 help="Image files: one JSON object. IDX/.npz: JSON lines instead of CSV."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", metavar="FILE",
        help="IDX/.npz input: write the rows to FILE (.csv or .jsonl) instead of standard output.",
    ),
    force: bool = typer.Option(False, "--force", metavar="", help="Replace an existing --out FILE."),
) -> None:
    """A trained network's top 3 classes, with their probabilities, for each image file of a handwritten
    digit, prepared as MNIST's digits were: grayscale, inverted when its background is light, cropped to
    the ink, its longer side scaled to 20 pixels, placed in 28×28 by its centre of mass (the network's
    input size decides the size). IDX and .npz files of images already in that form give one row per
    image, as CSV (or JSON lines with --json), with the true label when the file has labels. Exit code 2
    if any file could not be read or held no ink."""
    from bpcli import predict, predict_files
    from bpcli.errors import UsageError
    from bpcli.files import refuse_to_replace, write_atomic
    from bpcli.render import predict as view

    model = predict.load_model(run)
    batch = [predict_files.is_batch_file(p) for p in images]
    if any(batch):
        if not all(batch):
            raise UsageError("give image files or IDX/.npz files of images, not both in one call")
        fmt = "jsonl" if as_json else "csv"
        if out is not None:
            fmt = {".csv": "csv", ".jsonl": "jsonl"}.get(out.suffix.lower(), "")
            if not fmt:
                raise UsageError(f"--out {out}: expected a .csv or .jsonl file name")
            refuse_to_replace(out, force, "--out")
        rows, notes = [], []
        for path in images:
            got, accuracy, found = predict_files.predict_batch(model, path)
            notes += found
            if len(images) > 1:
                got = [{"file": str(path), **r} for r in got]
            rows += got
            if accuracy is not None:
                notes.append(f"{path}: {len(got):,} images, accuracy {100 * accuracy:.2f}% against its labels")
        text = predict_files.rows_text(rows, fmt)
        if out is None:
            typer.echo(text, nl=False)
        else:
            write_atomic(out, text.encode())
            notes.insert(0, f"wrote {len(rows):,} predictions to {out}")
        for note in model.notes + notes:
            err_console.print(escape(note), soft_wrap=True, highlight=False)
        return
    if out is not None:
        raise UsageError("--out is for IDX/.npz input; for image files use --json and redirect it")
    predictions = predict.predict_images(model, images)
    if as_json:
        typer.echo(json.dumps({"checkpoint": str(model.source), "epoch": model.epoch,
                               "input": list(model.shape), "notes": model.notes,
                               "predictions": [p.to_json(model.probability) for p in predictions]}))
    else:
        view.render(console, model, predictions, show)
    failed = [p.error for p in predictions if p.error is not None]
    for error in failed:
        err_console.print(f"[bold red]error:[/] {escape(error)}", soft_wrap=True, highlight=False)
    if failed:
        raise typer.Exit(2)


@command("runs", short_help="The runs in runs/ (or DIR) and their state; or compare two.")
def runs_command(
    args: Optional[list[str]] = typer.Argument(
        None, metavar="DIR | compare A B",
        help="A directory of runs (default runs/), or `compare` and two run directories.",
    ),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print the result as JSON."),
) -> None:
    """A table of the runs in runs/ (or DIR): name, start time, network, optimizer, epochs done of planned,
    best validation accuracy, test accuracy, training time, and state (finished, interrupted with the
    command that resumes it, running, diverged, broken). Nothing is evaluated: a finished run recorded its
    test accuracy when it ended. `bpcli runs compare A B` shows the config fields that differ and the
    metrics side by side, with B − A."""
    from bpcli import runs
    from bpcli.errors import UsageError
    from bpcli.render import runs as view

    args = args or []
    if args and args[0] == "compare":
        if len(args) != 3:
            raise UsageError("usage: bpcli runs compare A B (two run directories)")
        c = runs.compare(Path(args[1]), Path(args[2]))
        if as_json:
            typer.echo(json.dumps(runs.comparison_json(c)))
        else:
            view.render_comparison(console, c)
        return
    if len(args) > 1:
        raise UsageError(f"bpcli runs takes one directory, got {len(args)}; to compare two runs: "
                         "bpcli runs compare A B")
    listed = runs.read_all(Path(args[0]) if args else Path("runs"))
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in listed]))
    else:
        view.render(console, listed)


@command("export", short_help="Write a trained network as ONNX or plain NumPy arrays (.npz).")
def export_command(
    run: Path = typer.Argument(..., metavar="RUN", help="A run directory (its last.npz) or a checkpoint (.npz)."),
    out: Path = typer.Option(..., "--out", "-o", metavar="FILE", help="The file to write."),
    fmt: Optional[str] = typer.Option(
        None, "--format", "-f", metavar="onnx|npz", help="Default: from the suffix of --out."
    ),
    force: bool = typer.Option(False, "--force", metavar="", help="Replace an existing FILE."),
) -> None:
    """Write the network of RUN to FILE. ONNX (needs bpcli\\[onnx]): a standard graph, Gemm and the
    activations with Softmax at the output, checked by onnx.checker, input `input` \\[batch, n_1] float32,
    for onnxruntime and any other ONNX runtime. NPZ: w2, b2, ..., wL, bL (w^l of shape (n_l, n_(l-1))) with
    layers, activation, output and class_names, loadable with allow_pickle=False."""
    from bpcli import export
    from bpcli.files import refuse_to_replace

    kind = export.format_for(out, fmt)
    refuse_to_replace(out, force, "--out")
    written = export.export(run, out, kind)
    n = written.sizes
    if written.format == "onnx":
        ops = ", ".join(dict.fromkeys(written.operators))
        console.print(f"wrote {written.path} ({written.bytes:,} bytes): input '{written.input}' [batch, {n[0]}] "
                      f"float32 -> '{written.output}' [batch, {n[-1]}]; {ops}; opset {export.OPSET}",
                      soft_wrap=True, highlight=False, markup=False)
    else:
        names = ", ".join(f"w{l}, b{l}" for l in range(2, len(n) + 1))
        console.print(f"wrote {written.path} ({written.bytes:,} bytes): {names}, layers, activation, output, "
                      "class_names", soft_wrap=True, highlight=False, markup=False)
