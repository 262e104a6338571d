"""The learner's forward pass and cost against bpcli's own network with the same weights.

A gradient check asks whether their backprop is the derivative of *their* C; this asks whether their C
is the one they meant. bpcli builds networks of sigmoid, tanh or ReLU hidden layers, sigmoid, softmax or
identity outputs, and the quadratic or cross-entropy cost; with the learner's weights and biases in
bpcli's layout (w^l (n_l, n_(l-1)), b^l (n_l,)) it finds the one that reproduces their output a^L (book
style) or their loss (function style) on the checked batch. A book-style network is the book's sigmoid
network unless it matches another; when none matches, the differences from that sigmoid network are the
forward-pass mismatch, reported apart from the gradient check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bpcli.activations import HIDDEN, OUTPUT, Array
from bpcli.costs import COSTS
from bpcli.gradcheck.user import BookSubject, UserSubject
from bpcli.network import Network

# Agreement of a forward pass or a cost in float64: far above rounding, far below any real difference.
RTOL = 1e-9


@dataclass
class Forward:
    """The comparison's outcome: `agrees` True (bpcli has this network), False (a book-style forward pass
    that matches none: a mismatch), None (a function-style loss bpcli has no network for)."""

    agrees: bool | None
    architecture: str | None      # "sigmoid hidden, sigmoid output, quadratic cost"
    text: str
    max_diff: float | None = None
    net: Network | None = None    # bpcli's network with their weights, when one matched

    def to_dict(self) -> dict[str, object]:
        return {"agrees": self.agrees, "architecture": self.architecture, "text": self.text,
                "max_diff": None if self.max_diff is None or not math.isfinite(self.max_diff) else self.max_diff}


def bpcli_network(subject: UserSubject, hidden: str = "sigmoid", output: str = "sigmoid",
                  cost: str = "quadratic") -> Network:
    """bpcli's network holding the subject's parameters (their original values)."""
    sizes = subject.model.sizes
    w: dict[int, Array] = {}
    b: dict[int, Array] = {}
    for s, p in zip(subject.slots, subject.parameters()):
        if s.kind == "w":
            w[s.l] = p.value.T.copy() if s.transposed else p.value.copy()
        else:
            b[s.l] = p.value.copy()
    return Network(tuple(sizes), w, b, HIDDEN[hidden], OUTPUT[output], COSTS[cost])


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=RTOL)


def compare(subject: UserSubject) -> Forward:
    x, y, m = subject.x, subject.y, subject.m
    user_cost = float(np.real(subject.cost([p.value for p in subject.parameters()])))
    if isinstance(subject, BookSubject):
        a_user = np.stack([subject.output(i).reshape(-1) for i in range(m)])
        subject.restore()
        sigmoid_net = bpcli_network(subject)
        for hidden in HIDDEN:
            for output in OUTPUT:
                net = bpcli_network(subject, hidden, output)
                a = net.forward(x).a[net.L]
                if np.allclose(a, a_user, rtol=RTOL, atol=RTOL):
                    return _with_cost(net, hidden, output, x, y, user_cost, float(np.abs(a - a_user).max()))
        diff = np.abs(sigmoid_net.forward(x).a[sigmoid_net.L] - a_user)
        i, j = np.unravel_index(int(np.argmax(diff)), diff.shape)
        return Forward(False, None, f"forward-pass mismatch: your feedforward's a^L differs from bpcli's sigmoid "
                                    f"network with the same weights by up to {diff.max():.3e} (example {i}, "
                                    f"output neuron {j + 1}), and no other bpcli activation matches it either",
                       float(diff.max()))
    for hidden in HIDDEN:
        for output in OUTPUT:
            for cost in COSTS:
                try:  # a pairing bpcli refuses (cross-entropy on an identity output) is no candidate
                    net = bpcli_network(subject, hidden, output, cost)
                    with np.errstate(all="ignore"):
                        c = net.cost_value(net.forward(x), y)
                except ValueError:
                    continue
                arch = f"{hidden} hidden, {output} output, {cost.replace('_', '-')} cost"
                if _close(c, user_cost):
                    return Forward(True, arch, f"your loss equals C of bpcli's {arch} network with the same weights "
                                               f"({user_cost:.10g})", abs(c - user_cost), net)
                if m > 1 and _close(m * c, user_cost):
                    return Forward(True, arch, f"your loss is m = {m} times C of bpcli's {arch} network (a sum "
                                               "over the batch where bpcli takes the mean)", abs(m * c - user_cost), net)
    return Forward(None, None, "no forward comparison: no bpcli network (sigmoid, tanh or ReLU hidden layers; "
                               "softmax, sigmoid or identity output; quadratic or cross-entropy cost) gives your loss")


def _with_cost(net: Network, hidden: str, output: str, x: Array, y: Array, user_cost: float, diff: float) -> Forward:
    for cost in COSTS:
        try:  # a pairing bpcli refuses is no candidate
            candidate = Network(net.sizes, net.w, net.b, net.hidden, net.output, COSTS[cost])
            with np.errstate(all="ignore"):
                c = candidate.cost_value(candidate.forward(x), y)
        except ValueError:
            continue
        if _close(c, user_cost):
            arch = f"{hidden} hidden, {output} output, {cost.replace('_', '-')} cost"
            return Forward(True, arch, f"your feedforward and cost equal bpcli's {arch} network with the same "
                                       f"weights (max |a^L difference| {diff:.1e})", diff, candidate)
    arch = f"{hidden} hidden, {output} output"
    return Forward(True, arch, f"your feedforward equals bpcli's {arch} network with the same weights; your cost is "
                               "neither bpcli's quadratic nor its cross-entropy, so C is compared with yours only",
                   diff, net)
