"""What every part of an explanation shares: the section names, the index convention, the number
formats, and `Spec`, the network as the explanation sees it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence


from bpcli.activations import OUTPUT
from bpcli.costs import COSTS
from bpcli.errors import UsageError
from bpcli.network import Network

# -- sections ----------------------------------------------------------------------------------------

SECTIONS: tuple[str, ...] = ("notation", "layers", "cost", "equations", "graph", "trace")
TITLES: dict[str, str] = {
    "notation": "Notation and types",
    "layers": "Layers",
    "cost": "The cost",
    "equations": "Forward and backward, layer by layer",
    "graph": "The computational graph after surgery",
    "trace": "One partial derivative, traced",
}
INDEX_NOTE = (
    "Layers l are numbered 1..L as in the math (l = 1 is the input); neuron indices j, k are 0-based, "
    "as in the arrays: w^l_jk is w[l][j, k]."
)

# The graph draws a layer's neurons one by one up to this many, and each single weight w^l_jk as its
# own node while a weight matrix has at most DRAW_WEIGHTS entries; larger ones collapse to one node.
DRAW_NEURONS = 16
DRAW_WEIGHTS = 36
# Listings of the graph show a layer's neurons in full up to this many; longer runs show the first few,
# how many are left out, and the last, since every neuron of a layer is wired the same way.
LIST_NEURONS = 6

# Central-difference step for the trace. In float64 the rounding error of (C(+h) - C(-h)) / 2h is about
# 1e-16 |C| / h and the truncation error about h^2 |C'''| / 6; h = 1e-5 keeps both near 1e-10 (measured:
# a median relative error of 1e-9 against backprop, ten times better than with h = 1e-6).
H = 1e-5
# The trace calls the two values equal when |backprop - numerical| <= RTOL |backprop| + ATOL.
RTOL, ATOL = 1e-6, 1e-9
TOP_TERMS = 5


def parse_sections(names: Sequence[str] | None) -> tuple[str, ...]:
    """The requested section names in canonical order (all but `trace` when none are given)."""
    if not names:
        return tuple(s for s in SECTIONS if s != "trace")
    for name in names:
        if name not in SECTIONS:
            raise UsageError(f"--section {name!r}: unknown section; valid names: {', '.join(SECTIONS)}")
    return tuple(s for s in SECTIONS if s in names)


# -- small formatting helpers, shared by every output format -----------------------------------------


def count(n: int) -> str:
    """12704 -> '12,704'."""
    return f"{n:,}"


def space(*dims: int) -> str:
    """The real space of a vector or matrix: space(16) = 'R^16', space(16, 784) = 'R^(16 x 784)'."""
    if len(dims) == 1:
        return f"R^{count(dims[0])}"
    return "R^(" + " x ".join(count(d) for d in dims) + ")"


def shape(dims: Sequence[int]) -> str:
    """A NumPy shape as Python prints it: (32, 16), (16,)."""
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def num(v: float) -> str:
    """A value in a trace: 6 significant digits."""
    return f"{v + 0.0:.6g}"


def deriv(v: float) -> str:
    """A derivative compared across methods: 10 significant digits, fixed exponent form."""
    return f"{v + 0.0:+.9e}"  # + 0.0 turns -0.0 into 0.0


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


# -- the network as the explanation sees it ----------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """The architecture and the setting it is explained in: everything but the parameter values."""

    name: str
    sizes: tuple[int, ...]
    hidden: str
    output: str
    cost: str
    batch_size: int
    dtype: str

    @classmethod
    def of(cls, net: Network, name: str, batch_size: int) -> Spec:
        return cls(name, net.sizes, net.hidden.name, net.output.name, net.cost.name, batch_size, net.dtype.name)

    @property
    def L(self) -> int:
        return len(self.sizes)

    def n(self, l: int) -> int:
        """n_l, the number of neurons in layer l (1-based, as in the math)."""
        return self.sizes[l - 1]

    @property
    def layers(self) -> range:
        """l = 2..L: the layers with parameters."""
        return range(2, self.L + 1)

    def sigma(self, l: int) -> str:
        return self.output if l == self.L else self.hidden

    @property
    def n_w(self) -> int:
        return sum(self.n(l) * self.n(l - 1) for l in self.layers)

    @property
    def n_b(self) -> int:
        return sum(self.n(l) for l in self.layers)

    @property
    def fused(self) -> bool:
        """True when delta^L reduces to a^L - y: costs.py decides, as the backward pass does."""
        return COSTS[self.cost].fused_with(OUTPUT[self.output])

    def each(self, l_values: Sequence[int], fmt: Callable[[int], str]) -> str:
        """fmt(l) for each of the given layers, joined with ', '."""
        return ", ".join(fmt(l) for l in l_values)
