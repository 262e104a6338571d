"""Rich drawing of `bpcli explain --model ... --weight l,j,k`: one partial derivative of a learner's
network beside bpcli's, row by row along BP1, BP2 and BP4. Nothing is computed here."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bpcli.gradcheck.trace import EQUATIONS, UserTrace


def render(console: Console, model: str, t: UserTrace, style: str = "book") -> None:
    l, j, k = t.weight
    console.print(Text.assemble(("trace ", "bold"), (f"dC/dw^{l}_{j}{k}", "cyan"),
                                f" of {model}, one example, yours beside bpcli's for the same weights"))
    style = {True: "green", False: "bold red", None: "dim"}[t.forward.agrees]
    console.print(Text(t.forward.text, style=style), soft_wrap=True)
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", show_edge=False, pad_edge=False)
    for name, justify in (("equation", "left"), ("symbol", "left"), ("yours", "right"), ("bpcli", "right"), ("", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in t.rows:
        mark = {True: Text("=", style="green"), False: Text("differs", style="bold red"), None: Text("-")}[r.agrees]
        bpcli = "numerical" if r.equation == "numerical" else "bpcli"
        label = r.equation if r.equation != "numerical" else "check"
        table.add_row(label, r.symbol, "-" if r.yours is None else f"{r.yours:.6e}",
                      "-" if r.bpcli is None else f"{r.bpcli:.6e}" + (" (num.)" if bpcli == "numerical" else ""), mark)
    console.print(table)
    first = t.first_difference
    if style == "function":
        console.print(Text("note: one example (m = 1), so a mistake that only scales with m (a missing 1/m) cannot "
                           "show here; `bpcli gradcheck --model` checks a batch", style="dim"), soft_wrap=True)
    if first is None and t.unread:
        console.print(Text(f"nothing compared at {', '.join(t.unread)}: your gradient's values there could not be "
                           "read (a shape or type that is not the parameter's); `bpcli gradcheck --model` says what "
                           "your backprop returned", style="yellow"), soft_wrap=True)
    elif first is None:
        console.print(Text("every step agrees with bpcli's", style="green"))
    elif first.equation in EQUATIONS:
        console.print(Text.assemble(("first difference: ", "bold red"), f"{first.symbol}, computed by {first.equation}: ",
                                    (EQUATIONS[first.equation], "cyan")), soft_wrap=True)
    else:
        console.print(Text.assemble(("first difference: ", "bold red"), f"{first.symbol} ({first.equation})"),
                      soft_wrap=True)
