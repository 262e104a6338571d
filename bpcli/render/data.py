"""Rich views for `bpcli data download` and `bpcli data verify`: download progress, result tables.

The tables fit the terminal rather than letting Rich squeeze cells into fragments ("check… misma…"):
hashes are shown by their first 12 hex digits, a table that would not fit its natural width is drawn
in a compact form (no borders; size and shape under the file name), and any long message goes on its
own numbered line below the table, where it wraps between words.
"""

from __future__ import annotations

from types import TracebackType

from rich import box
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from bpcli.data.check import VERIFIED, FileCheck, Report
from bpcli.render.measure import fits
from bpcli.data.download import UNVERIFIED, DownloadReport

HASH = 12  # hex digits of a SHA-256 shown in a table: enough to tell files apart


class DownloadProgress:
    """One progress bar per file (bytes, speed, time left), fed by `download`'s on_progress callback.

    Use as a context manager and pass the instance itself as `on_progress`.
    """

    def __init__(self, console: Console) -> None:
        # Below 80 columns the speed and time left give way, so that the sizes are never cut to "11.0/…".
        extras = (TransferSpeedColumn(), TextColumn("eta"), TimeRemainingColumn()) if console.width >= 80 else ()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=40 if extras else 10),
            DownloadColumn(),
            *extras,
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> DownloadProgress:
        self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def __call__(self, name: str, done: int, total: int | None) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(escape(name), total=total)
        # A new mirror or a restarted transfer moves `done` back: set it, do not advance.
        self.progress.update(self.tasks[name], completed=done, total=total)


def _size(n: int | None) -> str:
    """Bytes in decimal units, as DownloadColumn shows them."""
    if n is None:
        return "-"
    if n < 1000:
        return f"{n} B"
    value = n / 1000
    for unit in ("KB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _table(title: str, compact: bool) -> Table:
    if compact:
        return Table(title=title, title_justify="left", header_style="bold underline", box=None,
                     padding=(0, 0, 0, 1), pad_edge=False, show_edge=False)
    # A rule under the header and none between columns: 8 columns more for the cells than a full grid.
    return Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
                 show_edge=False)


def download_table(report: DownloadReport, width: int = 80) -> Table:
    """One row per file: what happened and how it was verified (sources are in `download_notes`)."""
    title = f"{report.dataset} in {escape(str(report.directory))}"
    rows = []
    for f in report.files:
        status = "present" if f.status == "present" else "downloaded"
        if f.resumed_from:
            status += f" (resumed at {_size(f.resumed_from)})"
        method = f"[yellow]{UNVERIFIED}[/]" if f.method == UNVERIFIED else f"[green]{escape(f.method)}[/]"
        rows.append((escape(f.name), _size(f.size), status, method))
    for compact in (False, True):
        table = _table(title, compact)
        table.add_column("file", no_wrap=True)
        if not compact:
            table.add_column("size", no_wrap=True)
        table.add_column("status")
        table.add_column("verified by")
        for name, size, status, method in rows:
            table.add_row(name, size, status, method) if not compact else table.add_row(
                f"{name}\n[dim]{size}[/]", status, method)
        if compact or fits(table, width):
            return table
    raise AssertionError("unreachable")


def download_notes(report: DownloadReport) -> list[str]:
    """The lines printed under the table: mirrors that failed on the way, where the files came from,
    and the checksum file."""
    notes = [f"[dim]{escape(failure)} (tried the next mirror)[/]" for f in report.files for failure in f.failures]
    sources = dict.fromkeys(f.url.rsplit("/", 1)[0] + "/" for f in report.files if f.url)
    notes += [f"from {escape(source)}" for source in sources]
    if report.checksum_file is not None:
        notes.append(f"content checksums written to {escape(str(report.checksum_file))}")
    return notes


_STATE = {
    "known": "green", "listed": "yellow", "unknown": "yellow", "mismatch": "bold red", "missing": "bold red",
    "unusable": "bold red",
}


def _result(c: FileCheck, note: int | None) -> str:
    """A short result cell; a long problem is a numbered note below the table instead."""
    style = _STATE[c.state]
    if c.state in ("known", "listed"):
        text = escape(c.match)
    elif c.state == "missing":
        text = "missing"
    elif c.state == "unknown":
        text = "unknown"
    else:
        text = ("mismatch" if c.state == "mismatch" else "unusable") + f" [{note}]"
        text = escape(text)
    return f"[{style}]{text}[/]"


def verify_view(report: Report, width: int = 80) -> list[RenderableType]:
    """The table, one line per problem under it, and the verdict: what `data verify` prints."""
    title = f"data in {escape(str(report.path))}"
    notes: list[str] = []
    rows = []
    for c in report.checks:
        note = None
        if c.state in ("mismatch", "unusable"):
            notes.append(f"[{len(notes) + 1}] {c.name}: {c.problem}")
            note = len(notes)
        shape = "x".join(map(str, c.shape)) if c.shape else "-"
        digest = c.sha256[:HASH] if c.sha256 else "-"
        rows.append((escape(c.name), _size(c.size), shape, digest, _result(c, note)))
    table = None
    for compact in (False, True):
        table = _table(title, compact)
        table.add_column("file", no_wrap=not compact)
        if not compact:
            table.add_column("size", no_wrap=True)
            table.add_column("shape", no_wrap=True)
        table.add_column("content hash", no_wrap=True)  # SHA-256 of the decompressed content
        table.add_column("result")
        for name, size, shape, digest, result in rows:
            if compact:
                table.add_row(f"{name}\n[dim]{size}, {shape}[/]", digest, result)
            else:
                table.add_row(name, size, shape, digest, result)
        if compact or fits(table, width):
            break
    assert table is not None
    out: list[RenderableType] = [table]
    out += [Text(line) for line in notes]
    style = "green" if report.code == VERIFIED else "bold red"
    out.append(Text(report.verdict, style=style))
    return out
