"""`bpcli explain`: the notation, types and equations of backpropagation, instantiated for one network.

Pure compute: `describe` returns an `Explanation`, a tree of plain dataclasses holding strings and
numbers, one builder per section. Nothing here prints; `bpcli.render.explain` draws the model with
Rich, `bpcli.render.explain_formats` writes it as Markdown, Mermaid or DOT, and `to_json` gives it as
data.

Index convention, stated once and repeated in every output: layers l are numbered 1..L as in the math
(l = 1 is the input layer), while the neuron indices j and k are 0-based, as in the arrays, so that
w^l_jk is exactly `w[l][j, k]`.

Everything per example is a column vector in the math and a row in the code: the code keeps a
mini-batch of m examples as the rows of a matrix, so z^l in R^(n_l) becomes z[l] of shape (m, n_l).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from bpcli import checkpoint as checkpoint_module
from bpcli import config as config_module
from bpcli import data as data_module
from bpcli import resources
from bpcli.activations import OUTPUT, Array
from bpcli.config import Config
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


# -- 1. notation and types ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Symbol:
    """One row of the notation table: a symbol's type in general and for this network."""

    symbol: str
    general: str  # the type for any network
    concrete: str  # the type (or value) for this network
    meaning: str
    code: str  # the array that holds it in bpcli, with the mini-batch dimension where one enters


def build_notation(s: Spec) -> list[Symbol]:
    L, m, ls = s.L, s.batch_size, s.layers
    all_l = range(1, L + 1)
    mnist = " (a 28 x 28 grey image, pixels scaled to [0, 1])" if s.n(1) == 784 else ""
    batch = f"for a batch of m = {m}"

    def rows(name: str, l_values: Sequence[int]) -> str:
        return ", ".join(f"{name}[{l}] {shape((m, s.n(l)))}" for l in l_values)

    sigmas = []
    if L > 2:
        hidden_ls = f"l = 2..{L - 1}" if L > 3 else "l = 2"
        sigmas.append(f"{s.hidden} on {hidden_ls}")
    out = f"{s.output} : {space(s.n(L))} -> {space(s.n(L))} on l = {L}"
    sigmas.append(out + (" (couples all of z^L, not elementwise)" if s.output == "softmax" else ""))

    return [
        Symbol("x", "R^(n_1)", space(s.n(1)),
               f"the input: one example's {s.n(1)} values{mnist}; held fixed while C is differentiated",
               f"a[1], {shape((m, s.n(1)))} {batch}: one example per row"),
        Symbol("y", "R^(n_L)", space(s.n(L)),
               "the desired output for x, e.g. one-hot: y_j = 1 for the true class j",
               f"y, {shape((m, s.n(L)))} {batch}"),
        Symbol("L", "positive integer", f"L = {L}", "the number of layers, input and output included",
               "net.L; no batch dimension"),
        Symbol("l", "integer, 1 <= l <= L", f"l in 1..{L}",
               "one layer; l = 1 is the input, and w^l, b^l, z^l, delta^l exist for l = 2..L",
               "the key of the dicts w, b, z, a, delta"),
        Symbol("n_l", "positive integer", s.each(all_l, lambda l: f"n_{l} = {count(s.n(l))}"),
               "the number of neurons in layer l", f"sizes[l - 1]; sizes = {list(s.sizes)}"),
        Symbol("w", "R^(n_w)", space(s.n_w),
               "every weight of the network, unrolled into one vector (the order is in section 3)",
               "kept as the blocks " + s.each(ls, lambda l: f"w[{l}]")),
        Symbol("b", "R^(n_b)", space(s.n_b), "every bias, unrolled into one vector",
               "kept as the blocks " + s.each(ls, lambda l: f"b[{l}]")),
        Symbol("n_w", "positive integer: sum over l = 2..L of n_l n_(l-1)",
               "n_w = " + " + ".join(f"{s.n(l)}*{s.n(l - 1)}" for l in ls) + f" = {count(s.n_w)}",
               "the number of weights", "net.n_w"),
        Symbol("n_b", "positive integer: sum over l = 2..L of n_l",
               "n_b = " + " + ".join(str(s.n(l)) for l in ls) + f" = {count(s.n_b)}",
               "the number of biases", "net.n_b"),
        Symbol("w^l", "R^(n_l x n_(l-1)), l = 2..L", s.each(ls, lambda l: f"w^{l} in {space(s.n(l), s.n(l - 1))}"),
               "the weights into layer l: one block of w, shaped as a matrix so that w^l a^(l-1) is a product",
               "w[l], shape (n_l, n_(l-1)); no batch dimension: one copy serves every example"),
        Symbol("w^l_jk", "real number",
               s.each(ls, lambda l: f"w^{l}_jk: j in 0..{s.n(l) - 1}, k in 0..{s.n(l - 1) - 1}"),
               "the weight from neuron k of layer l-1 to neuron j of layer l; j comes first because it "
               "is the row of w^l", "w[l][j, k]"),
        Symbol("b^l", "R^(n_l), l = 2..L", s.each(ls, lambda l: f"b^{l} in {space(s.n(l))}"),
               "the biases of layer l: b^l_j is added to neuron j's weighted input",
               "b[l], shape (n_l,); added to every row of a batch"),
        Symbol("z^l", "R^(n_l), l = 2..L", s.each(ls, lambda l: f"z^{l} in {space(s.n(l))}"),
               "the weighted input of layer l: z^l = w^l a^(l-1) + b^l", f"z[l], (m, n_l): {rows('z', ls)}"),
        Symbol("a^l", "R^(n_l), l = 1..L",
               f"a^1 = x in {space(s.n(1))}, " + s.each(ls, lambda l: f"a^{l} in {space(s.n(l))}"),
               "the activation of layer l: a^1 = x, a^l = sigma(z^l); a^L is the network's output",
               f"a[l], (m, n_l): {rows('a', all_l)}"),
        Symbol("sigma", "R -> R, applied elementwise", "; ".join(sigmas), "the activation function of a layer",
               "applied to every row of z[l]"),
        Symbol("C", "R^(n_w + n_b) -> R", f"{space(s.n_w + s.n_b)} -> R",
               "the cost of one fixed example (x, y), as a function of every weight and bias",
               "the mean over a batch, C = (1/m) sum_x C_x; with m = 1 it is C_x"),
        Symbol("delta^l", "R^(n_l), l = 2..L", s.each(ls, lambda l: f"delta^{l} in {space(s.n(l))}"),
               "the error of layer l: delta^l_j = dC/dz^l_j, how C changes with neuron j's weighted input",
               f"delta[l], (m, n_l): {rows('delta', ls)}"),
    ]


