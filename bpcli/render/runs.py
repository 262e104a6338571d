"""`bpcli runs` and `bpcli runs compare` in the terminal.

The list fits the terminal without cutting a number to '…': the full table when it fits; else a compact
table whose first cell holds the run's name with its network and optimizer under it; else, on a very
narrow terminal, one block per run whose items wrap between items, never inside one. What needs a
sentence (how to resume an interrupted run, why one is broken or diverged) goes below, as wrapped lines.
"""

from __future__ import annotations

import time
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bpcli.runs import Comparison, Row, Run

STYLE = {"finished": "green", "pruned": "dim", "interrupted": "yellow", "running": "cyan", "diverged": "red",
         "broken": "red"}
DASH = "—"


def percent(x: float | None) -> str:
    return DASH if x is None else f"{100 * x:.2f}%"


def duration(seconds: float | None) -> str:
    """0.8s, 42.1s, 3m05s, 2h07m."""
    if seconds is None:
        return DASH
    if seconds < 60:
        return f"{seconds:.1f}s"
    m = int(round(seconds)) // 60
    if m < 60:
        return f"{m}m{int(round(seconds)) % 60:02d}s"
    return f"{m // 60}h{m % 60:02d}m"


def started(r: Run, short: bool = False) -> str:
    if r.started is None:
        return DASH
    return time.strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M", time.localtime(r.started))


def network(r: Run) -> str:
    if r.layers is None:
        return DASH
    return f"{'-'.join(str(n) for n in r.layers)} {r.activation}/{r.output}"


def epochs(r: Run) -> str:
    done = DASH if r.epochs_done is None else str(r.epochs_done)
    planned = DASH if r.epochs_planned is None else str(r.epochs_planned)
    return f"{done}/{planned}"


def _cells(r: Run) -> dict[str, str]:
    return {"epochs": epochs(r), "best val": percent(r.best_val_accuracy), "test": percent(r.test_accuracy),
            "time": duration(r.seconds)}


GAP = 2  # columns between two cells
NUMBERS = ("epochs", "best val", "test", "time")


def _longest_word(texts: list[str]) -> int:
    return max((cell_len(word) for t in texts for word in t.split()), default=1)


def _longest(texts: list[str]) -> int:
    return max((cell_len(t) for t in texts), default=1)


def _fixed(header: str, cells: list[str]) -> int:
    return max(cell_len(header), _longest(cells))


def _table() -> Table:
    return Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1), collapse_padding=True)


def _numbers(runs: list[Run], t: Table) -> None:
    cells = [_cells(r) for r in runs]
    for name in NUMBERS:
        t.add_column(name, justify="right", no_wrap=True, width=_fixed(name, [c[name] for c in cells]))
    t.add_column("state", no_wrap=True, width=_fixed("state", [r.state for r in runs]))


def _numbers_width(runs: list[Run], short: bool) -> int:
    """The columns that never wrap (start time, numbers, state) with the gaps of the whole table."""
    cells = [_cells(r) for r in runs]
    widths = [_fixed("started", [started(r, short) for r in runs])]
    widths += [_fixed(name, [c[name] for c in cells]) for name in NUMBERS]
    widths.append(_fixed("state", [r.state for r in runs]))
    return sum(widths)


def full_table(runs: list[Run], width: int, short: bool = False) -> Table | None:
    """Every column of its own; names whole, network and optimizer wrapped between words if they must:
    None when even that does not fit. `short`: the start time without the year."""
    names, nets, opts = [r.name for r in runs], [network(r) for r in runs], [r.optimizer or DASH for r in runs]
    fixed = _numbers_width(runs, short) + GAP * 8
    lows = [_fixed("run", names), max(7, _longest_word(nets)), max(9, _longest_word(opts))]
    highs = [lows[0], max(7, _longest(nets)), max(9, _longest(opts))]
    room = width - fixed
    if sum(lows) > room:
        return None
    # Give the optimizer, then the network, what they need on one line, as far as the room goes.
    spare = room - sum(lows)
    widths = list(lows)
    for i in (2, 1):
        extra = min(spare, highs[i] - lows[i])
        widths[i] += extra
        spare -= extra
    t = _table()
    t.add_column("run", no_wrap=True, width=widths[0])
    t.add_column("started", no_wrap=True)
    t.add_column("network", width=widths[1])
    t.add_column("optimizer", width=widths[2])
    _numbers(runs, t)
    for r in runs:
        c = _cells(r)
        t.add_row(Text(r.name), started(r, short), network(r), r.optimizer or DASH, c["epochs"], c["best val"],
                  c["test"], c["time"], Text(r.state, style=STYLE.get(r.state, "")))
    return t


def compact_table(runs: list[Run], width: int) -> Table | None:
    """Name, network and optimizer share the first column, one line each (wrapped between words if they
    must); the start time and the numbers keep theirs: None when the names do not fit whole."""
    names = [r.name for r in runs]
    texts = names + [network(r) for r in runs] + [r.optimizer or DASH for r in runs]
    fixed = _numbers_width(runs, short=True) + GAP * 6
    low = max(_fixed("run", names), _longest_word(texts))
    if low + fixed > width:
        return None
    t = _table()
    t.add_column("run", width=min(_longest(texts), width - fixed))
    t.add_column("started", no_wrap=True)
    _numbers(runs, t)
    for r in runs:
        c = _cells(r)
        first = Text(r.name, style="bold")
        first.append(f"\n{network(r)}\n{r.optimizer or DASH}", style="dim")
        t.add_row(first, started(r, short=True), c["epochs"], c["best val"], c["test"], c["time"],
                  Text(r.state, style=STYLE.get(r.state, "")))
    return t


