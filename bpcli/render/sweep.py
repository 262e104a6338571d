"""Drawing `bpcli sweep`: the live table of trials while it runs (or a line per trial where there is no
terminal), the summary sorted by the objective, and the parameter importances. Rich only; the rows
come computed from bpcli/sweep_results.py."""

from __future__ import annotations

from typing import Any, Callable

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bpcli.sweep_results import Results, TrialRow

STYLES = {"running": "yellow", "complete": "green", "pruned": "magenta", "failed": "red", "waiting": "dim"}


def short_names(keys: list[str]) -> dict[str, str]:
    """Each dotted key by its shortest ending that no other key shares (learning_rate, momentum, layers)."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            name = ".".join(parts[-n:])
            if not any(other != key and (other == name or other.endswith("." + name)) for other in keys):
                break
        out[key] = name
    return out


def value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "-".join(str(v) for v in value) if all(isinstance(v, int) for v in value) else str(value)
    return str(value)


def objective_text(value: float | None, objective: str) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}%" if objective == "val_accuracy" else f"{value:.4f}"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    m, s = divmod(int(seconds + 0.5), 60)
    return f"{m}:{s:02d}"


def trials_table(results: Results, rows: list[TrialRow], title: str | None = None) -> Table:
    keys = [key for row in results.rows for key in row.params]
    keys = list(dict.fromkeys(keys))
    names = short_names(keys)
    table = Table(title=title, title_justify="left", header_style="bold", pad_edge=False, box=None, padding=(0, 1))
    table.add_column("trial", justify="right")
    for key in keys:
        table.add_column(names[key], justify="right")
    best_label = "val acc" if results.objective == "val_accuracy" else "val loss"
    table.add_column("epochs", justify="right")
    table.add_column(best_label, justify="right")
    table.add_column("state")
    table.add_column("time", justify="right")
    for row in rows:
        best = results.best is not None and row.number == results.best.number
        cells = [str(row.number), *(value_text(row.params[k]) if k in row.params else "" for k in keys),
                 str(row.epochs), objective_text(row.value, results.objective),
                 Text(row.state, style=STYLES.get(row.state, "")), _clock(row.seconds)]
        table.add_row(*cells, style="bold" if best else None)
    return table


def counts_line(results: Results) -> Text:
    parts = [f"{results.count(s)} {s}" for s in ("running", "complete", "pruned", "failed", "waiting")
             if results.count(s)]
    done = sum(1 for r in results.rows if r.state in ("complete", "pruned") or r.error)
    text = Text(f"{done} of {results.budget} trials done" + (f" ({', '.join(parts)})" if parts else ""))
    if results.best is not None:
        text.append(f"; best{' so far' if results.count('running') else ''}: trial {results.best.number}, "
                    f"{objective_text(results.best.value, results.objective)}", style="bold")
    return text


class LiveSweep:
    """The table of trials, redrawn as the study changes; the newest trials when they do not all fit."""

    def __init__(self, console: Console, title: str) -> None:
        self.console = console
        self.title = title
        self.live = Live(console=console, auto_refresh=False, transient=True, redirect_stdout=False,
                         redirect_stderr=False)

    def start(self) -> None:
        self.live.start()

    def update(self, results: Results) -> None:
        room = max(3, self.console.size.height - 6)
        rows = results.rows[-room:]
        hidden = len(results.rows) - len(rows)
        parts: list[RenderableType] = [Text(self.title, style="bold")]
        if hidden:
            parts.append(Text(f"({hidden} earlier trials above the fold; all are in the summary)", style="dim"))
        parts += [trials_table(results, rows), counts_line(results)]
        self.live.update(Group(*parts), refresh=True)

    def stop(self) -> None:
        self.live.stop()


class PlainSweep:
    """One line when a trial starts and one when it ends: for logs and pipes."""

    def __init__(self, print_line: Callable[[str], None], title: str) -> None:
        self.print_line = print_line
        self.title = title
        self.seen: dict[int, str] = {}

    def start(self) -> None:
        self.print_line(self.title)

    def update(self, results: Results) -> None:
        names = short_names([k for r in results.rows for k in r.params])
        for row in results.rows:
            if self.seen.get(row.number) == row.state or row.state == "waiting" or (row.state == "running"
                                                                                    and not row.params):
                continue  # a running trial is shown once the sampler has picked its values
            self.seen[row.number] = row.state
            params = ", ".join(f"{names[k]}={value_text(v)}" for k, v in row.params.items())
            if row.state == "running":
                self.print_line(f"trial {row.number} running: {params}")
            else:
                epochs = f"{row.epochs} epoch{'s' * (row.epochs != 1)}"
                note = f" ({row.note})" if row.note else ""
                self.print_line(f"trial {row.number} {row.state}: {objective_text(row.value, results.objective)} "
                                f"after {epochs}{note}")

    def stop(self) -> None:
        pass


class QuietSweep:
    def start(self) -> None:
        pass

    def update(self, results: Results) -> None:
        pass

    def stop(self) -> None:
        pass


def summary(console: Console, results: Results, resume_hint: str | None = None) -> None:
    """The trials best first, the best trial's config, and the importances when there are some."""
    what = "validation accuracy" if results.objective == "val_accuracy" else "validation loss"
    title = f"{results.name}: {len(results.rows)} trials, best {what} first"
    ranked = results.ranked()
    console.print(trials_table(results, ranked, title=title), soft_wrap=True)
    for row in ranked:
        if row.note:
            console.print(Text(f"trial {row.number}: {row.note}", style="dim"), soft_wrap=True)
    console.print(counts_line(results), soft_wrap=True, highlight=False)
    if results.importances:
        importances(console, results.importances)
    for note in results.notes:
        console.print(f"note: {escape(note)}", style="yellow", soft_wrap=True, highlight=False)
    if results.best_config is not None:
        path = escape(str(results.best_config))
        console.print(f"best config: {path}; train it with: bpcli train {path}", soft_wrap=True, highlight=False)
    if resume_hint:
        console.print(f"continue with: {escape(resume_hint)}", soft_wrap=True, highlight=False)


def importances(console: Console, found: dict[str, float], width: int = 30) -> None:
    table = Table(title="parameter importances (Optuna)", title_justify="left", header_style="bold", box=None,
                  pad_edge=False, padding=(0, 1))
    table.add_column("parameter")
    table.add_column("importance", justify="right")
    table.add_column("")
    for key, value in sorted(found.items(), key=lambda kv: -kv[1]):
        table.add_row(key, f"{value:.2f}", Text("█" * max(0, round(value * width)), style="cyan"))
    console.print(table, soft_wrap=True)
