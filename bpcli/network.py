"""A fully-connected network and its backpropagation, vectorized over a mini-batch.

Notation follows `backprop-notes.md`. Layers are l = 1..L: layer 1 is the input, layer L the output,
and parameters exist for l = 2..L:

    w[l]  shape (n_l, n_{l-1})   w[l][j, k] = w^l_jk, from neuron k of layer l-1 to neuron j of layer l
    b[l]  shape (n_l,)

A mini-batch of m examples is a matrix with **one example per row**, so the column vectors of the notes
become rows: z[l] and a[l] have shape (m, n_l), and z^l = w^l a^(l-1) + b^l reads z[l] = a[l-1] @ w[l].T
+ b[l]. Rows let a batch be sliced straight out of the data; the training loop's buffers store the same
(m, n_l) matrices feature-major (see `Workspace`), which only changes what BLAS is asked to do fastest.

`forward` and `backward` write the equations once. Called plainly they allocate their results, as the
gradient checks and `explain` want (any dtype, complex included); given a `Workspace` they write every
z, a, delta, dw and db into arrays allocated once per epoch (`out=` arguments), so the training loop
allocates no array per batch and keeps reusing the same, cache-warm memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bpcli.activations import HIDDEN, OUTPUT, Activation, Array
from bpcli.config import ModelConfig
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


class Workspace:
    """Preallocated outputs for the passes over a batch of exactly m examples, reused batch after batch.

    z[l], a[l], delta[l]: (m, n_l) for l = 2..L, stored feature-major;  dw[l]: (n_l, n_{l-1});  db[l]: (n_l,).
    `rows(k)` gives the same buffers cut to the first k rows, for the short last batch of an epoch.
    The results of a pass that used a workspace live in it: they are overwritten by the next pass.
    """

    def __init__(self, net: Network, m: int) -> None:
        self.m = m
        self.z = {l: _feature_major(m, net.sizes[l - 1], net.dtype) for l in net.layers}
        self.a = {l: _feature_major(m, net.sizes[l - 1], net.dtype) for l in net.layers}
        self.delta = {l: _feature_major(m, net.sizes[l - 1], net.dtype) for l in net.layers}
        self.dw = {l: np.empty_like(net.w[l]) for l in net.layers}
        self.db = {l: np.empty_like(net.b[l]) for l in net.layers}
        self._cut: dict[int, Workspace] = {}

    def rows(self, k: int) -> Workspace:
        """This workspace cut to its first k <= m rows (views, made once per k)."""
        if k == self.m:
            return self
        if k not in self._cut:
            # The cut shares dw, db and the rows of z, a, delta; it holds no link back to this
            # workspace, so no reference cycle keeps the buffers alive after the last use.
            cut = object.__new__(Workspace)
            cut.m, cut._cut = k, {}
            cut.z = {l: z[:k] for l, z in self.z.items()}
            cut.a = {l: a[:k] for l, a in self.a.items()}
            cut.delta = {l: d[:k] for l, d in self.delta.items()}
            cut.dw, cut.db = self.dw, self.db
            self._cut[k] = cut
        return self._cut[k]


def _feature_major(m: int, n: int, dtype: np.dtype) -> Array:
    """An (m, n) buffer laid out as its transpose: each of the n features (neurons) contiguous over the
    m examples, the column vectors of the notes side by side.

    The values and the equations are the same as with rows; only the order in memory changes, and with
    it the shape of the matrix products BLAS sees: z = a @ w.T into such a buffer runs as w @ a^T, and
    the next layer reads a^T contiguously. Measured with OpenBLAS on the 2-core machine for
    [784, 512, 256, 10] and batches of 128 (issue 19): 2.39-2.45 ms per batch instead of 2.67-2.69 on one
    thread, 1.65-1.70 instead of 1.74-1.80 on two. A row cut [:k] of it stays a BLAS-ready strided view.
    """
    return np.empty((n, m), dtype).T


class _Fresh(dict):
    """Every key maps to None: `out=None`, so NumPy allocates a fresh result of the right dtype."""

    def __missing__(self, key: object) -> None:
        return None


class _NoWorkspace:
    """What `forward` / `backward` use without a workspace: no buffers, fresh arrays each call."""

    z = a = delta = dw = db = _Fresh()


NO_WORKSPACE = _NoWorkspace()


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
    def from_config(cls, model: ModelConfig, seed: int | np.random.Generator, dtype: str) -> Network:
        """The network a `ModelConfig` describes, initialized from `seed` (or from a generator, which
        then goes on to serve the caller: training shuffles with the same one)."""
        return cls.create(
            model.layers,
            activation=model.activation,
            output=model.output,
            cost=model.cost,
            init=model.init,
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

    def forward(
        self, x: Array, start: int = 2, cache: Cache | None = None, workspace: Workspace | None = None
    ) -> Cache:
        """The forward pass for a batch x of shape (m, n_1).

        For l = 2..L:  z^l = w^l a^(l-1) + b^l  (z[l] = a[l-1] @ w[l].T + b[l], shape (m, n_l))
                       a^l = sigma(z^l)          (shape (m, n_l)),  with a^1 = x.
        With `start` > 2 the pass resumes at layer `start` from `cache`, whose a[start-1] it reuses:
        a change to w^l cannot affect any layer below l. With a `workspace` (for exactly m rows) z and
        a are written into its buffers.
        """
        ws = workspace or NO_WORKSPACE
        if cache is None or start == 2:
            cache = Cache(a={1: x})
        for l in range(start, self.L + 1):
            # w[l].T is a view: BLAS reads w transposed in place, no copy.
            z = np.matmul(cache.a[l - 1], self.w[l].T, out=ws.z[l])
            z += self.b[l]
            cache.z[l] = z
            cache.a[l] = self.sigma(l).value(z, out=ws.a[l])
        return cache

    def cost_value(self, cache: Cache, y: Array) -> float:
        """C = (1/m) sum_x C_x for the batch in `cache` with targets y, shape (m, n_L)."""
        L = self.L
        return float(self.cost.value(cache.z[L], cache.a[L], y, self.output))

    def backward(
        self, cache: Cache, y: Array, workspace: Workspace | None = None, scale: float = 1.0
    ) -> Grads:
        """Backpropagation: the gradient of the batch-mean cost C with respect to every w^l and b^l.

        delta^L = grad_a C (.) sigma'(z^L)                 (a^L - y for the matched output and cost,
                                                            a^L sum_k y_k - y for softmax: any targets)
        delta^l = ((w^(l+1))^T delta^(l+1)) (.) sigma'(z^l)  for l = L-1 .. 2
                  (delta[l] = (delta[l+1] @ w[l+1]) * sigma'(z[l]), shape (m, n_l))
        dC/db^l = delta^l summed over the batch   (shape (n_l,))
        dC/dw^l = delta^l (a^(l-1))^T             (delta[l].T @ a[l-1], shape (n_l, n_{l-1}))
        Layer l uses only delta^(l+1), w^(l+1) and the forward pass's z^l, a^l, a^(l-1).
        With a `workspace` the deltas and gradients are written into its buffers. With `scale` they
        are those of scale * C: the factor enters delta^L once and every later term is linear in it.
        """
        ws = workspace or NO_WORKSPACE
        L = self.L
        delta = {L: output_delta(self.cost, self.output, cache.z[L], cache.a[L], y, ws.delta[L], scale)}
        for l in range(L - 1, 1, -1):
            g = np.matmul(delta[l + 1], self.w[l + 1], out=ws.delta[l])
            delta[l] = self.sigma(l).chain(g, cache.z[l], cache.a[l])
        # delta[l].T is a view (BLAS reads it transposed). The bias gradient is a column sum, not a
        # product with a vector of ones; np.add.reduce is that sum without np.sum's Python-level
        # dispatch, which costs more than the sum itself for small layers.
        dw = {l: np.matmul(delta[l].T, cache.a[l - 1], out=ws.dw[l]) for l in self.layers}
        db = {l: np.add.reduce(delta[l], axis=0, out=ws.db[l]) for l in self.layers}
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