# -- 2. layers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerInfo:
    """Shapes and counts of one layer. Per-example shapes; `batch` is the code's (m, n_l)."""

    l: int
    n: int
    activation: str | None  # None for the input layer
    w: tuple[int, int] | None  # (n_l, n_(l-1)); None for l = 1
    b: tuple[int] | None
    z: tuple[int] | None
    a: tuple[int]
    delta: tuple[int] | None
    batch: tuple[int, int]  # shape of z[l], a[l], delta[l] for the configured batch size
    weights: int
    biases: int

    @property
    def params(self) -> int:
        return self.weights + self.biases


@dataclass(frozen=True)
class LayersSection:
    layers: list[LayerInfo]
    n_w: int
    n_b: int
    dtype: str
    itemsize: int

    @property
    def n_params(self) -> int:
        return self.n_w + self.n_b

    @property
    def bytes(self) -> int:
        return self.n_params * self.itemsize


def build_layers(s: Spec) -> LayersSection:
    rows = []
    for l in range(1, s.L + 1):
        n, m = s.n(l), s.batch_size
        if l == 1:
            rows.append(LayerInfo(1, n, None, None, None, None, (n,), None, (m, n), 0, 0))
        else:
            n_prev = s.n(l - 1)
            rows.append(LayerInfo(l, n, s.sigma(l), (n, n_prev), (n,), (n,), (n,), (n,), (m, n), n * n_prev, n))
    return LayersSection(rows, s.n_w, s.n_b, s.dtype, np.dtype(s.dtype).itemsize)


# -- 3. the cost -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """Where one parameter block sits in the unrolled vectors w (or b) and theta = (w, b)."""

    symbol: str  # "w^2"
    kind: str  # "w" or "b"
    l: int
    shape: tuple[int, ...]
    offset: int  # first index in w (or in b)
    end: int  # one past the last
    theta_offset: int  # the same block's range in theta = (w, b), w first
    theta_end: int
    index: str  # how one entry maps to its place, e.g. "w^2_jk = w[0 + 784 j + k]"

    @property
    def size(self) -> int:
        return self.end - self.offset


@dataclass(frozen=True)
class CostSection:
    name: str
    output: str
    kind: str  # e.g. "categorical cross-entropy"
    per_example: str  # C_x
    batch_mean: str
    general_type: str
    concrete_type: str
    fixed: list[str]  # the remarks on what is held fixed and why the domain is one vector
    output_delta: str  # delta^L in terms of the cost
    output_delta_why: str
    blocks: list[Block]
    n_w: int
    n_b: int


COST_FORMULAS: dict[tuple[str, str], tuple[str, str]] = {
    ("cross_entropy", "softmax"): ("categorical cross-entropy", "C_x = -sum_j y_j log a^L_j"),
    ("cross_entropy", "sigmoid"): ("binary cross-entropy, one per output neuron",
                                   "C_x = -sum_j [y_j log a^L_j + (1 - y_j) log(1 - a^L_j)]"),
}
QUADRATIC = ("half the squared error", "C_x = 1/2 sum_j (y_j - a^L_j)^2 = 1/2 ||y - a^L||^2")


def output_delta_rule(s: Spec) -> tuple[str, str]:
    """delta^L for this cost and output activation, and why it takes that form."""
    if (s.cost, s.output) == ("cross_entropy", "softmax"):
        return "delta^L = a^L - y", ("softmax and categorical cross-entropy are matched: the softmax "
                                     "Jacobian cancels against dC_x/da^L = -y / a^L")
    if (s.cost, s.output) == ("cross_entropy", "sigmoid"):
        return "delta^L = a^L - y", ("sigmoid'(z) = a (1 - a) cancels against the denominator of "
                                     "dC_x/da^L_j = (a^L_j - y_j) / (a^L_j (1 - a^L_j))")
    if s.output == "identity":
        return "delta^L = a^L - y", "the identity output has derivative 1, so delta^L = dC_x/da^L = a^L - y"
    if s.output == "softmax":
        return ("delta^L = J^T (a^L - y), J = diag(a^L) - a^L (a^L)^T",
                "softmax is not elementwise: its Jacobian J pulls dC_x/da^L = a^L - y back to z^L")
    return (f"delta^L = (a^L - y) (.) {s.output}'(z^L)",
            "the general rule grad_a C_x (.) sigma'(z^L), with grad_a C_x = a^L - y for the quadratic cost")


