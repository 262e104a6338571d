"""Narrow forms of `bpcli explain`'s wide tables, and the pieces both forms share.

A table wider than the terminal makes Rich shrink its columns and cut cells to '…' ('sigm…',
'theta[0:1254…'). Where a section's table does not fit, `render/explain.py` draws it with one of these
instead: each row's fields stacked as lines under the row's symbol, so long formulas wrap between words
and nothing is cut at 60 columns. The palette, titles and small formatters live here rather than in
`render/explain.py` so that both forms share them with no import cycle (that module imports this one,
never the reverse). Nothing is computed here either; every string comes from `bpcli.explain`.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from bpcli.explain import SECTIONS, TITLES, Block, Graph, LayerInfo, Symbol, count, graph_rows, shape

SYMBOL = "bold cyan"
TYPE = "green"
SHAPE = "magenta"
NUMBER = "yellow"
SOURCE = "dim"

# Below this many columns the sections whose tables hold prose (notation, the equation cards, the graph
# listing, the trace) stack their rows: their tables would still fit, but only by wrapping every formula
# into a narrow column. 80 as in `render/gradcheck.py`, so the commands change layout together.
NARROW = 80



def title(name: str) -> str:
    return f"[bold]{SECTIONS.index(name) + 1} · {TITLES[name]}[/]"


def dims(d: tuple[int, ...] | None) -> str:
    return " x ".join(count(v) for v in d) if d else "-"


def lines(*parts: tuple[str, str]) -> Text:
    """Plain strings (never parsed as markup, so w[l] stays w[l]) joined into one styled Text."""
    return Text("\n").join(Text(text, style=style) for text, style in parts)


def sources(labels: list[str]) -> Text:
    """A node's inputs, coloured by kind: weights yellow, biases red, activations cyan."""
    out = Text()
    for i, label in enumerate(labels):
        if i:
            out.append(", ")
        out.append(label, style={"w": "yellow", "b": "red", "a": "cyan", "z": "cyan", "x": "cyan"}.get(label[:1], ""))
    return out


def _stack(heading: str, body: RenderableType, caption: str) -> Group:
    """A heading (markup), the stacked rows and a caption, spaced as a titled Rich table is."""
    return Group(Text.from_markup(heading), Text(""), body, Text(""), Text(caption, style="dim"))


def _rows() -> Table:
    """Two columns: the row's symbol (never wrapped), then its fields as lines that wrap between words."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style=SYMBOL, no_wrap=True)
    grid.add_column()
    return grid


def notation_cell(sym: Symbol) -> Text:
    """The type and meaning columns of a notation row as one cell: 20 columns more for the prose."""
    return lines((sym.general, TYPE), (sym.concrete, SHAPE), (sym.meaning, ""), (sym.code, SOURCE))


def layers(heading: str, caption: str, rows: list[LayerInfo]) -> Group:
    """One block per layer: n_l and sigma, the shapes, then the counts as a sum."""
    grid = _rows()
    for r in rows:
        head = Text.assemble((f"n_{r.l} = {count(r.n)}", NUMBER), "   ",
                             (r.activation, "") if r.activation else ("input", "dim"))
        if r.w is None:
            body = [head, Text(f"a^1 in R^{count(r.n)}, array {shape(r.batch)}", style=SHAPE)]
        else:
            body = [head,
                    Text.assemble((f"w^{r.l}", SYMBOL), " ", (dims(r.w), SHAPE), "   ",
                                  (f"b^{r.l}", SYMBOL), " ", (dims(r.b), SHAPE)),
                    Text(f"z^{r.l} a^{r.l} delta^{r.l} in R^{count(r.n)}, arrays {shape(r.batch)}", style=SHAPE),
                    Text.assemble((count(r.weights), NUMBER), " weights + ", (count(r.biases), NUMBER),
                                  " biases = ", (count(r.params), NUMBER), " params")]
        grid.add_row(f"l = {r.l}", Text("\n").join(body))
    return _stack(heading, grid, caption)


def blocks(heading: str, caption: str, rows: list[Block]) -> Group:
    """Each block of theta on three lines: its size (with the shape of a matrix), its ranges in w (or b)
    and in theta, and where one entry sits."""
    grid = _rows()
    for b in rows:
        grid.add_row(b.symbol, Text("\n").join([
            Text.assemble(*([(dims(b.shape), SHAPE), " = "] if len(b.shape) > 1 else []), (count(b.size), NUMBER),
                          " entries"),
            Text(f"{b.kind}[{b.offset}:{b.end}]   theta[{b.theta_offset}:{b.theta_end}]"),
            Text(b.index, style=SOURCE),
        ]))
    return _stack(heading, grid, caption)


def graph_listing(heading: str, caption: str, graph: Graph) -> Group:
    """Each node on its own line, what it computes and what feeds it on the lines below."""
    parts: list[RenderableType] = []
    for row in graph_rows(graph):
        if isinstance(row, int):
            parts.append(Text(f"⋮ … {row} more, wired the same way", style=SOURCE))
            continue
        node, inputs = row
        fields = Table.grid(padding=(0, 1))
        fields.add_column(style="dim", no_wrap=True)
        fields.add_column()
        fields.add_row("computes", Text(node.computes))
        fields.add_row("fed by", sources(inputs))
        parts += [Text(node.label, style=SYMBOL), Padding(fields, (0, 0, 0, 2))]
    return _stack(heading, Group(*parts), caption)


def trace_steps(rows: list[tuple[str, str, str]]) -> Group:
    """Each quantity with its value on one line, where it comes from on the next: the value column
    stays aligned while the explanation gets the whole width."""
    q_width = max(cell_len(q) for q, _, _ in rows)
    v_width = max(cell_len(v) for _, v, _ in rows)
    parts: list[RenderableType] = [Text("")]  # blank lines around, where the table has its top and bottom edge
    for q, v, how in rows:
        if q.startswith("dC/dw^"):  # the table's section break: the derivative and its checks
            parts.append(Text(""))
        parts.append(Text.assemble((q, SYMBOL), " " * (q_width - cell_len(q) + 2 + v_width - cell_len(v)),
                                   (v, NUMBER)))
        parts.append(Padding(Text(how, style=SOURCE), (0, 0, 0, 4)))
    return Group(*parts, Text(""))
