"""Rich drawing of `bpcli explain`: one table or panel per section of an `Explanation`.

Nothing is computed here; every string and number comes from `bpcli.explain`. Colours carry one
meaning throughout: symbols cyan, types green, shapes magenta, numbers yellow, sources dim.
Each section takes the terminal's width: where its wide table would be cut, `render/explain_narrow.py`
draws the narrow form (a column dropped, or each row's fields stacked as lines).
"""

from __future__ import annotations

from typing import Callable

from rich import box
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.padding import Padding
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from bpcli.explain import (
    SECTIONS,
    Equation,
    Explanation,
    Graph,
    count,
    graph_rows,
    human_bytes,
    shape,
    weight_ranges,
)
from bpcli.render.explain_formats import term_rows, trace_rows
from bpcli.render import explain_narrow as narrow
from bpcli.render.explain_narrow import NARROW, NUMBER, SHAPE, SOURCE, SYMBOL, TYPE, dims, lines
from bpcli.render.explain_narrow import title as _title
from bpcli.render.measure import fits

WIDE = 120  # a section drawn without a width gets its wide form, as at 120 columns


def _table(name: str | None = None, caption: str | None = None, **kwargs: object) -> Table:
    return Table(title=_title(name) if name else None, title_justify="left",
                 caption=Text(caption, style="dim") if caption else None,
                 caption_justify="left", box=box.SIMPLE_HEAD, header_style="bold", expand=False,
                 pad_edge=False, **kwargs)  # type: ignore[arg-type]


