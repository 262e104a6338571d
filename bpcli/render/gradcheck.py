"""Rich drawing of `bpcli gradcheck`: a heading, then per path (reference, training) a line saying what
was checked and one table row per parameter group (w^2, b^2, ...), the notes, and one verdict line per
path. Nothing is computed here; every number comes from `bpcli.gradcheck`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from bpcli.gradcheck import GradcheckResult, GroupResult, Report, Worst

WIDE = 96  # columns the wide table needs for MNIST-sized groups
NARROW = 80  # below this many columns the table becomes one block of lines per group

VERDICT_STYLE = {"pass": "bold green", "fail": "bold red", "kink": "bold yellow"}
METHOD_TEXT = {
    "central": "central differences (C(θ+h e_i) - C(θ-h e_i)) / 2h",
    "complex": "complex step Im C(θ + i h e_i) / h",
    "directional": "random directions: g·v vs (C(θ+h v) - C(θ-h v)) / 2h",
}


@contextlib.contextmanager
def checking(console: Console) -> Iterator[Callable[[str], None] | None]:
    """On a terminal, a spinner naming the parameter group whose numerical derivatives are being
    computed (a large batch takes minutes); elsewhere nothing, so that a log holds only the report."""
    if not console.is_terminal:
        yield None
        return
    with console.status("gradcheck: numerical derivatives ...") as status:
        yield lambda name: status.update(f"gradcheck: numerical derivatives of {name} ...")


def type_of(group: GroupResult) -> str:
    """R^(n_l x n_(l-1)) for w^l, R^(n_l) for b^l, as in the notation table."""
    if len(group.shape) == 2:
        return f"R^({group.shape[0]}x{group.shape[1]})"
    return f"R^{group.shape[0]}"


def worst_label(worst: Worst | None, method: str) -> str:
    if worst is None:
        return "-"
    if method == "directional":
        return f"v{worst.j}"
    if worst.k is None:
        return f"({worst.l}, {worst.j})"
    return f"({worst.l}, {worst.j}, {worst.k})"


def _e(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}e}"  # value != value: NaN


def _ratio(value: float) -> str:
    """err / tol in at most 7 characters: 0.031, 0.5, 12, 1.2e+04, inf."""
    return "-" if value != value else f"{value:.2g}"


def heading(result: GradcheckResult, width: int = 100) -> Text:
    """The method and the setting; where the setting does not fit one line it takes two, broken between
    items rather than inside `h = 1e-05`."""
    atol = f"atol {result.atol:.1e}" + (" (auto)" if result.atol_auto else "")
    first = f"layers {list(result.sizes)}, {result.examples} example{'s' * (result.examples != 1)}, C = {result.cost:.6g},"
    second = f"h = {result.eps:.0e}, rtol {result.rtol:.0e}, {atol}"
    setting = f"{first} {second}" if len(first) + 1 + len(second) <= width else f"{first}\n{second}"
    return Text.assemble(("gradcheck ", "bold"), (METHOD_TEXT[result.method], "cyan"), "\n", (setting, "dim"))


def path_line(result: GradcheckResult) -> Text:
    """Which gradient the table below judges: the reference path, or the training path with the
    setting training calls it in and, in float32, how its tolerance is derived."""
    if result.path != "training" or result.training is None:
        return Text.assemble(("reference path", "bold magenta"),
                             f": Network.backward in {result.dtype}, no workspace, scale 1")
    t = result.training
    rows, size, batch_size = t["rows"], t["workspace_rows"], t["batch_size"]
    first = "that a full batch of other examples went through first"
    if rows < size:
        workspace = f"a Workspace of {size} rows (training.batch_size) {first}, cut with rows({rows})"
    elif rows == batch_size:
        workspace = f"a Workspace of {size} rows (training.batch_size) {first}, which the batch fills (no cut)"
    else:
        workspace = (f"a Workspace of {size} rows (the batch, larger than training.batch_size = {batch_size}) "
                     f"{first} (no cut)")
    if t["scale"] != 1:
        scale = f"scale = eta = {t['scale']:g} ({t['optimizer']}), divided back out"
    else:
        why = "Adam takes g itself" if t["optimizer"] == "adam" else "eta = 1"
        scale = f"scale 1 ({t['optimizer']}: {why})"
    text = Text.assemble(("training path", "bold magenta"),
                         f": Network.backward as training calls it: {t['dtype']}, {workspace}, {scale}")
    r = result.rounding
    if r:
        text.append(f"; tolerance per entry: rtol and atol as above plus {r['kappa']:g} x the RMS of "
                    f"{r['runs']:g} simulated {t['dtype']} rounding deviations (u = {r['unit_roundoff']:.1e})")
    return text


def table(result: GradcheckResult, width: int = 100) -> Table:
    """One row per group, within `width` columns. Two-line cells keep the wide layout (>= WIDE
    columns) to about 96: max |g| above RMS g, the worst entry's backprop value above its numerical
    one. The narrow layout (80 columns) also puts the type under the group and the worst entry's
    index above its two values."""
    directional = result.method == "directional"
    wide = width >= WIDE
    t = Table(box=box.SIMPLE_HEAD, header_style="bold", show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    t.add_column("group", style="bold cyan")
    if wide:
        t.add_column("type", style="green")
    t.add_column("directions" if directional else "checked", justify="right")
    t.add_column("max |g|\nRMS g", justify="right")
    t.add_column("max abs\nerror", justify="right")
    t.add_column("max rel\nerror", justify="right")
    where = "worst\ndirection" if directional else "worst\n(l, j, k)"
    values = "g·v backprop\nnumerical" if directional else "backprop\nnumerical"
    if wide:
        t.add_column(where, justify="right")
        t.add_column(values, justify="right")
    else:
        t.add_column(f"{where.replace(chr(10), ' ')}\n{values}", justify="right")
    t.add_column("verdict\nerr/tol")
    for g in result.groups:
        size = math.prod(g.shape)
        checked = f"{g.checked:,}" if directional or g.checked == size else f"{g.checked:,}\nof {size:,}"
        verdict = Text(g.verdict, style=VERDICT_STYLE[g.verdict])
        verdict.append(f"\n{_ratio(g.max_tol_ratio)}", style="bold red" if g.failures else "")
        if g.kinks:
            verdict.append(f"\n{g.kinks:,} kink{'s' * (g.kinks != 1)}", style="yellow")
        w = g.worst
        both = "-" if w is None else f"{w.backprop:.6e}\n{w.numerical:.6e}"
        sizes = f"{_e(g.max_grad)}\n{_e(g.rms_grad)}"
        rel = Text(_e(g.max_rel_error), style="bold red" if g.failures else "")
        if wide:
            cells = [g.name, Text(type_of(g), style="green"), checked, sizes, _e(g.max_abs_error), rel,
                     worst_label(w, result.method), both]
        else:
            name = Text.assemble((g.name, "bold cyan"), "\n", (type_of(g), "green"))
            cells = [name, checked, sizes, _e(g.max_abs_error), rel, f"{worst_label(w, result.method)}\n{both}"]
        t.add_row(*cells, verdict, end_section=True)
    return t


def stacked(result: GradcheckResult) -> Group:
    """The table's content as one block per group, each line under 60 columns, for narrow terminals:
    a table of seven numeric columns cannot fit 60 without cutting its numbers."""
    directional = result.method == "directional"
    blocks: list[Text] = []
    for g in result.groups:
        size = math.prod(g.shape)
        checked = (f"{g.checked:,} directions" if directional else
                   f"{g.checked:,} entries" + ("" if g.checked == size else f" of {size:,}"))
        head = Text.assemble((g.name, "bold cyan"), " ", (type_of(g), "green"), "  ",
                             (g.verdict, VERDICT_STYLE[g.verdict]), f"  {checked}")
        if g.kinks:
            head.append(f", {g.kinks:,} kink{'s' * (g.kinks != 1)}", style="yellow")
        lines = [head,
                 Text(f"  max |g| {_e(g.max_grad)}  RMS g {_e(g.rms_grad)}"),
                 Text.assemble(f"  error: max abs {_e(g.max_abs_error)}  max rel ",
                               (_e(g.max_rel_error), "bold red" if g.failures else ""),
                               "  err/tol ", (_ratio(g.max_tol_ratio), "bold red" if g.failures else ""))]
        w = g.worst
        if w is not None:
            where = f"  worst {worst_label(w, result.method)}: "
            what = "g·v backprop" if directional else " backprop"
            lines.append(Text(f"{where}{what} {w.backprop:.6e}"))
            lines.append(Text(f"{' ' * len(where)}{'numerical'.rjust(len(what))} {w.numerical:.6e}"))
        blocks.append(Text("\n").join(lines))
    return Group(*blocks)


def notes(result: GradcheckResult) -> list[Text]:
    return [Text(f"note: {n}", style="dim") for n in result.notes] + group_notes(result)


def group_notes(result: GradcheckResult) -> list[Text]:
    """What a group's row cannot show: a gradient missing or of the wrong shape."""
    return [Text(f"{g.name}: {g.note}", style="red") for g in result.groups if g.note]


