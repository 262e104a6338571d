"""Lines that carry a command for the user to copy (resume a run, continue a sweep, train its best config).

A pipe or a file gets `lead command` as one line, for logs and grep. A terminal too, when it fits;
when it does not, the lead is printed (wrapped at word boundaries) and the command gets a line of its
own that Rich never breaks: the terminal wraps it where it must, and copying it gives one line to paste
(a line broken by Rich would paste as two commands)."""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Console


def command_line(console: Console, lead: str, command: str, style: str | None = None) -> None:
    line = f"{lead} {command}"
    if not console.is_terminal or cell_len(line) <= console.width:
        console.out(line, highlight=False, style=style)
        return
    console.print(lead, highlight=False, markup=False, style=style)
    console.out(command, highlight=False, style=style)