def build_blocks(s: Spec) -> list[Block]:
    """w is w^2, w^3, ... one after the other, each row-major (j, then k); b likewise; theta = (w, b)."""
    blocks: list[Block] = []
    offset = 0
    for l in s.layers:
        n, n_prev = s.n(l), s.n(l - 1)
        end = offset + n * n_prev
        blocks.append(Block(f"w^{l}", "w", l, (n, n_prev), offset, end, offset, end,
                            f"w^{l}_jk = w[{offset} + {n_prev} j + k]"))
        offset = end
    offset = 0
    for l in s.layers:
        end = offset + s.n(l)
        blocks.append(Block(f"b^{l}", "b", l, (s.n(l),), offset, end, s.n_w + offset, s.n_w + end,
                            f"b^{l}_j = b[{offset} + j]"))
        offset = end
    return blocks


def build_cost(s: Spec) -> CostSection:
    kind, formula = COST_FORMULAS.get((s.cost, s.output), QUADRATIC)
    delta, why = output_delta_rule(s)
    total = space(s.n_w + s.n_b)
    fixed = [
        "x and y are fixed: for backpropagation C is a function of the parameters alone, "
        f"theta = (w, b) in {total}.",
        "The same formula read as a function of x, with w and b fixed, is how the network is used to "
        "predict; backprop never differentiates in x.",
        f"A list of matrices of different shapes ({', '.join(f'{s.n(l)} x {s.n(l - 1)}' for l in s.layers)}) "
        "has no single dimension until it is unrolled: then it is one vector, and the domain of C is "
        f"R^(n_w + n_b) = {total}.",
    ]
    return CostSection(
        name=s.cost, output=s.output, kind=kind, per_example=formula,
        batch_mean=f"C = (1/m) sum_x C_x over the m examples of a mini-batch (m = {s.batch_size} when "
                   "training); with one example C = C_x",
        general_type="C : R^(n_w + n_b) -> R",
        concrete_type=f"C : {total} -> R  (n_w = {count(s.n_w)}, n_b = {count(s.n_b)})",
        fixed=fixed, output_delta=delta, output_delta_why=why, blocks=build_blocks(s), n_w=s.n_w, n_b=s.n_b,
    )


# -- 4. forward and backward equations ----------------------------------------------------------------


@dataclass(frozen=True)
class Equation:
    """One step of the forward or backward pass for one layer."""

    l: int
    math: str  # per example, as in the notes
    shapes: str  # per-example shapes, checked
    code: str  # what network.py computes for a batch, with the result's shape
    uses: str  # which values the step needs, and where they come from


@dataclass(frozen=True)
class Induction:
    """The cost seen from layer l: C^l : R^(n_l) -> R with C = C^l(z^l), so delta^l = grad C^l(z^l)."""

    l: int
    type: str
    definition: str


@dataclass(frozen=True)
class EquationsSection:
    forward: list[Equation]
    backward: list[Equation]
    gradients: list[Equation]
    induction: list[Induction]
    order: list[str]
    why: list[str]


