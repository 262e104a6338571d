"""Per-layer learning statistics as text: a compact table (one line per layer l = 2..L) and the line
that calls out how much more slowly the first hidden layer learns than the last.

Rows come from `metrics.jsonl` (`layers`, plain dicts of `bpcli.monitor.LayerStats`), so the same
drawing serves a live run, a finished one and `bpcli plot`. Lines have fixed widths, so they can be
printed one at a time and stay aligned, and never wrap at 60 columns.
"""

from __future__ import annotations

from typing import Callable

from rich.text import Text

from bpcli.monitor import slowdown

WIDE = 72  # below this many columns the table drops dC/db and takes one-space gaps

Row = dict


def _e(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _units_column(rows: list[Row]) -> tuple[str, str]:
    """The last column: saturated share for sigmoid/tanh, dead share for ReLU."""
    if any(r.get("dead") is not None for r in rows):
        return "dead", "dead"
    return "saturated", "sat."


COLUMNS: tuple[tuple[str, str, int, Callable[[Row], str]], ...] = (
    ("layer", "l", 5, lambda r: str(r["l"])),
    ("n_l", "n_l", 6, lambda r: f"{r['n']:,}"),
    ("dC/dw rms", "dC/dw", 9, lambda r: _e(r["grad_rms_w"])),
    ("dC/db rms", "", 9, lambda r: _e(r["grad_rms_b"])),
    ("||w||", "||w||", 8, lambda r: f"{r['weight_norm']:.1f}"),
    ("|Δw|/|w|", "Δw/w", 8, lambda r: _e(r["update_ratio"])),
)


def table_lines(rows: list[Row], width: int, epoch: int | None = None) -> list[Text]:
    """Header, one line per layer, and the slowdown call-out when there are two hidden layers."""
    wide = width >= WIDE
    gap = "  " if wide else " "
    unit_wide, unit_narrow = _units_column(rows)
    columns = [c for c in COLUMNS if wide or c[1]]
    head = [(c[0] if wide else c[1]).rjust(c[2]) for c in columns] + [(unit_wide if wide else unit_narrow).rjust(9)]
    title = f"  (epoch {epoch})" if epoch is not None and wide else ""
    lines = [Text(gap.join(head) + title, style="bold")]
    key = "dead" if unit_narrow == "dead" else "saturated"
    for r in rows:
        cells = [c[3](r).rjust(c[2]) for c in columns] + [_share(r.get(key)).rjust(9)]
        lines.append(Text(gap.join(cells)))
    called = callout(rows, width)
    if called is not None:
        lines.append(called)
    return lines


def callout(rows: list[Row], width: int) -> Text | None:
    """`layer 2 learns 0.33x as fast as layer 5 (dC/db RMS 1.2e-02 vs 3.7e-02)`, shortened to fit."""
    found = slowdown(rows)
    if found is None:
        return None
    first, last, ratio = found
    g = {r["l"]: r["grad_rms_b"] for r in rows}
    text = (f"layer {first} learns {ratio:.2g}x as fast as layer {last} "
            f"(dC/db RMS {g[first]:.1e} vs {g[last]:.1e})")
    if len(text) > width:
        text = f"layer {first} learns {ratio:.2g}x as fast as layer {last}"
    return Text(text, style="yellow" if ratio < 0.2 else "")


def plain_line(rows: list[Row]) -> str:
    """One self-describing log line per epoch: each layer's speed of learning (RMS of dC/db = delta)
    and the slowdown."""
    parts = ", ".join(f"{r['l']} {r['grad_rms_b']:.1e}" for r in rows)
    found = slowdown(rows)
    ratio = f"; layer {found[0]} learns {found[2]:.2g}x as fast as layer {found[1]}" if found else ""
    return f"  dC/db rms by layer: {parts}{ratio}"
