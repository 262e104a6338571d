"""`bpcli plot` in the terminal: line charts drawn with Braille dots (2 x 4 dots per character cell) and
Rich colours, so they need no graphics protocol and no plotting library.

Why not plotext: the charts must work without the `plot` extra, so a terminal plotting library would
have to become a dependency of every install; plotext also writes its own ANSI strings and measures the
terminal itself, where these lines are Rich `Text` that Rich fits, colours (or leaves plain when output
is piped) and downgrades to 256 or 8 colours like every other bpcli view.

Every series comes from `bpcli.plot`; here they are only placed on a grid of cells. Every line fits in
`width` columns, so nothing is wrapped or cut to '…' by Rich.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.style import Style
from rich.text import Text

from bpcli.plot import GRADS, Plot, Series
from bpcli.render import layers as layer_view
from bpcli.render.pictures import has_colour

SIDE_BY_SIDE = 100  # from this many columns two charts share a row
HEIGHT = 10  # rows of a chart's drawing area (40 dots)
GAP = 2

# Braille: bit of the dot at (column 0..1, row 0..3) of a cell; U+2800 + the bits is the character.
_DOT = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


class _Canvas:
    """Dots on a grid of `cols` x `rows` cells; a cell takes the colour of the last series drawn in it."""

    def __init__(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        self.bits = [[0] * cols for _ in range(rows)]
        self.colour: list[list[str | None]] = [[None] * cols for _ in range(rows)]
        self.marks: dict[tuple[int, int], str] = {}  # (row, col) -> a character drawn instead of the dots

    def mark(self, x: int, y: int, char: str) -> None:
        """A character in the cell of dot (x, y): where colours are not shown, it tells the lines apart."""
        if 0 <= x < 2 * self.cols and 0 <= y < 4 * self.rows:
            self.marks[(y // 4, x // 2)] = char

    def dot(self, x: int, y: int, colour: str) -> None:
        """x in 0..2*cols-1 from the left, y in 0..4*rows-1 from the top."""
        if 0 <= x < 2 * self.cols and 0 <= y < 4 * self.rows:
            row, col = y // 4, x // 2
            self.bits[row][col] |= _DOT[x % 2][y % 4]
            self.colour[row][col] = colour

    def line(self, x0: int, y0: int, x1: int, y1: int, colour: str, dotted: bool) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(steps + 1):
            if dotted and i % 3 == 2:  # a gap every third dot: the training curve reads as dotted
                continue
            self.dot(round(x0 + (x1 - x0) * i / steps), round(y0 + (y1 - y0) * i / steps), colour)

    def row_text(self, row: int) -> Text:
        text = Text()
        for col, (bits, colour) in enumerate(zip(self.bits[row], self.colour[row])):
            char = self.marks.get((row, col)) or (chr(0x2800 + bits) if bits else " ")
            text.append(char, Style(color=colour) if colour else None)
        return text


def _ticks(low: float, high: float, log: bool, fmt: Callable[[float], str], rows: int) -> dict[int, str]:
    """Labels on the y axis: each power of ten on a log scale (top and bottom too when fewer than two
    fall inside), else the top, middle and bottom rows. `low`, `high` are in axis units (log10)."""
    def row_of(v: float) -> int:
        return round((high - v) / (high - low) * (rows - 1))

    def value(row: int) -> float:
        v = high - (high - low) * row / max(1, rows - 1)
        return 10 ** v if log else v

    if log:
        decades = {row_of(k): fmt(10.0 ** k) for k in range(math.ceil(low - 1e-9), math.floor(high + 1e-9) + 1)}
        if len(decades) >= 2:
            return decades
    rows_shown = (0, rows // 2, rows - 1)
    return {row: fmt(value(row)) for row in rows_shown}


MARKS = "abcdefghijklmnopqrstuvwxyz123456789"  # letters: digits would read as layer numbers


def _marks(series: Sequence[Series]) -> dict[str, str]:
    """Each legend group's mark: where there are no colours, it ends the group's lines and heads its
    legend entry (the lines were otherwise alike)."""
    groups = dict.fromkeys(s.group or s.label for s in series)
    return {g: MARKS[i % len(MARKS)] for i, g in enumerate(groups)}


def chart(title: str, series: Sequence[Series], width: int, fmt: Callable[[float], str], log: bool = False,
          y_range: tuple[float, float] | None = None, height: int = HEIGHT, colour: bool = True) -> list[Text]:
    """A titled line chart `width` columns wide: y axis labels, the drawing, the epoch axis, a legend.
    `y_range` (in data units) lets several charts share one scale. Without `colour`, each line ends in
    its legend entry's mark."""
    values = [v for s in series for v in s.y]
    epochs = [x for s in series for x in s.x]
    lines = [Text(title[:width], style="bold")]
    if not values:
        return lines + [Text("(nothing to draw)"[:width], style="dim")]
    tf = (lambda v: math.log10(v)) if log else (lambda v: v)
    low, high = (tf(y_range[0]), tf(y_range[1])) if y_range else (min(map(tf, values)), max(map(tf, values)))
    if high - low < 1e-12:  # one value: give it room above and below
        pad = 0.5 if log else max(abs(high) * 0.05, 1e-3)
        low, high = low - pad, high + pad
    x_low, x_high = min(epochs), max(epochs)
    ticks = _ticks(low, high, log, fmt, height)
    margin = max(len(t) for t in ticks.values()) + 1
    cols = max(4, width - margin - 1)
    canvas = _Canvas(cols, height)

    def place(x: float, y: float) -> tuple[int, int]:
        px = 0 if x_high == x_low else round((x - x_low) / (x_high - x_low) * (2 * cols - 1))
        py = round((high - tf(y)) / (high - low) * (4 * height - 1))
        return px, py

    for s in sorted(series, key=lambda s: not s.dotted):  # dotted first: the solid lines stay on top
        points = [place(x, y) for x, y in zip(s.x, s.y)]
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            canvas.line(x0, y0, x1, y1, s.colour, s.dotted)
        for x, y in points[:1] if len(points) == 1 else ():
            canvas.dot(x, y, s.colour)
        if not colour and points:
            canvas.mark(*points[-1], _marks(series)[s.group or s.label])
    for row in range(height):
        label = ticks.get(row, "").rjust(margin - 1)
        line = Text()
        line.append(f"{label} {'┤' if row in ticks else '│'}", style="dim")
        lines.append(line + canvas.row_text(row))
    lines.append(Text(" " * margin + "└" + "─" * cols, style="dim"))
    first, last = str(x_low), str(x_high) if x_high != x_low else ""
    middle = "epoch"
    room = cols - len(first) - len(last)
    axis = first + middle.center(room) + last if room >= len(middle) + 2 else first.ljust(cols - len(last)) + last
    lines.append(Text(" " * (margin + 1) + axis, style="dim"))
    return lines + legend(series, width, colour)


