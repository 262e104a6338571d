"""`bpcli data download` and `bpcli data verify`: get a dataset and check it as `train` will (`bpcli data
where`, which shows where bpcli looks, is with the built-in configs in cli_configs). Registered on bpcli's
app by the import at the end of `bpcli.cli`; only parsing and wiring live here: bpcli.data downloads and
checks, bpcli.render.data draws."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from bpcli.cli import _Group, app, command, console

data_app = typer.Typer(cls=_Group, help="Download and verify datasets (IDX directories or .npz files).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@command("download", group=data_app, short_help="Fetch a dataset's four IDX files and verify them.")
def data_download_command(
    dataset: str = typer.Argument("mnist", metavar="DATASET", help="mnist, fashion-mnist or kmnist."),
    directory: Optional[Path] = typer.Option(
        None, "--dir", metavar="DIR",
        help="Where to put the files (default: the per-user data directory, where data.path finds them; "
             "bpcli data where shows it).",
    ),
    mirrors: Optional[list[str]] = typer.Option(
        None, "--mirror", metavar="URL",
        help="A mirror's base URL, tried in the order given (repeatable); replaces the defaults and $BPCLI_MIRRORS.",
    ),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, metavar="SECONDS", help="Seconds to wait for a server (to connect, or for more data) before giving up on it."),
    deadline: float = typer.Option(600.0, "--deadline", min=0.1, metavar="SECONDS", help="Seconds one file may take from one mirror before the next mirror is tried."),
    min_rate: float = typer.Option(1000.0, "--min-rate", min=0.0, metavar="BYTES", help="Leave a mirror that sends fewer bytes per second than this, averaged over --timeout (0: no minimum)."),
) -> None:
    """Fetch the four IDX files of a dataset, verify each, and only then give it its final name."""
    from bpcli import builtin
    from bpcli.data import download
    from bpcli.render import data as view

    spec = download.dataset_spec(dataset)
    target = directory if directory is not None else builtin.user_data_dir() / spec.name
    with view.DownloadProgress(console) as progress:
        report = download.download(spec, target, mirrors or None, timeout=timeout, deadline=deadline,
                                   min_rate=min_rate, on_progress=progress)
    console.print(view.download_table(report, console.width))
    for note in view.download_notes(report):
        console.print(note)


@command("verify", group=data_app, short_help="Check a dataset as train will: what it is, and that it is intact.")
def data_verify_command(
    path: str = typer.Argument("mnist", metavar="PATH",
                               help="A dataset directory or .npz file, or a dataset's name, found as data.path is "
                                    "(default mnist; bpcli data where shows where)."),
    write: bool = typer.Option(False, "--write", metavar="",
                               help="Record SHA256SUMS for files that pass the structure checks: the opt-in for a "
                                    "dataset bpcli does not know."),
) -> None:
    """Check a dataset as `train` will: files present and valid, and what they are (a known dataset by its
    published checksums, or the directory's own SHA256SUMS). Exit code 0 if verified, 1 if a file does not
    match or nothing vouches for the data, 2 if a file is missing or cannot be read."""
    from bpcli import config
    from bpcli.data import check
    from bpcli.render import data as view

    # A bare name (`mnist`) is found as data.path finds it; a path is verified where it is (a missing
    # build/mnist must not pass by verifying bpcli's own copy), and --write writes only where it was told.
    if not write and Path(path).name == path:
        path = config.resolve_data_path(path, Path.cwd(), from_set=True)
    if write:
        written = check.write_checksums(path)
        console.print(f"checksums written to {escape(str(written))}", highlight=False)
    report = check.verify_path(path)
    for part in view.verify_view(report, console.width):
        console.print(part)
    if report.code:
        raise typer.Exit(report.code)