def build_equations(s: Spec) -> EquationsSection:
    L, m = s.L, s.batch_size
    forward = []
    for l in s.layers:
        n, n_prev = s.n(l), s.n(l - 1)
        forward.append(Equation(
            l,
            f"z^{l} = w^{l} a^{l - 1} + b^{l};  a^{l} = {s.sigma(l)}(z^{l})",
            f"({n} x {n_prev})({n_prev}) + ({n}) -> ({n})",
            f"z[{l}] = a[{l - 1}] @ w[{l}].T + b[{l}] -> {shape((m, n))}",
            f"a^{l - 1} (" + ("the input x" if l == 2 else "kept from the step before") + f"), w^{l}, b^{l}",
        ))

    delta_L, _ = output_delta_rule(s)
    n_L = s.n(L)
    if s.fused:
        shapes_L = f"({n_L}) - ({n_L}) -> ({n_L})"
        code_L = f"delta[{L}] = (a[{L}] - y) / m -> {shape((m, n_L))}"
        uses_L = f"a^{L} (forward pass) and y"
    else:
        shapes_L = (f"({n_L} x {n_L})^T ({n_L}) -> ({n_L})" if s.output == "softmax"
                    else f"({n_L}) (.) ({n_L}) -> ({n_L})")
        code_L = (f"delta[{L}] = {s.output}.chain(cost.derivative(a[{L}], y), z[{L}], a[{L}]) / m "
                  f"-> {shape((m, n_L))}")
        uses_L = f"a^{L}, z^{L} (forward pass) and y"
    backward = [Equation(L, delta_L.replace("^L", f"^{L}"), shapes_L, code_L, uses_L)]
    for l in range(L - 1, 1, -1):
        n, n_next = s.n(l), s.n(l + 1)
        backward.append(Equation(
            l,
            f"delta^{l} = ((w^{l + 1})^T delta^{l + 1}) (.) {s.sigma(l)}'(z^{l})",
            f"({n} x {n_next})({n_next}) (.) ({n}) -> ({n})",
            f"delta[{l}] = (delta[{l + 1}] @ w[{l + 1}]) * {s.sigma(l)}'(z[{l}]) -> {shape((m, n))}",
            f"delta^{l + 1} (the step before), w^{l + 1}, z^{l} (forward pass)",
        ))

    gradients = []
    for l in s.layers:
        n, n_prev = s.n(l), s.n(l - 1)
        gradients.append(Equation(
            l,
            f"dC/dw^{l} = delta^{l} (a^{l - 1})^T;  dC/db^{l} = delta^{l}",
            f"({n})({n_prev})^T -> ({n} x {n_prev});  ({n})",
            f"dw[{l}] = delta[{l}].T @ a[{l - 1}] -> {shape((n, n_prev))}; "
            f"db[{l}] = delta[{l}].sum(0) -> {shape((n,))}",
            f"delta^{l} (backward pass), a^{l - 1} (forward pass)",
        ))

    induction = [Induction(L, f"{space(n_L)} -> R", f"C^{L}(z) = C_x({s.output}(z))")]
    for l in range(L - 1, 1, -1):
        induction.append(Induction(l, f"{space(s.n(l))} -> R",
                                   f"C^{l}(z) = C^{l + 1}(w^{l + 1} {s.sigma(l)}(z) + b^{l + 1})"))

    order = [f"Forward, l = 2..{L}: compute z^l and a^l from a^(l-1), and keep every one (a^1 = x)."]
    order.append(f"l = {L}: delta^{L} from a^{L} and y, the start of the induction.")
    for l in range(L - 1, 1, -1):
        order.append(f"l = {l}: delta^{l} from delta^{l + 1}, w^{l + 1} and z^{l}: only a later delta "
                     "and stored values.")
    order.append("Each l: dC/dw^l = delta^l (a^(l-1))^T and dC/db^l = delta^l; every gradient entry is "
                 "one delta times one stored activation.")

    why = [
        "x and y stay fixed, so C depends only on theta = (w, b); every layer's z^l is a function of "
        "the parameters below it.",
        "Seen from layer l, everything above z^l is one fixed function C^l : R^(n_l) -> R with "
        "C = C^l(z^l), and delta^l is its gradient. C^l is a different composition for each l, so the "
        "chain rule is not applied once to one function.",
        "C^l = C^(l+1) o (z -> w^(l+1) sigma(z) + b^(l+1)); one chain rule on that single composition "
        "gives delta^l from delta^(l+1). Starting from delta^L and repeating for l = L-1..2 is an "
        "induction over layers.",
        "For one weight only one partial derivative is needed: w^l_jk reaches C only through z^l_j, so "
        "dC/dw^l_jk = delta^l_j a^(l-1)_k and dC/db^l_j = delta^l_j.",
    ]
    return EquationsSection(forward, backward, gradients, induction, order, why)


# -- 5. the computational graph after surgery --------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A node of the computational graph; `size` is how many scalars it stands for."""

    id: str
    label: str
    kind: str  # input | weight | bias | neuron | output | target | cost
    l: int  # its layer (0 for y and C)
    size: int
    computes: str = ""  # for nodes with inputs: what they compute from them


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str


@dataclass
class Graph:
    """The network drawn as a computational graph whose nodes include every weight and bias."""

    title: str
    nodes: list[Node]
    edges: list[Edge]
    detail: dict[int, str]  # per layer l = 1..L: how its activations and weights are drawn
    notes: list[str]

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def inputs(self, node_id: str) -> list[Node]:
        return [self.node(e.src) for e in self.edges if e.dst == node_id]


