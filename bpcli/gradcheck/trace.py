"""One partial derivative dC/dw^l_jk of a learner's network, traced equation by equation beside
bpcli's own backprop for the same weights, on one example (`bpcli explain --model ... --weight l,j,k`).

Their code returns only the gradient, but for one example dC/db^l = delta^l (BP3), so their delta^l is
their bias gradient. The rows follow the path of the derivative:

    BP1  delta^L_i           for every output neuron i (delta^L feeds everything below)
    BP2  delta^l'_j'         for l' = L-1 .. l, the neuron j at layer l, every neuron above it
    (forward) a^(l-1)_k      bpcli's, from their weights (their forward pass agreed, or it is flagged)
    BP4  dC/dw^l_jk          theirs, bpcli's delta^l_j a^(l-1)_k, and central differences of their C

The first row that differs names the equation where their backprop departs from bpcli's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bpcli.gradcheck.diagnose import EQUATIONS
from bpcli.gradcheck.forward import Forward, compare
from bpcli.gradcheck.user import UserSubject

RTOL, ATOL = 1e-6, 1e-10
H = 1e-5
__all__ = ["EQUATIONS", "Row", "UserTrace", "trace"]


@dataclass
class Row:
    equation: str      # "BP1", "BP2", "forward", "BP4", "numerical"
    symbol: str        # "delta^4_2", "a^2_1", "dC/dw^3_21"
    yours: float | None
    bpcli: float | None

    @property
    def agrees(self) -> bool | None:
        if self.yours is None or self.bpcli is None:
            return None
        return math.isclose(self.yours, self.bpcli, rel_tol=RTOL, abs_tol=ATOL)


@dataclass
class UserTrace:
    weight: tuple[int, int, int]
    rows: list[Row]
    forward: Forward
    first_difference: Row | None

    @property
    def unread(self) -> list[str]:
        """The steps whose value of theirs could not be read from their gradient (a shape or type that
        is not the parameter's): nothing was compared there, so no agreement may be claimed."""
        return [r.symbol for r in self.rows if r.yours is None and r.equation in ("BP1", "BP2", "BP4")]


def trace(subject: UserSubject, weight: tuple[int, int, int]) -> UserTrace:
    """The rows for dC/dw^l_jk on the subject's batch, which should be one example."""
    l, j, k = weight
    forward = compare(subject)
    grads = subject.gradient()
    theirs = {(s.l, s.kind): (g, s) for s, g in zip(subject.slots, grads)}
    net = forward.net
    cache = deltas = None
    if net is not None:
        cache = net.forward(subject.x)
        deltas = net.backward(cache, subject.y).delta
    L = len(subject.model.sizes)
    rows: list[Row] = []

    def their_delta(layer: int, i: int) -> float | None:
        g, _ = theirs[(layer, "b")]
        return None if g is None or g.shape != (subject.model.sizes[layer - 1],) else float(g[i])

    def our_delta(layer: int, i: int) -> float | None:
        return None if deltas is None else float(deltas[layer][0, i])

    for i in range(subject.model.sizes[-1]):
        rows.append(Row("BP1", f"delta^{L}_{i}", their_delta(L, i), our_delta(L, i)))
    for layer in range(L - 1, l - 1, -1):
        neurons = [j] if layer == l else range(subject.model.sizes[layer - 1])
        for i in neurons:
            rows.append(Row("BP2", f"delta^{layer}_{i}", their_delta(layer, i), our_delta(layer, i)))
    a_prev = None if cache is None else float(cache.a[l - 1][0, k])
    rows.append(Row("forward", f"a^{l - 1}_{k}", a_prev, a_prev))
    g, slot = theirs[(l, "w")]
    index = (k, j) if slot.transposed else (j, k)
    yours = None if g is None or g.shape != slot.shape else float(g[index])
    ours = None if deltas is None or a_prev is None else float(deltas[l][0, j]) * a_prev
    rows.append(Row("BP4", f"dC/dw^{l}_{j}{k}", yours, ours))
    theta = [p.value for p in subject.parameters()]
    w_at = [i for i, s in enumerate(subject.slots) if s.l == l and s.kind == "w"][0]
    flat = np.ravel_multi_index(index, slot.shape)
    plus = [t.copy() for t in theta]
    minus = [t.copy() for t in theta]
    plus[w_at].reshape(-1)[flat] += H
    minus[w_at].reshape(-1)[flat] -= H
    numerical = (float(np.real(subject.cost(plus))) - float(np.real(subject.cost(minus)))) / (2 * H)
    rows.append(Row("numerical", f"dC/dw^{l}_{j}{k}", yours, numerical))
    first = next((r for r in rows if r.agrees is False), None)
    return UserTrace(weight, rows, forward, first)
