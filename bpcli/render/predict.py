"""`bpcli predict` in the terminal: one line per image with its top classes, or with --show each
prepared image (what the network was given) drawn in half blocks, its top classes under it. Nothing is
computed here; the numbers come from `bpcli.predict`."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from bpcli.pictures import probability_text
from bpcli.predict import Model, Prediction
from bpcli.render.pictures import _wrap, gray, has_colour, image_lines, tiles


def score_text(score: float, probability: bool) -> str:
    """A probability as `bpcli.pictures.probability_text` writes it; a^L itself when it is no probability."""
    return probability_text(score) if probability else f"{score:.3g}"


def line(p: Prediction, probability: bool) -> Text:
    """`digit.png: 7 98.12%, then 9 1.20%, 1 0.31%` (an error is not drawn here: it goes to stderr)."""
    text = Text(f"{p.source}: ")
    k, name, score = p.top[0]
    text.append(f"{name} {score_text(score, probability)}", style="bold")
    rest = ", ".join(f"{n} {score_text(s, probability)}" for _, n, s in p.top[1:])
    if rest:
        text.append(f", then {rest}", style="dim")
    if p.prepared is not None and p.prepared.inverted:
        text.append("  (inverted)", style="dim")
    return text


def shown_lines(model: Model, predictions: list[Prediction], width: int, colour: bool) -> list[Text]:
    """The prepared images side by side, each captioned with its file name and top classes."""
    tile = min(model.shape[1], width)
    blocks = []
    for p in predictions:
        assert p.prepared is not None
        caption = [Text(p.source[-tile:], style="dim")]
        caption += [Text(f"{name} {score_text(s, model.probability)}"[:tile], style="bold" if i == 0 else "dim")
                    for i, (_, name, s) in enumerate(p.top)]
        blocks.append(image_lines(p.prepared.image, gray if colour else None, lambda v: v, tile) + caption)
    return tiles(blocks, tile, width)


def lines(model: Model, predictions: list[Prediction], width: int, colour: bool, show: bool) -> list[Text]:
    ok = [p for p in predictions if p.error is None]
    out: list[Text] = []
    for note in model.notes:
        out += _wrap(f"note: {note}", width, "yellow")
    if show and ok:
        out += _wrap(f"{model.source}, epoch {model.epoch}: each image as the network sees it "
                     f"({model.shape[0]}×{model.shape[1]}), then its top classes", width)
        out.append(Text())
        out += shown_lines(model, ok, width, colour)
        while out and not out[-1].plain:
            out.pop()
        return out
    return out + [line(p, model.probability) for p in ok]


def render(console: Console, model: Model, predictions: list[Prediction], show: bool) -> None:
    colour = has_colour(console)
    for text in lines(model, predictions, console.width, colour, show):
        if show:  # drawn to fit the width: never wrapped
            console.print(text, no_wrap=True, overflow="crop", highlight=False)
        else:  # a long file name stays whole, for copying
            console.print(text, soft_wrap=True, highlight=False)
