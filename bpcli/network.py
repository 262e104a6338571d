"""A fully-connected network and its backpropagation, vectorized over a mini-batch.

Notation follows `backprop-notes.md`. Layers are l = 1..L: layer 1 is the input, layer L the output,
and parameters exist for l = 2..L:

    w[l]  shape (n_l, n_{l-1})   w[l][j, k] = w^l_jk, from neuron k of layer l-1 to neuron j of layer l
    b[l]  shape (n_l,)

A mini-batch of m examples is a matrix with **one example per row**, so the column vectors of the notes
become rows: z[l] and a[l] have shape (m, n_l), and z^l = w^l a^(l-1) + b^l reads z[l] = a[l-1] @ w[l].T
+ b[l]. Rows keep each example contiguous in memory and let a batch be sliced straight out of the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bpcli.activations import HIDDEN, OUTPUT, Activation, Array
from bpcli.costs import COSTS, Cost, output_delta


@dataclass
class Cache:
    """The forward pass's values, kept for the backward pass: z[l] for l = 2..L, a[l] for l = 1..L."""

    z: dict[int, Array] = field(default_factory=dict)
    a: dict[int, Array] = field(default_factory=dict)


@dataclass
class Grads:
    """dC/dw^l and dC/db^l for l = 2..L (same shapes as w[l], b[l]) and the errors delta[l], (m, n_l)."""

    dw: dict[int, Array]
    db: dict[int, Array]
    delta: dict[int, Array]


def init_weights(scheme: str, n_out: int, n_in: int, rng: np.random.Generator) -> Array:
    """A weight matrix of shape (n_out, n_in) drawn from the named scheme (float64)."""
    std = {
        "normal": 1.0,
        "scaled_normal": 1.0 / np.sqrt(n_in),
        "xavier": np.sqrt(2.0 / (n_in + n_out)),
        "he": np.sqrt(2.0 / n_in),
    }[scheme]
    return rng.standard_normal((n_out, n_in)) * std


