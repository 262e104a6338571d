"""Section 6: one partial derivative dC/dw^l_jk traced with real numbers, next to backprop's value and
a central difference."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from bpcli.activations import Array
from bpcli.errors import UsageError
from bpcli.network import Network
from bpcli.explain.base import ATOL, H, RTOL, Spec, TOP_TERMS, num
from bpcli.explain.sections import output_delta_rule

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