def bullets(items: list[str], numbered: bool = False, style: str = "") -> Table:
    """A list with hanging indents: wrapped lines stay under their text, not under the marker."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, style="bold" if numbered else SOURCE)
    grid.add_column()
    for i, item in enumerate(items, 1):
        grid.add_row(f"{i}." if numbered else "•", Text(item, style=style))
    return grid


def header(model: Explanation) -> Panel:
    ls = model.layers
    text = Text.from_markup(
        f"[bold]network[/] [{SHAPE}]{list(model.sizes)}[/]   [bold]L[/] = {model.L}   "
        f"[bold]C[/] : [{TYPE}]R^{count(ls.n_params)} -> R[/]   [bold]batch[/] m = {model.batch_size}   "
        f"[bold]dtype[/] {model.dtype}\n"
        f"[{SOURCE}]{escape(model.source)}\n{escape(model.index_note)}[/]"
    )
    return Panel(text, title=f"[bold]bpcli explain[/] · {escape(model.name)}", title_align="left",
                 box=box.ROUNDED, border_style="cyan")


# -- the sections ---------------------------------------------------------------------------------------


def notation(model: Explanation, width: int = WIDE) -> RenderableType:
    """symbol | its type in general, then for this network | its meaning, then the array that holds it.
    Below NARROW columns the type lines stand above the meaning in one column, which wraps the prose
    less than two columns of half the width."""
    assert model.notation is not None
    t = _table("notation", caption=f"Types are per example. The code stacks a batch of m = {model.batch_size} "
                                   "examples as rows, which adds the leading dimension of the arrays.")
    t.add_column("symbol", style=SYMBOL, no_wrap=True)
    if width >= NARROW:
        t.add_column(f"type  ·  in {escape(model.name)}", ratio=2)
        t.add_column(f"meaning  ·  in the code (m = {model.batch_size})", ratio=3)
    else:
        t.add_column(f"type  ·  in {escape(model.name)}\nmeaning  ·  in the code (m = {model.batch_size})")
    for sym in model.notation:
        if width >= NARROW:
            t.add_row(Text(sym.symbol), lines((sym.general, TYPE), (sym.concrete, SHAPE)),
                      lines((sym.meaning, ""), (sym.code, SOURCE)), end_section=True)
        else:
            t.add_row(Text(sym.symbol), narrow.notation_cell(sym), end_section=True)
    return t


def _layers_caption(model: Explanation) -> str:
    return (f"z^l, a^l and delta^l are vectors in R^(n_l) per example; the arrays z[l], a[l] and "
            f"delta[l] add the batch dimension m = {model.batch_size}.")


def _layers_table(model: Explanation, vectors: bool = True) -> Table:
    """One row per layer. `vectors=False` leaves out the z^l a^l delta^l column: it only repeats n_l
    (the caption says they are in R^(n_l)), so it is the one to drop first when the table is too wide."""
    ls = model.layers
    t = _table("layers", show_footer=True, caption=_layers_caption(model))
    t.add_column("l", justify="right", style=SYMBOL)
    t.add_column("n_l", justify="right")
    t.add_column("sigma", footer="total")
    t.add_column("w^l", style=SHAPE, justify="right")
    t.add_column("b^l", style=SHAPE, justify="right")
    if vectors:
        t.add_column("z^l a^l delta^l", style=SHAPE, justify="right", no_wrap=True)
    t.add_column("(m, n_l)", style=SHAPE, justify="right")
    t.add_column("weights", justify="right", style=NUMBER, footer=count(ls.n_w))
    t.add_column("biases", justify="right", style=NUMBER, footer=count(ls.n_b))
    t.add_column("params", justify="right", style=NUMBER, footer=count(ls.n_params))
    for r in ls.layers:
        vector = [f"R^{count(r.n)}" if r.l > 1 else f"a^1 in R^{count(r.n)}"] if vectors else []
        t.add_row(str(r.l), count(r.n), r.activation or Text("input", style="dim"), dims(r.w), dims(r.b),
                  *vector, shape(r.batch), count(r.weights), count(r.biases), count(r.params))
    return t


def layers(model: Explanation, width: int = WIDE) -> RenderableType:
    """The whole table where it fits; without the z^l a^l delta^l column where that fits; otherwise one
    block of lines per layer. Chosen by the table's natural width, so a network with wider counts
    changes layout at its own width and no cell is ever shrunk to '…'."""
    ls = model.layers
    tables = (_layers_table(model), _layers_table(model, vectors=False))
    fitting = [t for t in tables if fits(t, width)]
    body = fitting[0] if fitting else narrow.layers(_title("layers"), _layers_caption(model), ls.layers)
    memory = Text.from_markup(
        f"n_w + n_b = [{NUMBER}]{count(ls.n_w)}[/] + [{NUMBER}]{count(ls.n_b)}[/] = "
        f"[{NUMBER}]{count(ls.n_params)}[/] parameters x {ls.itemsize} bytes ({ls.dtype}) = "
        f"[{NUMBER}]{count(ls.bytes)}[/] bytes ({human_bytes(ls.bytes)})"
    )
    return Group(body, Padding(memory, (0, 0, 0, 1)))


def cost(model: Explanation, width: int = WIDE) -> RenderableType:
    """The cost's formulas and types, then where each block of parameters sits in theta: a table where
    it fits inside the panel, otherwise three lines per block, so that no range or formula is cut."""
    c = model.cost
    assert c is not None
    rows = [("per example", Text(c.per_example, style=SYMBOL)), ("mini-batch", Text(c.batch_mean)),
            ("type", Text(c.general_type, style=TYPE)), ("here", Text(c.concrete_type, style=TYPE)),
            ("output error", lines((c.output_delta, SYMBOL), (c.output_delta_why, SOURCE)))]
    formulas = Table.grid(padding=(0, 2))
    if width >= NARROW:
        formulas.add_column(style="bold", no_wrap=True)
        formulas.add_column()
        for label, text in rows:
            formulas.add_row(label, text)
    else:  # each label above its formula, which then has the whole width and wraps less
        for label, text in rows:
            formulas.add_row(Text(label, style="bold"))
            formulas.add_row(Padding(text, (0, 0, 0, 2)))
    heading = "[bold]The domain of C, unrolled into one vector[/]"
    caption = "Each w^l lies in w row by row (j, then k); theta = (w, b) puts all of w first."
    table = _table(caption=caption)
    table.title = heading
    table.add_column("block", style=SYMBOL)
    table.add_column("shape", style=SHAPE, justify="right")
    table.add_column("size", style=NUMBER, justify="right")
    table.add_column("in w or b", justify="right")
    table.add_column("in theta", justify="right")
    table.add_column("one entry", style=SOURCE)
    for b in c.blocks:
        table.add_row(b.symbol, dims(b.shape), count(b.size), Text(f"{b.kind}[{b.offset}:{b.end}]"),
                      Text(f"theta[{b.theta_offset}:{b.theta_end}]"), Text(b.index))
    inside = width - 4  # the panel's border and padding take 4 columns
    blocks = table if fits(table, inside) else narrow.blocks(heading, caption, c.blocks)
    body = Group(
        Text.from_markup(f"[bold]{escape(c.kind)}[/]  [dim]({c.name} with a {c.output} output)[/]\n"),
        formulas, Text(""), bullets(c.fixed), Text(""), blocks,
    )
    return Panel(body, title=_title("cost"), title_align="left", box=box.ROUNDED, border_style="blue")


def _steps(title: str, rows: list[Equation], width: int = WIDE) -> Panel:
    """Each step as a small card: the equation, then its shapes, code and inputs on labelled lines.
    Below NARROW columns `l = 2` moves into the label column, leaving the formulas 9 columns more."""
    wide = width >= NARROW
    grid = Table.grid(padding=(0, 2))
    if wide:
        grid.add_column(style=SYMBOL, no_wrap=True, justify="right")
    grid.add_column(style="dim", no_wrap=True, justify="left" if wide else "right")
    grid.add_column()
    for i, r in enumerate(rows):
        if i:
            grid.add_row(*[""] * len(grid.columns))
        fields = [("shapes", Text(r.shapes, style=SHAPE)), ("code", Text(r.code, style=SOURCE)), ("uses", Text(r.uses))]
        if wide:
            grid.add_row(f"l = {r.l}", "", Text(r.math, style="bold"))
            for label, text in fields:
                grid.add_row("", label, text)
        else:
            grid.add_row(Text(f"l = {r.l}", style=SYMBOL), Text(r.math, style="bold"))
            for label, text in fields:
                grid.add_row(label, text)
    return Panel(grid, title=f"[bold]{title}[/]", title_align="left", box=box.ROUNDED, border_style="dim")


def equations(model: Explanation, width: int = WIDE) -> RenderableType:
    e = model.equations
    assert e is not None
    induction = _table()
    induction.add_column("C^l", style=SYMBOL)
    induction.add_column("type", style=TYPE)
    induction.add_column("definition")
    for i in e.induction:
        induction.add_row(f"C^{i.l}", i.type, Text(i.definition))
    # Rich cuts a panel title that does not fit, silently; then "why an induction" opens the panel instead.
    title = _title("equations") + " [dim]· why an induction[/]"
    why: RenderableType = bullets(e.why, numbered=True)
    if Text.from_markup(title).cell_len + 6 > width:
        title, why = _title("equations"), Group(Text("why an induction", style="dim"), why)
    return Group(
        Panel(why, title=title, title_align="left", box=box.ROUNDED, border_style="blue"),
        Padding(Text.from_markup("[bold]The cost seen from layer l[/]: C = C^l(z^l), and delta^l is the "
                                 "gradient of C^l at z^l"), (0, 0, 0, 1)),
        Padding(induction, (0, 0, 1, 1)),
        _steps("Forward pass, l = 2..L: keep every z^l and a^l", e.forward, width),
        _steps("Backward pass, l = L..2: each delta from the next one", e.backward, width),
        _steps("Gradients: one delta times one stored activation", e.gradients, width),
        Panel(bullets(e.order, numbered=True), title="[bold]Order of the computation[/]", title_align="left",
              box=box.ROUNDED, border_style="dim"),
    )


def _spine(model: Explanation, graph: Graph) -> Text:
    """The network as a vertical chain: each layer's node, with its weight and bias nodes feeding in."""
    out = Text()
    sizes, L = model.sizes, model.L
    out.append("  a^1 = x", style=SYMBOL)
    out.append(f"   {count(sizes[0])} inputs\n", style=SOURCE)
    for l in range(2, L + 1):
        n, n_prev = sizes[l - 1], sizes[l - 2]
        sigma = model.layers.layers[l - 1].activation
        out.append("    │\n", style="dim")
        out.append("    ▼  ◀── ", style="dim")
        out.append(f"w^{l}", style="bold yellow")
        out.append(f" ({n} x {count(n_prev)}), ", style=SOURCE)
        out.append(f"b^{l}", style="bold red")
        out.append(f" ({n})\n", style=SOURCE)
        out.append(f"  a^{l}", style=SYMBOL)
        out.append(f" = {sigma}(w^{l} a^{l - 1} + b^{l})")
        out.append(f"   {count(n)} neurons\n", style=SOURCE)
    out.append("    │\n", style="dim")
    out.append("    ▼  ◀── ", style="dim")
    out.append("y", style="bold")
    out.append(f" ({sizes[-1]})\n", style=SOURCE)
    out.append(f"  {graph.node('C').computes}", style="bold magenta")
    return out


