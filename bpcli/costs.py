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

    def derivative(self, a: Array, y: Array, output: Activation, out: Array | None = None) -> Array:
        """dC_x/da^L for each example, shape (m, n_L); written into `out` when given."""
        raise NotImplementedError

    def running_value(self, z: Array, a: Array, y: Array, output: Activation) -> float:
        """C for one training batch, as the running train loss reports it: `value`, unless a cost has
        a cheaper form that differs from it only where C_x is already enormous (see CrossEntropy)."""
        return self.value(z, a, y, output)

    def fused_with(self, output: Activation) -> bool:
        """True when delta^L = dC_x/dz^L has a closed form without grad_a C_x or sigma'(z^L) for this
        output activation (see `output_delta`)."""
        return False

    def __repr__(self) -> str:
        return self.name


class Quadratic(Cost):
    """C_x = 1/2 ||y - a^L||^2."""

    name = "quadratic"

    def value(self, z: Array, a: Array, y: Array, output: Activation) -> float:
        d = (a - y).ravel()
        # The sum of squares as one dot product, without the array d * d (np.dot, unlike np.vdot, does
        # not conjugate: for complex d this stays sum d^2, analytic, as the complex-step check needs).
        return 0.5 * np.dot(d, d) / len(a)

    def derivative(self, a: Array, y: Array, output: Activation, out: Array | None = None) -> Array:
        return np.subtract(a, y, out=out)

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
            # sum_x sum_j y_j log a_j as one dot product (y is real, so vdot's conjugation is moot).
            return -np.vdot(y, output.log_value(z)) / len(z)
        if isinstance(output, Sigmoid):
            # -log a = softplus(-z) and -log(1 - a) = softplus(z).
            return np.sum(y * _softplus(-z) + (1.0 - y) * _softplus(z)) / len(z)
        raise ValueError(f"cross_entropy needs a softmax or sigmoid output, not {output.name}")

    def running_value(self, z: Array, a: Array, y: Array, output: Activation) -> float:
        if isinstance(output, Softmax):
            # Per training batch, C = -(1/m) sum y log a^L straight from the forward pass's a^L: three
            # array operations on (m, n_L), against about ten for `value`'s log-sum-exp of z^L, which
            # costs as much as a small layer's matrix product. a^L is floored at the smallest normal
            # float, so the two differ only for an example whose target probability underflowed, i.e.
            # with C_x > 87 in float32 (counted as 87). `value` stays the exact reference.
            return -np.vdot(y, np.log(np.maximum(a, np.finfo(a.dtype).tiny))) / len(a)
        return self.value(z, a, y, output)

    def derivative(self, a: Array, y: Array, output: Activation, out: Array | None = None) -> Array:
        if isinstance(output, Softmax):
            return np.divide(-y, a, out=out)
        return np.divide(a - y, a * (1.0 - a), out=out)

    def fused_with(self, output: Activation) -> bool:
        return isinstance(output, (Softmax, Sigmoid))


COSTS: dict[str, Cost] = {c.name: c for c in (Quadratic(), CrossEntropy())}


def output_delta(
    cost: Cost, output: Activation, z: Array, a: Array, y: Array, out: Array | None = None, scale: float = 1.0
) -> Array:
    """delta^L = dC/dz^L for the batch-mean cost, shape (m, n_L); written into `out` when given.

    In general delta^L = grad_a C_x (.) sigma'(z^L) (J^T grad_a C_x for softmax); for the matched
    pairs the factors cancel (no Jacobian, no division by a), and the closed forms hold for every
    target y, not only one-hot rows:

      sigmoid + cross-entropy:   dC_x/dz_j = a_j - y_j                 (each output on its own)
      identity + quadratic:      dC_x/dz_j = a_j - y_j
      softmax + cross-entropy:   dC_x/dz_j = a_j sum_k y_k - y_j       (C_x = -sum_k y_k log a_k)

    The last is a^L - y only when the row of y sums to 1 (one-hot, label smoothing); it is computed
    in full, so any targets get their true gradient. Measured (README, "Targets"): the row sum adds
    about 2 us per batch, 3.7% of the CPU time of a batch-10 epoch of 784-30-10, about 1% at batch
    64, nothing measurable at batch 128; refusing targets whose rows do not sum to 1 would cost more
    (3 us), since it needs the same sums. The 1/m of the batch mean is folded in here, once, so every
    later delta^l and gradient already belongs to the mean cost; so is `scale`, for the gradient of
    scale * C.
    """
    m = len(a)
    if cost.fused_with(output) and isinstance(output, Softmax):
        delta = np.multiply(a, np.add.reduce(y, axis=1, keepdims=True), out=out)
        delta -= y
    elif cost.fused_with(output):
        delta = np.subtract(a, y, out=out)
    else:
        delta = output.chain(cost.derivative(a, y, output, out=out), z, a)
    delta *= scale / m
    return delta
