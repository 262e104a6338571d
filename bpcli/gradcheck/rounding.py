"""How far rounding in a low precision (float32) can move a backprop gradient: the tolerance of the
training-path check, derived per entry instead of guessed.

A float32 gradient differs from the exact one by rounding alone, and by an amount that depends on the
entry: a dC/dw^l_jk that is a small sum of large terms of both signs, or that passes through a
saturated sigmoid (sigma' = a (1 - a) with a = 1 - 1e-6), carries a large relative error; a
well-conditioned entry carries a few units of 2^-24. So no single rtol fits: one loose enough for the
first hides real bugs in the second, and one tight enough for the second fails correct code.

The model (first-order, in the spirit of Monte Carlo arithmetic): every value the pass stores is off by
a relative u r, u the unit roundoff (2^-24 for float32) and r uniform in [-1, 1]; every term of a sum
of n terms (a matrix product, a bias sum) is off by u sqrt(n) r, the probabilistic size of the error of
a sum of n rounded terms. The forward and backward pass run in float64 with those perturbations, each
run with fresh r, and each run's gradient minus the exact one is one sample of what rounding could
do. The check allows KAPPA times the RMS of RUNS such samples, per entry (and per direction for the
directional method), on top of the numerical method's own tolerance.

Measured on MNIST networks (784-16-10 to 784-64-64-64-10; sigmoid, tanh, ReLU; every output and cost;
batches of 3, 7 and 128; weights at their initialization and 3 times larger, for saturation): the real
float32 error of `Network.backward` with a workspace and scale 0.1 reached at most 5.5 times this RMS
(16 runs); KAPPA = 50 leaves a factor 9 of margin. Entries whose exact value is below the smallest
normal number (1.2e-38 in float32) underflow; they are allowed an absolute error of KAPPA times it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from bpcli.activations import Array
from bpcli.costs import output_delta
from bpcli.network import Network

RUNS = 16
KAPPA = 50.0


@dataclass
class Rounding:
    """What rounding in `dtype` could do to a gradient: `deviations` yields RUNS simulated samples
    (one array per parameter each); `floor` is the absolute error allowed for underflow."""

    dtype: np.dtype
    deviations: Iterator[list[Array]]
    floor: float


def unit_roundoff(dtype: np.dtype) -> float:
    """u = eps / 2: the largest relative error of rounding one value (2^-24 for float32)."""
    return float(np.finfo(dtype).eps) / 2


def underflow_floor(dtype: np.dtype, scale: float) -> float:
    """The absolute error an entry may have from underflow: KAPPA times the smallest normal number,
    in units of the unscaled gradient (the pass computes scale * g)."""
    return KAPPA * float(np.finfo(dtype).tiny) / min(1.0, scale)


def simulate(
    net: Network, x: Array, y: Array, dtype: np.dtype, scale: float, runs: int, rng: np.random.Generator
) -> Rounding:
    """The rounding model of `Network.forward` / `backward` in `dtype` with `scale`: `runs` samples of
    (gradient with rounding simulated) - (exact gradient), each a list [dw^2, db^2, dw^3, ...] in
    float64. net, x (m, n_1), y (m, n_L): float64, at the checked point."""

    def deviations() -> Iterator[list[Array]]:
        exact = _pass(net, x, y, scale, None, 0.0)
        u = unit_roundoff(dtype)
        for _ in range(runs):
            yield [g - e for g, e in zip(_pass(net, x, y, scale, rng, u), exact)]

    return Rounding(np.dtype(dtype), deviations(), underflow_floor(dtype, scale))


def _pass(net: Network, x: Array, y: Array, scale: float, rng: np.random.Generator | None, u: float) -> list[Array]:
    """Forward and backward pass as `Network.forward` / `backward` compute them, every stored value
    perturbed by a relative u r (terms of sums of n terms by u sqrt(n) r); the gradient / scale."""

    def rounded(v: Array, n: int = 1) -> Array:
        if rng is None:
            return v
        return v * (1.0 + (u * np.sqrt(n)) * rng.uniform(-1.0, 1.0, v.shape))

    L, m = net.L, len(x)
    z: dict[int, Array] = {}
    a: dict[int, Array] = {1: x}
    for l in net.layers:
        n = net.sizes[l - 2]  # n_(l-1) terms in each z^l_j
        z[l] = rounded(rounded(a[l - 1], n) @ rounded(net.w[l], n).T + net.b[l])
        a[l] = rounded(net.sigma(l).value(z[l]))
    delta = {L: rounded(output_delta(net.cost, net.output, z[L], a[L], y, scale=scale))}
    for l in range(L - 1, 1, -1):
        n = net.sizes[l]  # n_(l+1) terms in each (w^(l+1))^T delta^(l+1)
        g = rounded(rounded(delta[l + 1], n) @ rounded(net.w[l + 1], n))
        delta[l] = rounded(net.sigma(l).chain(g, z[l], a[l]))
    out: list[Array] = []
    for l in net.layers:
        dw = rounded(rounded(delta[l], m).T @ rounded(a[l - 1], m))
        db = rounded(rounded(delta[l], m).sum(axis=0))
        out += [dw / scale, db / scale]
    return out
