"""How wide a table or text draws when nothing is wrapped: what each view measures before it picks a
layout (a wide table where it fits, stacked rows or blocks where it does not)."""

from __future__ import annotations

import io

from rich.console import Console, RenderableType
from rich.measure import Measurement

# Wide enough that measuring never wraps: the natural width, not a wrapped one.
_MEASURE = Console(width=10_000, file=io.StringIO(), color_system=None)


def natural_width(renderable: RenderableType) -> int:
    """The columns `renderable` takes with no cell wrapped, shrunk or cut."""
    return Measurement.get(_MEASURE, _MEASURE.options, renderable).maximum


def fits(renderable: RenderableType, width: int) -> bool:
    """Whether `renderable` draws within `width` columns with no cell wrapped, shrunk or cut."""
    return natural_width(renderable) <= width