class Network:
    """Parameters w[l], b[l] and the functions that make up C(w, b) and its gradient."""

    def __init__(
        self,
        sizes: tuple[int, ...],
        w: dict[int, Array],
        b: dict[int, Array],
        hidden: Activation,
        output: Activation,
        cost: Cost,
    ) -> None:
        self.sizes = tuple(sizes)
        self.w = w
        self.b = b
        self.hidden = hidden
        self.output = output
        self.cost = cost

    @classmethod
    def create(
        cls,
        sizes: tuple[int, ...] | list[int],
        activation: str = "sigmoid",
        output: str = "softmax",
        cost: str = "cross_entropy",
        init: str = "scaled_normal",
        rng: np.random.Generator | None = None,
        dtype: np.dtype | type = np.float64,
    ) -> Network:
        """A freshly initialized network: w^l from `init`, b^l ~ N(0, 1) as in the classic setup, or 0
        for the scaled schemes (which exist to keep z^l small)."""
        rng = rng if rng is not None else np.random.default_rng(0)
        L = len(sizes)
        w: dict[int, Array] = {}
        b: dict[int, Array] = {}
        for l in range(2, L + 1):
            n_l, n_prev = sizes[l - 1], sizes[l - 2]
            w[l] = init_weights(init, n_l, n_prev, rng).astype(dtype)
            if init == "normal":
                b[l] = rng.standard_normal(n_l).astype(dtype)
            else:
                b[l] = np.zeros(n_l, dtype=dtype)
        return cls(tuple(sizes), w, b, HIDDEN[activation], OUTPUT[output], COSTS[cost])

    @classmethod
    def from_config(cls, model: object, seed: int, dtype: str) -> Network:
        """The network a `ModelConfig` describes, initialized from `seed`."""
        return cls.create(
            model.layers,  # type: ignore[attr-defined]
            activation=model.activation,  # type: ignore[attr-defined]
            output=model.output,  # type: ignore[attr-defined]
            cost=model.cost,  # type: ignore[attr-defined]
            init=model.init,  # type: ignore[attr-defined]
            rng=np.random.default_rng(seed),
            dtype=np.dtype(dtype),
        )

    # -- structure -------------------------------------------------------------------------------

    @property
    def L(self) -> int:
        """Number of layers, input and output included."""
        return len(self.sizes)

    @property
    def layers(self) -> range:
        """The layers that have parameters: l = 2..L."""
        return range(2, self.L + 1)

    def sigma(self, l: int) -> Activation:
        """The activation of layer l (the output activation for l = L)."""
        return self.output if l == self.L else self.hidden

    @property
    def n_w(self) -> int:
        return sum(self.w[l].size for l in self.layers)

    @property
    def n_b(self) -> int:
        return sum(self.b[l].size for l in self.layers)

    @property
    def dtype(self) -> np.dtype:
        return self.w[2].dtype

    def params(self) -> list[Array]:
        """[w^2, b^2, w^3, b^3, ...]: the order optimizers and checkpoints use."""
        return [p for l in self.layers for p in (self.w[l], self.b[l])]

    def astype(self, dtype: np.dtype | type) -> Network:
        """A copy of this network with parameters in `dtype`."""
        return Network(
            self.sizes,
            {l: self.w[l].astype(dtype) for l in self.layers},
            {l: self.b[l].astype(dtype) for l in self.layers},
            self.hidden,
            self.output,
            self.cost,
        )

    # -- C(w, b) and its gradient ----------------------------------------------------------------

    def forward(self, x: Array, start: int = 2, cache: Cache | None = None) -> Cache:
        """The forward pass for a batch x of shape (m, n_1).

        For l = 2..L:  z^l = w^l a^(l-1) + b^l  (z[l] = a[l-1] @ w[l].T + b[l], shape (m, n_l))
                       a^l = sigma(z^l)          (shape (m, n_l)),  with a^1 = x.
        With `start` > 2 the pass resumes at layer `start` from `cache`, whose a[start-1] it reuses:
        a change to w^l cannot affect any layer below l.
        """
        if cache is None or start == 2:
            cache = Cache(a={1: x})
        for l in range(start, self.L + 1):
            z = cache.a[l - 1] @ self.w[l].T
            z += self.b[l]
            cache.z[l] = z
            cache.a[l] = self.sigma(l).value(z)
        return cache

    def cost_value(self, cache: Cache, y: Array) -> float:
        """C = (1/m) sum_x C_x for the batch in `cache` with targets y, shape (m, n_L)."""
        L = self.L
        return float(self.cost.value(cache.z[L], cache.a[L], y, self.output))

    def backward(self, cache: Cache, y: Array) -> Grads:
        """Backpropagation: the gradient of the batch-mean cost C with respect to every w^l and b^l.

        delta^L = grad_a C (.) sigma'(z^L)                 (a^L - y for the matched output and cost)
        delta^l = ((w^(l+1))^T delta^(l+1)) (.) sigma'(z^l)  for l = L-1 .. 2
                  (delta[l] = (delta[l+1] @ w[l+1]) * sigma'(z[l]), shape (m, n_l))
        dC/db^l = delta^l summed over the batch   (shape (n_l,))
        dC/dw^l = delta^l (a^(l-1))^T             (delta[l].T @ a[l-1], shape (n_l, n_{l-1}))
        Layer l uses only delta^(l+1), w^(l+1) and the forward pass's z^l, a^l, a^(l-1).
        """
        L = self.L
        delta = {L: output_delta(self.cost, self.output, cache.z[L], cache.a[L], y)}
        for l in range(L - 1, 1, -1):
            delta[l] = self.sigma(l).chain(delta[l + 1] @ self.w[l + 1], cache.z[l], cache.a[l])
        dw = {l: delta[l].T @ cache.a[l - 1] for l in self.layers}
        db = {l: delta[l].sum(axis=0) for l in self.layers}
        return Grads(dw, db, delta)

    def gradient(self, x: Array, y: Array) -> tuple[float, Grads]:
        """C and its gradient for the batch (x, y): one forward and one backward pass."""
        cache = self.forward(x)
        return self.cost_value(cache, y), self.backward(cache, y)

    def predict(self, x: Array, batch_size: int = 10_000) -> Array:
        """a^L for every row of x, shape (N, n_L), evaluated in large batches to bound memory."""
        out = np.empty((len(x), self.sizes[-1]), dtype=self.dtype)
        for i in range(0, len(x), batch_size):
            out[i : i + batch_size] = self.forward(x[i : i + batch_size]).a[self.L]
        return out
