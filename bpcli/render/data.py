"""Rich views for `bpcli data download` and `bpcli data verify`: download progress, result tables."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
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

from bpcli.download import UNVERIFIED, DownloadReport, FileCheck


class DownloadProgress:
    """One progress bar per file (bytes, speed, time left), fed by `download`'s on_progress callback.

    Use as a context manager and pass the instance itself as `on_progress`.
    """

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
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


def download_table(report: DownloadReport) -> Table:
    """One row per file: what happened and how it was verified (sources are in `download_notes`)."""
    table = Table(title=f"{report.dataset} in {escape(str(report.directory))}", title_justify="left",
                  header_style="bold")
    table.add_column("file", no_wrap=True)
    for name in ("size", "status", "verified by"):
        table.add_column(name)
    for f in report.files:
        status = "already present" if f.status == "present" else "downloaded"
        if f.resumed_from:
            status += f" (resumed at {_size(f.resumed_from)})"
        method = f"[yellow]{UNVERIFIED}[/]" if f.method == UNVERIFIED else f"[green]{escape(f.method)}[/]"
        table.add_row(escape(f.name), _size(f.size), status, method)
    return table


def download_notes(report: DownloadReport) -> list[str]:
    """The lines printed under the table: mirrors that failed on the way, where the files came from,
    and the checksum file."""
    notes = [f"[dim]{escape(failure)} (tried the next mirror)[/]" for f in report.files for failure in f.failures]
    sources = dict.fromkeys(f.url.rsplit("/", 1)[0] + "/" for f in report.files if f.url)
    notes += [f"from {escape(source)}" for source in sources]
    if report.checksum_file is not None:
        notes.append(f"content checksums written to {escape(str(report.checksum_file))}")
    return notes


def verify_table(directory: str, checks: list[FileCheck]) -> Table:
    """One row per file: size, shape, content SHA-256 and the verdict."""
    table = Table(title=f"data in {escape(directory)}", title_justify="left", header_style="bold")
    table.add_column("file", no_wrap=True)
    for name in ("size", "shape", "content sha256"):
        table.add_column(name, no_wrap=True)
    table.add_column("result")
    for c in checks:
        shape = "x".join(map(str, c.shape)) if c.shape else "-"
        digest = c.sha256[:12] if c.sha256 else "-"
        if not c.ok:
            result = f"[bold red]{escape(c.problem)}[/]"
        elif c.problem:
            result = f"[yellow]ok, {escape(c.problem)}[/]"
        else:
            result = "[green]ok[/]"
        table.add_row(escape(c.name), _size(c.size), shape, digest, result)
    return table


def verify_summary(checks: list[FileCheck]) -> str:
    bad = [c for c in checks if not c.ok]
    if not bad:
        return "[green]all files verified[/]"
    return (f"[bold red]{len(bad)} of {len(checks)} files have problems[/]; "
            "get a fresh copy with `bpcli data download DATASET --dir DIR`")