def graph(model: Explanation, width: int = WIDE) -> RenderableType:
    """The spine, the notes, then every node with its inputs: a table from NARROW columns up, below
    that each node on its own line with what it computes and what feeds it underneath."""
    g = model.graph
    assert g is not None
    notes = bullets(g.notes + [f"layer {l}: {text}" for l, text in g.detail.items()], style=SOURCE)
    heading = "[bold]Each node with inputs, in the order of computation[/]"
    caption = f"{len(g.nodes)} nodes, {len(g.edges)} edges in all. Export them with --graph mermaid or --graph dot."
    if width >= NARROW:
        listing: RenderableType = _listing(g, heading, caption)
    else:
        listing = narrow.graph_listing(heading, caption, g)
    spine = Panel(_spine(model, g), title=_title("graph"), title_align="left", box=box.ROUNDED,
                  border_style="blue", subtitle="[dim]weights and biases are nodes[/]", subtitle_align="right")
    return Group(spine, Padding(notes, (0, 0, 1, 1)), listing)


def _listing(g: Graph, heading: str, caption: str) -> Table:
    listing = _table(caption=caption)
    listing.title = heading
    listing.add_column("node", style=SYMBOL, no_wrap=True)
    listing.add_column("computes", ratio=1)
    listing.add_column("fed by", ratio=1)
    for row in graph_rows(g):
        if isinstance(row, int):
            listing.add_row("⋮", Text(f"… {row} more, wired the same way", style=SOURCE), "")
            continue
        node, inputs = row
        listing.add_row(Text(node.label), Text(node.computes), narrow.sources(inputs))
    return listing


