"""Sections 1-4 of an explanation: notation and types, layers, the cost as a function of the
parameters, and the forward and backward equations layer by layer (BP1-BP4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from bpcli.explain.base import Spec, count, shape, space

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