def blocks(runs: list[Run], width: int) -> list[Text]:
    """One block per run: name and state, then items that wrap between items."""
    out: list[Text] = []
    for r in runs:
        c = _cells(r)
        head = Text(r.name, style="bold")
        head.append("  ")
        head.append(r.state, style=STYLE.get(r.state, ""))
        out.append(head)
        items = [network(r), r.optimizer or DASH, f"started {started(r)}", f"epochs {c['epochs']}",
                 f"best val {c['best val']}", f"test {c['test']}", f"time {c['time']}"]
        out += _items(items, width, indent=2)
    return out


def _items(items: list[str], width: int, indent: int) -> list[Text]:
    lines, line = [], ""
    for item in items:
        if line and indent + len(line) + 3 + len(item) > width:
            lines.append(line)
            line = item
        else:
            line = f"{line} · {item}" if line else item
    if line:
        lines.append(line)
    return [Text(" " * indent + x, style="dim") for x in lines]


def notes(runs: list[Run]) -> list[Text]:
    """A sentence for each run that needs one; a resume command on a line of its own, to copy."""
    out = []
    for r in runs:
        if r.state == "interrupted":
            inside = r.batch and r.epochs_done is not None
            where = f" (inside epoch {(r.epochs_done or 0) + 1}, batch {r.batch})" if inside else ""
            stopped = f"{r.name} was interrupted after epoch {r.epochs_done} of {r.epochs_planned}{where}"
            if r.resume is None:  # a sweep's trial
                out.append(Text(f"{stopped}; a trial of the sweep in {r.sweep}: continuing the sweep with "
                                "--resume runs it again"))
            else:
                out.append(Text(f"{stopped}; resume it with:"))
                out.append(Text(f"  {r.resume}"))
        elif r.state == "diverged":
            out.append(Text(f"{r.name} diverged: {r.problem}"))
        elif r.state == "broken":
            out.append(Text(f"{r.name} is broken: {r.problem}"))
        elif r.state == "running":
            out.append(Text(f"{r.name} is being trained by process {r.pid}"))
    return out


def listing(runs: list[Run], width: int) -> list[RenderableType]:
    if not runs:
        return [Text("no runs here yet: `bpcli train CONFIG` makes one")]
    table = full_table(runs, width) or full_table(runs, width, short=True) or compact_table(runs, width)
    if table is not None:
        body: list[RenderableType] = [table]
    else:
        body = list(blocks(runs, width))
    out: list[RenderableType] = body
    said = notes(runs)
    if said:
        out.append(Text())
        out += said
    return out


def render(console: Console, runs: list[Run]) -> None:
    for part in listing(runs, console.width):
        console.print(part, soft_wrap=False, highlight=False)


# -- compare ----------------------------------------------------------------------------------------------

def _value(row: Row, x: float | None) -> str:
    if x is None:
        return DASH
    if row.unit == "%":
        return percent(x)
    if row.unit == "s":
        return duration(x)
    if row.unit == "epochs":
        return str(int(x))
    return f"{x:.4f}"


def _difference(row: Row) -> Text:
    d = row.difference
    if d is None:
        return Text(DASH)
    if row.unit == "%":
        text = f"{100 * d:+.2f} pts"
    elif row.unit == "s":
        text = f"{d:+.1f}s"
    elif row.unit == "epochs":
        text = f"{int(d):+d}"
    else:
        text = f"{d:+.4f}"
    good = (d > 0) if row.better == "higher" else (d < 0) if row.better == "lower" else None
    return Text(text, style="" if good is None or d == 0 else "green" if good else "red")


def _short(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def comparison(c: Comparison, width: int) -> list[RenderableType]:
    a, b = c.a, c.b
    out: list[RenderableType] = [Text(f"A: {a.path} ({a.state})\nB: {b.path} ({b.state})")]
    narrow = width < 80
    cfg = Table(title="config: what differs", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                pad_edge=False)
    cfg.add_column("field", no_wrap=True)
    cfg.add_column("A", overflow="fold")
    cfg.add_column("B", overflow="fold")
    for key, x, y in c.config:
        cfg.add_row(key, escape(_short(x)), escape(_short(y)))
    out += [Text(), cfg if c.config else Text("config: the same (apart from the name)"), Text()]
    m = Table(title="metrics (B − A)", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    m.add_column("metric", overflow="fold")
    for name in ("A", "B", "B − A"):
        m.add_column(name, justify="right", no_wrap=True)
    for row in c.metrics:
        va, vb = _value(row, row.a), _value(row, row.b)
        if not narrow:
            va += f" ({row.note_a})" if row.note_a and row.a is not None else ""
            vb += f" ({row.note_b})" if row.note_b and row.b is not None else ""
        m.add_row(row.label, va, vb, _difference(row))
    out.append(m)
    if c.epochs:
        out.append(Text())
        e = Table(title="validation accuracy by epoch", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False)
        for name in ("epoch", "A", "B", "B − A"):
            e.add_column(name, justify="right", no_wrap=True)
        for epoch, x, y in c.epochs:
            e.add_row(str(epoch), percent(x), percent(y), _difference(Row("", x, y, "%", "higher")))
        out.append(e)
    return out


def render_comparison(console: Console, c: Comparison) -> None:
    for part in comparison(c, console.width):
        console.print(part, highlight=False)
