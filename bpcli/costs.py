"""Cost functions C with value and derivative, and the output error delta^L.

For a mini-batch of m examples (one per row) the cost is the mean of the per-example costs:
C = (1/m) sum_x C_x, so every gradient bpcli computes is the gradient of that mean.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from bpcli.activations import Activation, Array, Identity, Sigmoid, Softmax


def _softplus(z: Array) -> Array:
    """log(1 + e^z) without overflow, valid for complex z."""
    r = np.maximum(z.real, 0.0)
    return r + np.log(np.exp(-r) + np.exp(z - r))


class Cost:
    name: ClassVar[str]

    def value(self, z: Array, a: Array, y: Array, output: Activation) -> float:
        """C = (1/m) sum_x C_x for output pre-activations z, activations a and targets y, all (m, n_L)."""
        raise NotImplementedError

    def derivative(self, a: Array, y: Array, output: Activation) -> Array:
        """dC_x/da^L for each example, shape (m, n_L)."""
        raise NotImplementedError

    def fused_with(self, output: Activation) -> bool:
        """True when delta^L = dC_x/dz^L simplifies to a^L - y for this output activation."""
        return False

    def __repr__(self) -> str:
        return self.name


class Quadratic(Cost):
    """C_x = 1/2 ||y - a^L||^2."""

    name = "quadratic"

    def value(self, z: Array, a: Array, y: Array, output: Activation) -> float:
        d = a - y
        return 0.5 * np.sum(d * d) / len(a)

    def derivative(self, a: Array, y: Array, output: Activation) -> Array:
        return a - y

    def fused_with(self, output: Activation) -> bool:
        return isinstance(output, Identity)


class CrossEntropy(Cost):
    """Cross-entropy, matched to the output layer.

    With softmax: C_x = -sum_j y_j log a^L_j (categorical). With sigmoid: C_x = -sum_j [y_j log a^L_j
    + (1 - y_j) log(1 - a^L_j)] (one binary cross-entropy per output neuron). Both are evaluated from
    z^L through log-sum-exp / softplus, so no log(0) ever occurs.
    """

    name = "cross_entropy"

    def value(self, z: Array, a: Array, y: Array, output: Activation) -> float:
        if isinstance(output, Softmax):
            return -np.sum(y * output.log_value(z)) / len(z)
        if isinstance(output, Sigmoid):
            # -log a = softplus(-z) and -log(1 - a) = softplus(z).
            return np.sum(y * _softplus(-z) + (1.0 - y) * _softplus(z)) / len(z)
        raise ValueError(f"cross_entropy needs a softmax or sigmoid output, not {output.name}")

    def derivative(self, a: Array, y: Array, output: Activation) -> Array:
        if isinstance(output, Softmax):
            return -y / a
        return (a - y) / (a * (1.0 - a))

    def fused_with(self, output: Activation) -> bool:
        return isinstance(output, (Softmax, Sigmoid))


COSTS: dict[str, Cost] = {c.name: c for c in (Quadratic(), CrossEntropy())}


def output_delta(cost: Cost, output: Activation, z: Array, a: Array, y: Array) -> Array:
    """delta^L = dC/dz^L for the batch-mean cost, shape (m, n_L).

    In general delta^L = grad_a C_x (.) sigma'(z^L) (J^T grad_a C_x for softmax); for the matched
    pairs the factors cancel to a^L - y. The 1/m of the batch mean is folded in here, once, so every
    later delta^l and gradient already belongs to the mean cost.
    """
    m = len(a)
    if cost.fused_with(output):
        delta = a - y
    else:
        delta = output.chain(cost.derivative(a, y, output), z, a)
    delta *= 1.0 / m
    return delta