def _trace_table(rows: list[tuple[str, str, str]]) -> Table:
    steps = _table()
    steps.add_column("quantity", style=SYMBOL, no_wrap=True)
    steps.add_column("value", style=NUMBER, justify="right", no_wrap=True)
    steps.add_column("from")
    for q, v, how in rows:
        if q.startswith("dC/dw^"):
            steps.add_section()
        steps.add_row(Text(q), Text(v), Text(how, style=SOURCE))
    return steps


def trace(model: Explanation, width: int = WIDE) -> RenderableType:
    """The chain from the weight to C, each quantity with its value and origin (stacked below NARROW
    columns, where the origin column would be a word wide), the sum inside delta, and the check."""
    t = model.trace
    assert t is not None
    intro = Text.from_markup(
        f"[bold]dC/dw^{t.l}_({t.j},{t.k})[/] for test example {t.example} (label {t.label}) of "
        f"{escape(t.source)}.\nThe one weight added as a node, and its only way to C:\n  "
    )
    for i, node in enumerate(t.path):
        if i:
            intro.append(" → ", style="dim")
        intro.append(node, style="bold yellow" if i == 0 else SYMBOL)
    steps = _trace_table(trace_rows(t)) if width >= NARROW else narrow.trace_steps(trace_rows(t))
    parts: list[RenderableType] = [intro, steps]
    if t.terms:
        terms = _table()
        terms.add_column("i", justify="right", style=SYMBOL)
        terms.add_column(f"w^{t.l + 1}_(i,{t.j})", justify="right", style=NUMBER)
        terms.add_column(f"delta^{t.l + 1}_i", justify="right", style=NUMBER)
        terms.add_column("product", justify="right", style=NUMBER)
        for row in term_rows(t):
            terms.add_row(*row)
        parts += [Text.from_markup(f"[bold]The sum inside delta^{t.l}_{t.j}[/], largest terms first:"),
                  Padding(terms, (0, 0, 0, 2))]
    gap = f"{t.abs_diff:.1e}" + (f" (relative {t.rel_diff:.1e})" if t.abs_diff else "")
    verdict = (f"[bold green]✓ agree[/]: backprop and the central difference differ by {gap}" if t.agrees
               else f"[bold red]✗ differ[/] by {gap}")
    parts += [Text.from_markup(verdict), bullets(t.notes, style=SOURCE)]
    return Panel(Group(*parts), title=_title("trace"), title_align="left", box=box.ROUNDED, border_style="blue")


# Each takes the terminal's width: below what a section's wide form needs, it draws a narrower one.
RENDERERS: dict[str, Callable[[Explanation, int], RenderableType]] = {
    "notation": notation,
    "layers": layers,
    "cost": cost,
    "equations": equations,
    "graph": graph,
    "trace": trace,
}


def render(console: Console, model: Explanation, hint: bool = False) -> None:
    """Print the explanation: a header, then each chosen section in order."""
    console.print(header(model))
    for name in SECTIONS:
        if name in model.sections:
            console.print()
            console.print(RENDERERS[name](model, console.width))
    if hint:
        console.print()
        console.print(Rule(style="dim"))
        ranges = escape(weight_ranges(model.sizes))
        console.print(f"[{SOURCE}]Trace one partial derivative with --weight l,j,k ({ranges}).[/]", highlight=False)