def verdict_line(result: GradcheckResult) -> Text:
    """PASS or FAIL for one path, with what was compared and the margin."""
    kinds = "directions" if result.method == "directional" else "entries"
    kinks = f", {result.kinks:,} ReLU kinks left out" if result.kinks else ""
    who = {"reference": "backprop", "yours": "your backprop"}.get(result.path, f"the {result.path} path ({result.dtype})")
    within = f"rtol {result.rtol:.0e}" if not result.rounding else f"rtol {result.rtol:.0e} + {result.dtype} rounding"
    if result.passed:
        worst = max((g.max_rel_error for g in result.groups), default=0.0)
        ratio = max((g.max_tol_ratio for g in result.groups), default=0.0)
        return Text.assemble(
            ("PASS", "bold green"),
            f": {who} agrees with {result.method} on all {result.checked - result.kinks:,} {kinds} compared "
            f"in {len(result.groups)} groups (max rel error {worst:.1e}, max err/tol {_ratio(ratio)}, {within}){kinks}",
        )
    failed = [g for g in result.groups if not g.passed]
    count = sum(g.failures for g in failed)
    return Text.assemble(
        ("FAIL", "bold red"),
        f": {who} disagrees with {result.method} in {', '.join(g.name for g in failed)} "
        f"({count:,} of {result.checked:,} {kinds} beyond {within}){kinks}",
    )


def render(console: Console, report: Report | GradcheckResult) -> None:
    """The heading once, then each path's line and table (stacked below 80 columns) and notes, the
    shared notes, and one verdict line per path."""
    results = report.results if isinstance(report, Report) else [report]
    shared = list(report.notes) if isinstance(report, Report) else []
    console.print(heading(results[0], console.width))
    for result in results:
        if isinstance(report, Report):
            console.print(path_line(result))
        console.print(table(result, console.width) if console.width >= NARROW else stacked(result))
        for line in group_notes(result):
            console.print(line, soft_wrap=True)
    said: list[str] = []  # each note once, though several paths may carry it
    for note in [*shared, *(n for r in results for n in r.notes)]:
        if note not in said:
            said.append(note)
            console.print(Text(f"note: {note}", style="dim"), soft_wrap=True)
    for result in results:
        console.print(verdict_line(result), soft_wrap=True)
