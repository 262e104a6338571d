"""`bpcli show` in the terminal: images drawn with half blocks, two pixels per character cell (`▀` in
the upper pixel's colour on the lower pixel's as background), so they need no graphics protocol. Where
the console has no colours (output piped to a file, NO_COLOR), each cell is a shade character instead.

The images and numbers come from `bpcli.pictures`; here they are only laid out in tiles that fit the
width, with captions cut to the tile (never to '…').
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from rich.color import Color
from rich.console import Console
from rich.style import Style
from rich.text import Text

from bpcli.pictures import Mistakes, Pictures, WeightImages, caption

GAP = 2
SHADES = " ░▒▓█"  # darkest to brightest, for consoles without colour
Rgb = tuple[int, int, int]


def gray(v: float) -> Rgb:
    g = round(255 * min(1.0, max(0.0, v)))
    return g, g, g


def diverging(v: float) -> Rgb:
    """A weight in [-1, 1] on the terminal's dark background: red for +, blue for -, black for 0, in
    proportion to |w| as in the file's picture."""
    s = min(1.0, abs(v))
    return (round(255 * s), round(70 * s), round(50 * s)) if v > 0 else (round(60 * s), round(120 * s), round(255 * s))


def image_lines(image: np.ndarray, colour: Callable[[float], Rgb] | None, brightness: Callable[[float], float],
                width: int) -> list[Text]:
    """An (h, w) image as ceil(h/2) lines of at most `width` cells (every k-th pixel when it is wider).
    `colour` None: shade characters by `brightness` (0..1) of the two pixels."""
    step = max(1, math.ceil(image.shape[1] / max(1, width)))
    image = image[::step, ::step]
    h = image.shape[0]
    out = []
    for r in range(0, h, 2):
        line = Text()
        for c in range(image.shape[1]):
            top = float(image[r, c])
            bottom = float(image[r + 1, c]) if r + 1 < h else None
            if colour is None:
                level = (brightness(top) + (brightness(bottom) if bottom is not None else brightness(top))) / 2
                line.append(SHADES[min(len(SHADES) - 1, int(level * len(SHADES)))])
            else:
                bg = Color.from_rgb(*colour(bottom)) if bottom is not None else None
                line.append("▀", Style(color=Color.from_rgb(*colour(top)), bgcolor=bg))
        out.append(line)
    return out


def tiles(blocks: list[list[Text]], tile_width: int, width: int) -> list[Text]:
    """Blocks of lines (each at most `tile_width` wide) side by side, as many to a row as fit."""
    per_row = max(1, (width + GAP) // (tile_width + GAP))
    out: list[Text] = []
    for start in range(0, len(blocks), per_row):
        row = blocks[start: start + per_row]
        for i in range(max(len(b) for b in row)):
            line = Text()
            for k, block in enumerate(row):
                cell = block[i] if i < len(block) else Text()
                line += cell
                if k + 1 < len(row):
                    line += Text(" " * (tile_width - len(cell) + GAP))
            out.append(line)
        out.append(Text())
    return out


def _wrap(text: str, width: int, style: str = "") -> list[Text]:
    """Words on lines of at most `width` columns (a word longer than a line is cut)."""
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return [Text(line[:width], style=style) for line in lines]


def weight_lines(w: WeightImages, width: int, colour: bool) -> list[Text]:
    k = len(w.images)
    tile = min(w.images.shape[2], width)
    head = (f"layer 2's weights w^2_j as images, neurons j = 0..{k - 1} of {w.neurons}, each scaled to its "
            f"largest |w| ({'red +, blue -, black 0' if colour else 'light +, dark -, ▒ 0'}):")
    blocks = [image_lines(img, diverging if colour else None, lambda v: (v + 1) / 2, tile)
              + [Text(f"{j}: max|w| {scale:.3g}"[:tile], style="dim")]
              for j, (img, scale) in enumerate(zip(w.images, w.scales))]
    return _wrap(head, width, "bold") + tiles(blocks, tile, width)


def mistake_lines(m: Mistakes, tile_source: int, width: int, colour: bool) -> list[Text]:
    head = (f"test images it gets wrong: {m.wrong:,} of {m.total:,} (accuracy {100 * m.accuracy:.2f}%)"
            + (f"; the {len(m.shown)} it was surest of:" if m.shown else ""))
    tile = min(tile_source, width)
    blocks = [image_lines(x.image, gray if colour else None, lambda v: v, tile)
              + [Text(line[:tile], style="dim") for line in caption(x, m.probability)]
              for x in m.shown]
    return _wrap(head, width, "bold") + tiles(blocks, tile, width)


def lines(p: Pictures, width: int, colour: bool) -> list[Text]:
    sizes = ", ".join(str(n) for n in p.sizes)
    out = _wrap(f"{p.source}: epoch {p.epoch}, [{sizes}] {p.activation}/{p.output}", width)
    for note in p.notes:
        out += _wrap(f"note: {note}", width, "yellow")
    out.append(Text())
    if len(p.weights.images):
        out += weight_lines(p.weights, width, colour)
    if p.mistakes is not None:
        out += mistake_lines(p.mistakes, p.shape[1], width, colour)
    while out and not out[-1].plain:
        out.pop()
    return out


def has_colour(console: Console) -> bool:
    """Whether the console shows colours: not when piped (no colour system), nor with NO_COLOR set, where
    Rich keeps its colour system but drops every colour, which left the pictures as solid blocks."""
    return console.color_system is not None and not console.no_color


def render(console: Console, p: Pictures) -> None:
    colour = has_colour(console)
    for line in lines(p, console.width, colour):
        console.print(line, soft_wrap=False, no_wrap=True, overflow="crop", highlight=False)