def build_graph(s: Spec) -> Graph:
    """Activations become nodes as usual; surgery adds the weights and biases as nodes that feed each
    neuron, which then multiplies, adds and applies sigma itself (instead of edges carrying products).

    A layer with at most DRAW_NEURONS neurons is drawn neuron by neuron, and then its weights either one
    node per w^l_jk (at most DRAW_WEIGHTS of them) or one node per row w^l_(j,:); a larger layer is one
    node a^l, fed by one node w^l and one node b^l.
    """
    L = s.L
    nodes: list[Node] = []
    edges: list[Edge] = []
    detail: dict[int, str] = {}
    drawn = {l: s.n(l) <= DRAW_NEURONS for l in range(1, L + 1)}

    def add(node: Node, *sources: str) -> None:
        nodes.append(node)
        edges.extend(Edge(src, node.id) for src in sources)

    # a^(l-1) as the node ids that feed layer l.
    outputs: list[str]
    if drawn[1]:
        outputs = [f"a1_{k}" for k in range(s.n(1))]
        for k in range(s.n(1)):
            add(Node(f"a1_{k}", f"x_{k}", "input", 1, 1))
        detail[1] = "a node per input x_k = a^1_k"
    else:
        outputs = ["a1"]
        add(Node("a1", f"a^1 = x ({count(s.n(1))})", "input", 1, s.n(1)))
        detail[1] = f"collapsed to one node for all {count(s.n(1))} inputs"

    for l in s.layers:
        n, n_prev, sigma = s.n(l), s.n(l - 1), s.sigma(l)
        softmax_out = l == L and s.output == "softmax"
        prev = f"a^{l - 1}"
        if not drawn[l]:
            add(Node(f"w{l}", f"w^{l} ({n} x {count(n_prev)})", "weight", l, n * n_prev))
            add(Node(f"b{l}", f"b^{l} ({n})", "bias", l, n))
            add(Node(f"a{l}", f"a^{l} ({n})", "output" if l == L else "neuron", l, n,
                     f"{sigma}(w^{l} {prev} + b^{l})"), f"w{l}", f"b{l}", *outputs)
            outputs = [f"a{l}"]
            detail[l] = f"collapsed to one node each for w^{l}, b^{l} and a^{l}"
            continue
        each = drawn[l - 1] and n * n_prev <= DRAW_WEIGHTS
        # With a softmax output, a^L_j depends on all of z^L: neuron j computes z^L_j only, and one
        # node applies softmax to the whole layer.
        name = "z" if softmax_out else "a"
        for j in range(n):
            if each:
                for k in range(n_prev):
                    add(Node(f"w{l}_{j}_{k}", f"w^{l}_({j},{k})", "weight", l, 1))
                weights = [f"w{l}_{j}_{k}" for k in range(n_prev)]
            else:
                add(Node(f"w{l}_{j}", f"w^{l}_({j},:) ({count(n_prev)})", "weight", l, n_prev))
                weights = [f"w{l}_{j}"]
            add(Node(f"b{l}_{j}", f"b^{l}_{j}", "bias", l, 1))
            z_j = f"sum_k w^{l}_({j},k) {prev}_k + b^{l}_{j}"
            kind = "output" if l == L and not softmax_out else "neuron"
            add(Node(f"{name}{l}_{j}", f"{name}^{l}_{j}", kind, l, 1, z_j if softmax_out else f"{sigma}({z_j})"),
                *weights, f"b{l}_{j}", *outputs)
        outputs = [f"{name}{l}_{j}" for j in range(n)]
        if softmax_out:
            add(Node(f"a{l}", f"a^{l} = softmax(z^{l})", "output", l, n, f"softmax(z^{l}), {n} values"), *outputs)
            outputs = [f"a{l}"]
        detail[l] = "a node per neuron, fed by " + (f"a node per weight w^{l}_jk" if each
                                                    else f"a node per weight row w^{l}_(j,:)")

    add(Node("y", f"y ({s.n(L)})", "target", 0, s.n(L)))
    formula = COST_FORMULAS.get((s.cost, s.output), QUADRATIC)[1].replace("^L", f"^{L}")
    add(Node("C", "C", "cost", 0, 1, formula), *outputs, "y")

    notes = [
        "Surgery: the usual drawing has activations as nodes and weights on the edges, but a computational "
        "graph gives derivatives only with respect to its nodes. So each weight and bias becomes a node "
        "feeding its neuron, which multiplies, adds and applies sigma itself.",
        "To differentiate in a single weight it is enough to add just that weight as a node.",
    ]
    if s.output == "softmax":
        notes.append(f"softmax couples the output layer: neuron j computes z^{L}_j, and one node forms "
                     f"a^{L} = softmax(z^{L}) from all of them.")
    title = f"{s.name} {list(s.sizes)}: weights and biases are nodes"
    return Graph(title, nodes, edges, detail, notes)


def graph_listing(graph: Graph, run: int = 3) -> list[tuple[Node, list[str]]]:
    """Every node with inputs and its input labels, runs of more than `run` like nodes shortened to
    'first … last (count)': the graph as a readable list, in the order it computes."""
    out = []
    for node in graph.nodes:
        inputs = graph.inputs(node.id)
        if not inputs:
            continue
        labels: list[str] = []
        i = 0
        while i < len(inputs):
            j = i
            while j + 1 < len(inputs) and (inputs[j + 1].kind, inputs[j + 1].l) == (inputs[i].kind, inputs[i].l):
                j += 1
            group = inputs[i : j + 1]
            if len(group) > run:
                labels.append(f"{group[0].label} … {group[-1].label} ({len(group)})")
            else:
                labels.extend(n.label for n in group)
            i = j + 1
        out.append((node, labels))
    return out


def graph_rows(graph: Graph, keep: int = LIST_NEURONS) -> list[tuple[Node, list[str]] | int]:
    """`graph_listing` with long runs of like nodes (one layer's neurons, all wired the same way)
    shortened to the first three, the count of those left out, and the last."""
    rows = graph_listing(graph)
    out: list[tuple[Node, list[str]] | int] = []
    i = 0
    while i < len(rows):
        j = i
        while j + 1 < len(rows) and (rows[j + 1][0].l, rows[j + 1][0].kind) == (rows[i][0].l, rows[i][0].kind):
            j += 1
        run = rows[i : j + 1]
        out += run if len(run) <= keep else [*run[:3], len(run) - 4, run[-1]]
        i = j + 1
    return out


# -- 6. one partial derivative, traced ---------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One example fed to the trace: x (n_1,), y (n_L,), where it came from."""

    x: Array
    y: Array
    index: int
    label: int
    source: str
    label_name: str = ""  # the class's name in a known dataset ("Ankle boot"); "" when it is just the number


