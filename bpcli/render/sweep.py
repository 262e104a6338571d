"""Drawing `bpcli sweep`: the live table of trials while it runs (or a line per trial where there is no
terminal), the summary sorted by the objective, and the parameter importances. Rich only; the rows
come computed from bpcli/sweep_results.py."""

from __future__ import annotations

import shlex
from typing import Any, Callable, Iterable

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bpcli.render.measure import fits
from bpcli.render.say import command_line
from bpcli.sweep_results import Results, TrialRow

STYLES = {"running": "yellow", "complete": "green", "pruned": "magenta", "failed": "red", "interrupted": "yellow",
          "waiting": "dim"}


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


def trial_blocks(results: Results, rows: list[TrialRow], width: int) -> list[RenderableType]:
    """The trials where their table does not fit: a line of what happened, then the values it tried,
    indented, `name=value` items that wrap between items, never inside a number or a name."""
    names = short_names(list(dict.fromkeys(key for row in results.rows for key in row.params)))
    out: list[RenderableType] = []
    for row in rows:
        best = results.best is not None and row.number == results.best.number
        epochs = f"{row.epochs} epoch{'s' * (row.epochs != 1)}"
        head = Text(f"trial {row.number}  ", style="bold" if best else "")
        head.append(row.state, style=STYLES.get(row.state, ""))
        head.append(f"  {objective_text(row.value, results.objective)}  {epochs}  {_clock(row.seconds)}")
        out.append(head)
        line = ""
        for item in (f"{names[k]}={value_text(v)}" for k, v in row.params.items()):
            if line and len(line) + 2 + len(item) > width:
                out.append(Text(line, style="dim"))
                line = ""
            line = f"{line}  {item}" if line else f"  {item}"
        if line:
            out.append(Text(line, style="dim"))
    return out


def trials_view(results: Results, rows: list[TrialRow], width: int, title: str | None = None) -> list[RenderableType]:
    """The table of trials when it fits in `width`, else one block per trial (no number is ever cut)."""
    table = trials_table(results, rows, title)
    if fits(table, width):
        return [table]
    return ([Text(title, style="bold")] if title else []) + trial_blocks(results, rows, width)


def counts_line(results: Results) -> Text:
    """`5 of 8 trials done (4 complete, 1 pruned); 2 running, 1 interrupted, to run again`: the parts in
    brackets add up to the trials done (failed: for good, with an error); an interrupted trial counts
    again once it is run again."""
    finished = ("complete", "pruned", "failed")
    parts = [f"{results.count(s)} {s}" for s in finished if results.count(s)]
    done = sum(results.count(s) for s in finished)
    text = Text(f"{done} of {results.budget} trials done" + (f" ({', '.join(parts)})" if parts else ""))
    pending = sum(1 for r in results.rows if r.state == "interrupted" and r.again is None)
    others = [f"{results.count(s)} {s}" for s in ("running", "waiting") if results.count(s)]
    others += [f"{pending} interrupted, to run again"] if pending else []
    if others:
        text.append(f"; {', '.join(others)}")
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
        width = self.console.width
        if not fits(trials_table(results, results.rows[-room:]), width):
            room = max(1, room // 3)  # a block per trial: its line, and its values on one or two more
        rows = results.rows[-room:]
        hidden = len(results.rows) - len(rows)
        parts: list[RenderableType] = [Text(self.title, style="bold")]
        if hidden:
            parts.append(Text(f"({hidden} earlier trials above the fold; all are in the summary)", style="dim"))
        parts += [*trials_view(results, rows, width), counts_line(results)]
        self.live.update(Group(*parts), refresh=True)

    def stop(self) -> None:
        self.live.stop()


class PlainSweep:
    """Two lines per trial, for logs and pipes: when it starts (the values the sampler picked for all
    `n_params` parameters) and when it ends. The study is read every half second, so a trial can start and
    end between two reads, or be read while its values are half picked: its start line then comes when
    its values are complete, or just before its end line."""

    def __init__(self, print_line: Callable[[str], None], title: str, n_params: int,
                 earlier: Iterable[int] = ()) -> None:
        self.print_line = print_line
        self.title = title
        self.n_params = n_params
        self.seen: dict[int, str] = {}
        self.earlier = set(earlier)  # trials of an earlier session: not logged again

    def start(self) -> None:
        self.print_line(self.title)

    def update(self, results: Results) -> None:
        names = short_names([k for r in results.rows for k in r.params])
        for row in results.rows:
            before = self.seen.get(row.number)
            if before == row.state or row.state == "waiting" or row.number in self.earlier:
                continue
            if before is None and (row.state != "running" or len(row.params) >= self.n_params):
                params = ", ".join(f"{names[k]}={value_text(v)}" for k, v in row.params.items())
                self.print_line(f"trial {row.number} started: {params}")
                self.seen[row.number] = "running"
            if row.state != "running":
                self.seen[row.number] = row.state
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
    n = len(results.rows)
    title = f"{results.name}: {n} trial{'s' * (n != 1)}, best {what} first"
    ranked = results.ranked()
    for part in trials_view(results, ranked, console.width, title):
        console.print(part, soft_wrap=True)
    for row in ranked:
        if row.note:
            console.print(Text(f"trial {row.number}: {row.note}", style="dim"), soft_wrap=True)
    console.print(counts_line(results), soft_wrap=True, highlight=False)
    if results.importances:
        importances(console, results.importances)
    for note in results.notes:
        console.print(f"note: {escape(note)}", style="yellow", soft_wrap=True, highlight=False)
    if results.best_config is not None:
        command_line(console, f"best config: {results.best_config}; train it with:",
                     f"bpcli train {shlex.quote(str(results.best_config))}")
    if resume_hint:
        command_line(console, "continue with:", resume_hint)


def importances(console: Console, found: dict[str, float], bar: int = 30) -> None:
    """Optuna's importances as numbers and bars; the bars shorten (or go) so that no name is cut."""
    longest = max((len(key) for key in found), default=0)
    width = max(0, min(bar, console.width - longest - len(" importance ")))
    table = Table(title="parameter importances (Optuna)", title_justify="left", header_style="bold", box=None,
                  pad_edge=False, padding=(0, 1))
    table.add_column("parameter")
    table.add_column("importance", justify="right")
    table.add_column("")
    for key, value in sorted(found.items(), key=lambda kv: -kv[1]):
        table.add_row(key, f"{value:.2f}", Text("█" * max(0, round(value * width)), style="cyan"))
    console.print(table, soft_wrap=True)
