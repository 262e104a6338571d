"""Rich drawing of `bpcli gradcheck --model`: the same heading and per-group table as for bpcli's own
network, then where each group lives in the learner's code, the forward-pass comparison, the verdict,
and the diagnosis by equation. Nothing is computed here; every number comes from `bpcli.gradcheck`.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from bpcli.gradcheck.api import UserReport
from bpcli.render import gradcheck as base

EQUATION_STYLE = "bold yellow"


def subject_line(report: UserReport) -> Text:
    return Text.assemble(("your network", "bold magenta"),
                         f": {report.model} ({report.style}, {report.result.dtype}): {report.how}")


def forward_line(report: UserReport) -> Text | None:
    f = report.forward
    if f is None:
        return None
    style = {True: "green", False: "bold red", None: "dim"}[f.agrees]
    label = {True: "forward pass: ", False: "FORWARD MISMATCH: ", None: "forward pass: "}[f.agrees]
    return Text.assemble((label, style), f.text)


def diagnosis_lines(report: UserReport) -> list[Text]:
    d = report.diagnosis
    if d is None:
        return []
    head = Text.assemble(("diagnosis: ", "bold"), (d.summary, EQUATION_STYLE))
    if d.formula:
        head.append(f"\n  {d.equation}: {d.formula}", style="cyan")
    return [head, *(Text(f"  - {e}") for e in d.evidence)]


def render(console: Console, report: UserReport) -> None:
    result = report.result
    console.print(base.heading(result, console.width))
    console.print(subject_line(report), soft_wrap=True)
    console.print(base.table(result, console.width) if console.width >= base.NARROW else base.stacked(result))
    for line in base.group_notes(result):
        console.print(line, soft_wrap=True)
    said: list[str] = []
    for note in [*report.notes, *result.notes]:
        if note not in said:
            said.append(note)
            console.print(Text(f"note: {note}", style="dim"), soft_wrap=True)
    if report.user_notes:
        console.print(Text("groups: " + "; ".join(report.user_notes), style="dim"), soft_wrap=True)
    line = forward_line(report)
    if line is not None:
        console.print(line, soft_wrap=True)
    console.print(base.verdict_line(result), soft_wrap=True)
    for text in diagnosis_lines(report):
        console.print(text, soft_wrap=True)