def legend(series: Sequence[Series], width: int, colour: bool = True) -> list[Text]:
    """`━ name` per legend group in its colour (without colours, the group's mark), wrapped at whole
    entries to fit `width`."""
    entries: dict[str, str] = {s.group or s.label: s.colour for s in series}
    marks = _marks(series)
    lines: list[Text] = []
    line = Text()
    for name, hue in entries.items():
        item = Text()
        item.append("━ " if colour else f"{marks[name]} ", style=Style(color=hue))
        item.append(name[: width - 2])
        if len(line) and len(line) + 2 + len(item) > width:
            lines.append(line)
            line = Text()
        line += Text("  ") + item if len(line) else item
    if len(line):
        lines.append(line)
    return lines


def _side_by_side(left: list[Text], right: list[Text], half: int) -> list[Text]:
    rows = max(len(left), len(right))
    out = []
    for i in range(rows):
        a = left[i] if i < len(left) else Text()
        b = right[i] if i < len(right) else Text()
        out.append(a + Text(" " * (half - len(a) + GAP)) + b)
    return out


def _loss(v: float) -> str:
    return f"{v:.3g}"


def _percent(v: float) -> str:
    return f"{100 * v:.1f}%"


def _sci(v: float) -> str:
    return f"{v:.0e}" if abs(math.log10(v) - round(math.log10(v))) < 1e-9 else f"{v:.1e}"


def lines(plot: Plot, width: int, colour: bool = True) -> list[Text]:
    """The whole drawing: notes, loss and accuracy, each run's per-layer chart on one shared scale, and
    each run's slowdown line (how much more slowly the first hidden layer learns than the last)."""
    out = _note_lines(plot.notes, width)
    wide = width >= SIDE_BY_SIDE
    half = (width - GAP) // 2 if wide else width
    style = "  (dotted: train, solid: validation)"
    charts = [chart("loss" + style, plot.loss, half, _loss, colour=colour),
              chart("accuracy" + style, plot.accuracy, half, _percent, colour=colour)]
    grads = [v for _, series in plot.gradients for s in series for v in s.y]
    y_range = (min(grads), max(grads)) if grads else None
    what = GRADS[plot.grad][1]
    charts += [chart(f"{name}: {what}", series, half, _sci, log=True, y_range=y_range, colour=colour)
               for name, series in plot.gradients]
    for i in range(0, len(charts), 2 if wide else 1):
        if out:
            out.append(Text())
        out += _side_by_side(charts[i], charts[i + 1], half) if wide and i + 1 < len(charts) else charts[i]
    slowdowns = [line for r in plot.runs if r.rows and r.rows[-1].layers
                 for line in _slowdown(r.name, r.rows[-1].epoch, r.rows[-1].layers or [], width)]
    return out + ([Text()] + slowdowns if slowdowns else [])


def _slowdown(name: str, epoch: int, rows: list[dict], width: int) -> list[Text]:
    """`name (epoch 10): layer 2 learns 0.7x as fast as layer 5 (...)`, on two lines when narrow; nothing
    for a run with one hidden layer (no other layer to compare it with)."""
    if layer_view.slowdown(rows) is None:
        return []
    prefix = f"{name} (epoch {epoch}): "
    called = layer_view.callout(rows, width - len(prefix))
    if called is not None and len(prefix) + len(called) <= width:
        return [Text(prefix) + called]
    called = layer_view.callout(rows, width - 2)
    return [Text(prefix.rstrip()[:width])] + ([Text("  ") + called] if called is not None else [])


def _note_lines(notes: list[str], width: int) -> list[Text]:
    """`note: ...` per note, wrapped at spaces with continuation lines indented, so a long path is kept
    whole rather than cut."""
    out = []
    for note in notes:
        line, prefix = "", "note: "
        for word in note.split(" "):
            if line and len(prefix) + len(line) + 1 + len(word) > width:
                out.append(Text(prefix + line, style="yellow"))
                line, prefix = word, " " * len("note: ")
            else:
                line = f"{line} {word}" if line else word
        out.append(Text((prefix + line)[:width], style="yellow"))
    return out


def render(console: Console, plot: Plot) -> None:
    for line in lines(plot, console.width, has_colour(console)):
        console.print(line, soft_wrap=False, no_wrap=True, overflow="crop", highlight=False)