@dataclass(frozen=True)
class Term:
    """One term w^(l+1)_ij delta^(l+1)_i of the sum that builds delta^l_j."""

    i: int
    w: float
    delta: float
    product: float


@dataclass(frozen=True)
class Trace:
    """dC/dw^l_jk for one example (m = 1, so C = C_x), built step by step and checked numerically."""

    l: int
    j: int
    k: int
    L: int
    example: int
    label: int
    source: str
    prediction: int
    cost: float  # C_x at the current parameters
    w: float  # w^l_jk itself
    a_prev: float  # a^(l-1)_k
    z: float  # z^l_j
    a: float  # a^l_j
    sigma: str
    sigma_below: str  # the activation of layer l-1 (unused when l = 2, where a^1 = x)
    sigma_prime: float | None  # sigma'(z^l_j); None for a softmax output (not elementwise)
    delta: float  # delta^l_j
    delta_rule: str  # the formula delta^l_j came from, with this trace's indices
    y: float | None  # y_j, for l = L
    output_grad: float | None  # dC_x/da^L_j, for l = L when the output and cost are not matched
    terms: list[Term]  # for l < L: the largest terms of sum_i w^(l+1)_ij delta^(l+1)_i
    n_terms: int
    weighted_sum: float | None  # that sum
    rest: float | None  # the sum of the terms not listed
    upstream: list[tuple[int, str, int]]  # (l', how delta^l' was built, n_l') for l' = L..l+1
    path: list[str]  # the nodes from w^l_jk to C in the graph with just this weight added
    product: float  # a^(l-1)_k * delta^l_j
    backprop: float  # dw[l][j, k] from Network.backward
    numerical: float  # (C(w^l_jk + h) - C(w^l_jk - h)) / 2h
    h: float
    abs_diff: float
    rel_diff: float
    notes: list[str] = field(default_factory=list)
    label_name: str = ""

    @property
    def label_text(self) -> str:
        """'9 (Ankle boot)', or '7' where the class name is the number itself."""
        return f"{self.label} ({self.label_name})" if self.label_name and self.label_name != str(self.label) \
            else str(self.label)

    @property
    def agrees(self) -> bool:
        return self.abs_diff <= RTOL * abs(self.backprop) + ATOL


def weight_ranges(sizes: Sequence[int]) -> str:
    """'l must be in 2..3; for l=2, j in 0..15 and k in 0..783; for l=3, j in 0..9 and k in 0..15'."""
    L = len(sizes)
    per_l = "; ".join(f"for l={l}, j in 0..{sizes[l - 1] - 1} and k in 0..{sizes[l - 2] - 1}" for l in range(2, L + 1))
    return f"l must be in 2..{L}; {per_l}"


def parse_weight(text: str, sizes: Sequence[int]) -> tuple[int, int, int]:
    """'2,3,406' -> (2, 3, 406), checked against the network: l in 2..L, j < n_l, k < n_(l-1)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) != 3:
            raise ValueError
        l, j, k = (int(p) for p in parts)
    except ValueError:
        raise UsageError(f"--weight {text!r}: expected l,j,k (three integers, e.g. 2,0,0); "
                         f"{weight_ranges(sizes)}") from None
    L = len(sizes)
    if not (2 <= l <= L and 0 <= j < sizes[l - 1] and 0 <= k < sizes[l - 2]):
        raise UsageError(f"--weight {text}: out of range: {weight_ranges(sizes)}")
    return l, j, k


def _cost_at(net: Network, x: Array, y: Array) -> float:
    return net.cost_value(net.forward(x), y)


def central_difference(net: Network, x: Array, y: Array, l: int, j: int, k: int, h: float = H) -> float:
    """dC/dw^l_jk from forward passes only: (C(w^l_jk + h) - C(w^l_jk - h)) / 2h. Restores w^l_jk."""
    w = net.w[l]
    saved = w[j, k]
    try:
        w[j, k] = saved + h
        plus = _cost_at(net, x, y)
        w[j, k] = saved - h
        minus = _cost_at(net, x, y)
    finally:
        w[j, k] = saved
    return (plus - minus) / (2 * h)


def build_trace(network: Network, weight: tuple[int, int, int], example: Example, top: int = TOP_TERMS) -> Trace:
    """Follow dC/dw^l_jk from C back to the weight for one example, in float64."""
    l, j, k = weight
    net = network.astype(np.float64)  # a copy: the central difference may touch it
    L = net.L
    x = np.asarray(example.x, dtype=np.float64).reshape(1, -1)  # m = 1: one row
    y = np.asarray(example.y, dtype=np.float64).reshape(1, -1)
    cache = net.forward(x)
    cost = net.cost_value(cache, y)
    # backward may overwrite arrays it owns, never the cache's z and a; read the cache first anyway.
    z_l, a_l, a_prev = cache.z[l][0].copy(), cache.a[l][0].copy(), cache.a[l - 1][0].copy()
    a_L = cache.a[L][0].copy()
    grads = net.backward(cache, y)
    delta_l = grads.delta[l][0]
    sigma = net.sigma(l)
    spec = Spec.of(net, "", 1)

    sigma_prime: float | None = None
    if sigma.elementwise:
        sigma_prime = float(sigma.derivative(z_l[j : j + 1])[0])
    terms: list[Term] = []
    y_j = output_grad = weighted_sum = rest = None
    n_terms = 0
    if l == L:
        y_j = float(y[0, j])
        if spec.fused:
            rule = f"a^{L}_{j} - y_{j} = {num(float(a_l[j]))} - {num(y_j)}"
        else:
            g = net.cost.derivative(cache.a[L].copy(), y, net.output)[0]  # dC_x/da^L
            output_grad = float(g[j])
            if sigma.elementwise:
                rule = f"dC/da^{L}_{j} * {sigma.name}'(z^{L}_{j}) = {num(output_grad)} * {num(sigma_prime or 0.0)}"
            else:  # softmax: (J^T g)_j with J = diag(a) - a a^T
                rule = (f"a^{L}_{j} (dC/da^{L}_{j} - sum_i a^{L}_i dC/da^{L}_i) = {num(float(a_L[j]))} * "
                        f"({num(output_grad)} - {num(float(a_L @ g))})")
    else:
        w_next, delta_next = net.w[l + 1][:, j], grads.delta[l + 1][0]
        products = w_next * delta_next
        n_terms = len(products)
        weighted_sum = float(products.sum())
        # The largest contributions first; ties keep the lower index, so the listing is deterministic.
        order = np.argsort(-np.abs(products), kind="stable")[:top]
        terms = [Term(int(i), float(w_next[i]), float(delta_next[i]), float(products[i])) for i in order]
        rest = weighted_sum - float(sum(t.product for t in terms))
        rule = (f"{sigma.name}'(z^{l}_{j}) * sum_i w^{l + 1}_(i,{j}) delta^{l + 1}_i = "
                f"{num(sigma_prime or 0.0)} * {num(weighted_sum)}")

    # How the later deltas were built, from the start of the induction down to delta^(l+1).
    out_rule, _ = output_delta_rule(spec)
    upstream = [(L, out_rule.split(" = ", 1)[1].replace("^L", f"^{L}") + ": the start of the induction",
                 net.sizes[L - 1])]
    upstream += [(i, f"((w^{i + 1})^T delta^{i + 1}) (.) {net.sigma(i).name}'(z^{i})", net.sizes[i - 1])
                 for i in range(L - 1, l, -1)]
    upstream = upstream if l < L else []

    # w^l_jk reaches C only through z^l_j; from there through all of every later layer.
    path = [f"w^{l}_({j},{k})", f"z^{l}_{j}"]
    path.append(f"a^{l} = softmax(z^{l})" if l == L and not sigma.elementwise else f"a^{l}_{j}")
    for i in range(l + 1, L + 1):
        path += [f"z^{i} ({net.sizes[i - 1]})", f"a^{i}"]
    path.append("C")

    backprop = float(grads.dw[l][j, k])
    numerical = central_difference(net, x, y, l, j, k)
    abs_diff = abs(backprop - numerical)
    scale = max(abs(backprop), abs(numerical))
    rel_diff = abs_diff / scale if scale > 0 else 0.0

    notes = ["One example (m = 1), so C = C_x and these are per-example values; training averages such "
             "gradients over a mini-batch.",
             "Computed in float64; the numerical value uses forward passes only."]
    if a_prev[k] == 0.0:
        notes.append(f"a^{l - 1}_{k} = 0 for this example, so w^{l}_({j},{k}) has no effect on C here and "
                     "the derivative is exactly 0; pick another k or --example to see a non-zero one.")
    return Trace(
        l=l, j=j, k=k, L=L, example=example.index, label=example.label, source=example.source,
        prediction=int(np.argmax(a_L)), cost=cost, w=float(net.w[l][j, k]), a_prev=float(a_prev[k]),
        z=float(z_l[j]), a=float(a_l[j]), sigma=sigma.name, sigma_below=net.sigma(l - 1).name,
        sigma_prime=sigma_prime, delta=float(delta_l[j]),
        delta_rule=rule, y=y_j, output_grad=output_grad, terms=terms, n_terms=n_terms,
        weighted_sum=weighted_sum, rest=rest, upstream=upstream, path=path, product=float(a_prev[k] * delta_l[j]),
        backprop=backprop, numerical=numerical, h=H, abs_diff=abs_diff, rel_diff=rel_diff, notes=notes,
        label_name=example.label_name,
    )


# -- what is explained: a config's network or a checkpoint's, and one test example ---------------------

DEFAULT_CONFIG = "configs/mnist.yaml"


def load_subject(
    config_path: str | Path | None, overrides: Sequence[str] = (), checkpoint: str | Path | None = None
) -> tuple[Config, Network, str]:
    """The config, the network to explain and a phrase saying where it came from.

    With a checkpoint, its stored config and trained parameters; `--set` may change anything but the
    model, which must match the stored arrays. Otherwise the config's freshly initialized network.
    """
    if checkpoint is not None:
        if config_path is not None:
            raise UsageError("give CONFIG or --checkpoint, not both: a checkpoint carries its own config")
        ckpt = checkpoint_module.load(checkpoint)
        cfg = ckpt.config
        if overrides:
            cfg = config_module.loads(cfg.to_yaml(), source=f"{checkpoint} (stored config)",
                                      overrides=list(overrides), name=cfg.name)
            if cfg.model != ckpt.config.model:
                raise UsageError("--set cannot change model.* with --checkpoint: the stored parameters fix it")
        return cfg, ckpt.network, f"checkpoint {checkpoint} (epoch {ckpt.epoch})"
    if config_path is None:
        if not Path(DEFAULT_CONFIG).is_file():
            raise UsageError(f"no CONFIG given and {DEFAULT_CONFIG} does not exist in {Path.cwd()}; "
                             "pass one, e.g. bpcli explain configs/tiny.yaml")
        config_path = DEFAULT_CONFIG
    cfg = config_module.load(config_path, list(overrides))
    resources.check_network(cfg.model.layers, cfg.training.dtype)  # before NumPy sees a size like 10^12
    net = Network.from_config(cfg.model, cfg.training.seed, cfg.training.dtype)
    changed = "".join(f" --set {item}" for item in overrides)
    return cfg, net, f"{config_path}{changed}, initialized with seed {cfg.training.seed}"


def load_example(path: str | Path, index: int, sizes: Sequence[int], verify: bool = True) -> Example:
    """Test example `index` of the dataset at `path` (IDX directory or .npz): x scaled to [0, 1] when
    stored as bytes, y one-hot, and its class name when the dataset is a known one.

    Reads only the test files (and verifies them as `train` would), not the whole dataset.
    """
    images, labels, identity = data_module.load_test(path, verify)
    if not 0 <= index < len(labels):
        raise UsageError(f"--example {index}: out of range: the test set has {count(len(labels))} examples, "
                         f"use 0..{len(labels) - 1}")
    x = images[index].reshape(-1).astype(np.float64)
    if images.dtype == np.uint8:
        x /= 255.0
    n_1, n_L = sizes[0], sizes[-1]
    label = int(labels[index])
    if len(x) != n_1 or label >= n_L:
        raise UsageError(f"the trace feeds a test example with {len(x)} inputs and label {label}, but this "
                         f"network has n_1 = {n_1} inputs and n_L = {n_L} outputs")
    y = np.zeros(n_L)
    y[label] = 1.0
    name = identity.class_names[label] if label < len(identity.class_names) else ""
    return Example(x, y, index, label, f"{path} (test set)", name)


# -- the whole explanation ----------------------------------------------------------------------------


@dataclass
class Explanation:
    name: str
    source: str  # where the network came from (config and seed, or checkpoint)
    sizes: tuple[int, ...]
    batch_size: int
    dtype: str
    sections: tuple[str, ...]
    layers: LayersSection  # always built: the summary every format carries
    notation: list[Symbol] | None = None
    cost: CostSection | None = None
    equations: EquationsSection | None = None
    graph: Graph | None = None
    trace: Trace | None = None
    index_note: str = INDEX_NOTE

    @property
    def L(self) -> int:
        return len(self.sizes)


def describe(
    network: Network,
    *,
    name: str,
    source: str,
    batch_size: int,
    sections: Sequence[str] | None = None,
    weight: tuple[int, int, int] | None = None,
    example: Example | None = None,
) -> Explanation:
    """The explanation of `network` (examples in batches of `batch_size`), with the chosen sections.

    `trace` needs `weight` (l, j, k) and `example`; a given weight always adds it.
    """
    chosen = parse_sections(sections)
    if weight is not None and "trace" not in chosen:
        chosen = parse_sections([*chosen, "trace"])
    spec = Spec.of(network, name, batch_size)
    model = Explanation(name, source, spec.sizes, batch_size, spec.dtype, chosen, build_layers(spec))
    if "notation" in chosen:
        model.notation = build_notation(spec)
    if "cost" in chosen:
        model.cost = build_cost(spec)
    if "equations" in chosen:
        model.equations = build_equations(spec)
    if "graph" in chosen:
        model.graph = build_graph(spec)
    if "trace" in chosen:
        if weight is None or example is None:
            raise UsageError("the trace section needs --weight l,j,k; " + weight_ranges(spec.sizes))
        model.trace = build_trace(network, weight, example)
    return model


# -- JSON ----------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_json(model: Explanation) -> dict[str, Any]:
    """The explanation as JSON-ready data: the summary (name, L, sizes, n_w, n_b, layers, ...) always,
    then one key per chosen section."""
    ls = model.layers
    data: dict[str, Any] = {
        "name": model.name,
        "source": model.source,
        "index_convention": model.index_note,
        "L": model.L,
        "sizes": list(model.sizes),
        "batch_size": model.batch_size,
        "dtype": model.dtype,
        "n_w": ls.n_w,
        "n_b": ls.n_b,
        "n_params": ls.n_params,
        "bytes": ls.bytes,
        "sections": list(model.sections),
        "layers": [_plain(row) | {"params": row.params} for row in ls.layers],
    }
    if model.notation is not None:
        data["notation"] = _plain(model.notation)
    if model.cost is not None:
        data["cost"] = _plain(model.cost)
    if model.equations is not None:
        data["equations"] = _plain(model.equations)
    if model.graph is not None:
        data["graph"] = _plain(model.graph)
    if model.trace is not None:
        data["trace"] = _plain(model.trace)
    return data
