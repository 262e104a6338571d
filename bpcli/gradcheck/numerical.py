"""The numerical side of a gradient check: derivatives of C from evaluations of C alone, in float64.

Three methods, none using a backward pass:

  central      g_i ~ (C(theta + h e_i) - C(theta - h e_i)) / 2h   entry by entry; error O(h^2) + noise / h
  complex      g_i ~ Im C(theta + i h e_i) / h                    entry by entry; nothing is subtracted, so
                                                                 h can be tiny and the error is ~eps_machine
  directional  g . v ~ (C(theta + h v) - C(theta - h v)) / 2h      a few random unit directions v per group
                                                                 (w^l or b^l): two evaluations each

What they produce, per parameter group, is a `Probes`: the entries (or directions) measured and their
numerical derivatives. Any number of gradients can be compared with the same probes: the reference and
the training path of one check share them.

Why the entry-by-entry methods are fast for a bpcli network (a subject whose `layered()` gives one). A
perturbation t of w^l_jk changes only z^l_j, and only by t a^(l-1)_k (of b^l_j: by t). Nothing below
layer l changes, and at layer l one column does:

    z^l_j'    = z^l_j + t a^(l-1)_k                         (one number per example)
    a^l_j'    = sigma(z^l_j')
    z^(l+1)'  = z^(l+1) + (a^l_j' - a^l_j) w^(l+1)[:, j]    (a rank-one change: no matrix product)

then layers l+2..L run as usual, with all perturbed copies of all examples stacked as the rows of one
matrix. Each (perturbation, example) row yields that example's cost C_x, and C of a perturbation is the
mean over the examples. An example with a^(l-1)_k = 0 (a blank MNIST pixel, a silent ReLU) keeps C_x
exactly, so its row is not computed: it would add exactly 0 to C(+) - C(-). Rows run in chunks that
bound memory, on a few threads. Any other subject is perturbed entry by entry through its `cost`.

ReLU kinks. In a network with ReLU hidden layers an entry is a kink when its perturbed forward pass
(+h or -h) moves some hidden z across 0 - any example, any layer from l up - compared with the
unperturbed pass: C is not differentiable within the step, so the entry is counted as a kink and kept
out of pass / fail. The perturbed z are the ones the check computes anyway, so the test is exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from bpcli.activations import Array, Sigmoid, Softmax
from bpcli.costs import CrossEntropy, Quadratic, _softplus
from bpcli.network import Cache, Network
from bpcli.threads import blas_threads, cpu_count

if TYPE_CHECKING:
    from bpcli.gradcheck.subject import Parameter, Subject

METHODS: tuple[str, ...] = ("central", "complex", "directional")

# Defaults, chosen by measurement on MNIST networks in float64 (784-30-10 up to 784-64-32-10, every
# activation and cost, 1 and 10 examples, h from 1e-4 down to 1e-7):
#   central: error ~ h^2 |C'''| / 6 (truncation) + ~eps_machine |C| / h (rounding in C(+) - C(-)).
#            Rounding dominates below h ~ 3e-5, truncation above; h = 1e-5 gives absolute errors
#            near 1e-11 and relative errors near 1e-8 for cross-entropy at initialization.
#   complex: nothing is subtracted, so h can be tiny: at 1e-30 the O(h^2) term is far below float64.
#   directional: as central (v has unit length, so h is the length of the step).
DEFAULT_EPS: dict[str, float] = {"central": 1e-5, "complex": 1e-30, "directional": 1e-5}
DEFAULT_RTOL: dict[str, float] = {"central": 1e-7, "complex": 1e-12, "directional": 1e-6}
# The default atol is ATOL_NOISE times the rounding noise expected in a numerical derivative,
# eps_machine * max(1, |C|) / h (complex step: without / h). The measured noise was 0.2 to 1 times it.
ATOL_NOISE = 10.0
DEFAULT_DIRECTIONS = 10

# Bytes of one chunk's perturbed activations: small enough to stay in cache (and bound memory), large
# enough that NumPy's per-call overhead does not matter.
CHUNK_BYTES = 4 * 2**20


def default_atol(method: str, h: float, cost: float) -> float:
    """ATOL_NOISE * eps_machine * max(1, |C|) / h, without / h for the complex step."""
    noise = float(np.finfo(np.float64).eps) * max(1.0, abs(cost))
    return ATOL_NOISE * noise / (1.0 if method == "complex" else h)


@dataclass
class Layered:
    """C(w, b) as a bpcli network in float64 at a fixed batch: x (m, n_1), y (m, n_L). A subject that
    offers one lets the numerical side restart the forward pass at layer l and report ReLU kinks."""

    net: Network
    x: Array
    y: Array


@dataclass
class Probes:
    """What the numerical side measured in one parameter group of shape `shape`: P entries (their flat
    indices; `directions` None) or P unit directions ((P, size) rows; `flat` None); the numerical
    derivative along each, (P,); and which are ReLU kinks, (P,)."""

    shape: tuple[int, ...]
    flat: Array | None
    directions: Array | None
    numerical: Array
    kink: Array

    def project(self, g: Array) -> Array:
        """The same P quantities of a gradient g of shape `shape`: its entries g_i, or g . v."""
        if self.directions is None:
            return g.ravel()[self.flat]
        return self.directions @ g.ravel()

    def position(self, i: int) -> tuple[int, int | None]:
        """Probe i as (j, k) of w^l_jk, (j, None) of b^l_j, or (direction number, None)."""
        if self.flat is None:
            return i, None
        if len(self.shape) == 1:
            return int(self.flat[i]), None
        j, k = np.unravel_index(int(self.flat[i]), self.shape)
        return int(j), int(k)


def probe(
    subject: Subject, method: str, h: float, entries: Literal["all"] | int, rng: np.random.Generator,
    workers: int | None = None, on_group: Callable[[str], None] | None = None,
) -> list[Probes]:
    """Numerical derivatives of the subject's C at its parameters: one `Probes` per parameter group.

    `entries`: "all", or N entries per group drawn at random (seeded by rng); for the directional
    method the number of random unit directions per group ("all": DEFAULT_DIRECTIONS). `on_group(name)`
    is called as each group starts (a check of a large batch takes minutes: the user sees where it is).
    """
    params = subject.parameters()
    layered = subject.layered()
    restart = None
    if layered is not None and method != "directional":
        restart = _Restart(layered.net, layered.net.forward(layered.x), layered.y)
    out: list[Probes] = []
    for i, p in enumerate(params):
        if on_group is not None:
            on_group(p.name)
        shape = tuple(p.value.shape)
        if method == "directional":
            n_dir = DEFAULT_DIRECTIONS if entries == "all" else int(entries)
            v = np.empty((n_dir, p.value.size))
            for d in range(n_dir):
                v[d] = rng.standard_normal(p.value.size)
                v[d] /= np.linalg.norm(v[d])
            if layered is not None:
                g_num, kink = _directional_layered(layered, p.l, p.kind, v, h)
            else:
                g_num, kink = _directional_generic(subject, params, i, v, h)
            out.append(Probes(shape, None, v, g_num, kink))
            continue
        flat = _sample(p.value.size, entries, rng)
        if restart is not None:
            if p.kind == "w":
                j, k = np.unravel_index(flat, shape)
                g_num, kink = restart.derivatives(p.l, j, k, method, h, workers)
            else:
                g_num, kink = restart.derivatives(p.l, flat, None, method, h, workers)
        else:
            g_num, kink = _entries_generic(subject, params, i, flat, method, h)
        out.append(Probes(shape, flat, None, g_num, kink))
    return out


def _sample(size: int, entries: Literal["all"] | int, rng: np.random.Generator) -> Array:
    """Flat indices of the entries to check: all of them, or a seeded random sample of N, in order."""
    if entries == "all" or entries >= size:
        return np.arange(size)
    return np.sort(rng.choice(size, size=int(entries), replace=False))


def numerical_entries(
    net: Network, x: Array, y: Array, l: int, j: Array, k: Array | None, method: str = "central",
    h: float | None = None, workers: int | None = None,
) -> tuple[Array, Array]:
    """dC/dw^l_jk for index arrays j, k (each (P,)), or dC/db^l_j when k is None, from forward
    evaluations of C only (float64); and the (P,) mask of entries whose step crosses a ReLU kink.
    method is "central" or "complex"."""
    if method not in ("central", "complex"):
        raise ValueError(f"numerical_entries computes central or complex-step derivatives, not {method!r}")
    net = net.astype(np.float64)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    h = DEFAULT_EPS[method] if h is None else h
    return _Restart(net, net.forward(x), y).derivatives(l, np.asarray(j), k if k is None else np.asarray(k),
                                                         method, h, workers)


# -- any subject: one evaluation of C per step ----------------------------------------------------------


def _entries_generic(
    subject: Subject, params: Sequence[Parameter], i: int, flat: Array, method: str, h: float
) -> tuple[Array, Array]:
    """Entry by entry through `subject.cost`: two evaluations per entry (one for the complex step)."""
    theta = [np.array(p.value, dtype=complex if method == "complex" else float) for p in params]
    t = theta[i].reshape(-1)  # a view: writing t[e] moves the entry inside theta[i]
    g_num = np.zeros(len(flat))
    for n, e in enumerate(flat):
        base = t[e]
        if method == "complex":
            t[e] = base + 1j * h
            g_num[n] = np.imag(subject.cost(theta)) / h
        else:
            t[e] = base + h
            c_plus = subject.cost(theta)
            t[e] = base - h
            g_num[n] = (c_plus - subject.cost(theta)) / (2 * h)
        t[e] = base
    return g_num, np.zeros(len(flat), dtype=bool)


def _directional_generic(
    subject: Subject, params: Sequence[Parameter], i: int, v: Array, h: float
) -> tuple[Array, Array]:
    """(C(theta + h v) - C(theta - h v)) / 2h through `subject.cost`, v moving parameter i only."""
    theta = [np.array(p.value, dtype=float) for p in params]
    base = theta[i].copy()
    g_num = np.zeros(len(v))
    for d in range(len(v)):
        theta[i] = base + h * v[d].reshape(base.shape)
        c_plus = subject.cost(theta)
        theta[i] = base - h * v[d].reshape(base.shape)
        g_num[d] = (c_plus - subject.cost(theta)) / (2 * h)
    return g_num, np.zeros(len(v), dtype=bool)


# -- a bpcli network: directions, restarted at layer l ---------------------------------------------------


def _directional_layered(layered: Layered, l: int, kind: str, v: Array, h: float) -> tuple[Array, Array]:
    """(C(theta + h v) - C(theta - h v)) / 2h for each unit direction v (the rows of `v`) in the space
    of w^l (or b^l) alone: two forward passes per direction, restarted at layer l."""
    net = layered.net
    base = net.forward(layered.x)
    shape = net.w[l].shape if kind == "w" else net.b[l].shape
    g_num = np.empty(len(v))
    kink = np.zeros(len(v), dtype=bool)
    for d in range(len(v)):
        step = h * v[d].reshape(shape)
        c_plus, crossed_plus = _cost_along(net, base, layered.y, l, kind, step)
        c_minus, crossed_minus = _cost_along(net, base, layered.y, l, kind, -step)
        g_num[d] = (c_plus - c_minus) / (2 * h)
        kink[d] = crossed_plus or crossed_minus
    return g_num, kink


def _cost_along(
    net: Network, base: Cache, y: Array, l: int, kind: Literal["w", "b"], step: Array
) -> tuple[float, bool]:
    """C with w^l (or b^l) moved by `step`, from the network's own forward pass restarted at layer l;
    and whether some ReLU input changed sign."""
    w, b = dict(net.w), dict(net.b)
    if kind == "w":
        w[l] = net.w[l] + step
    else:
        b[l] = net.b[l] + step
    moved = Network(net.sizes, w, b, net.hidden, net.output, net.cost)
    cache = moved.forward(base.a[1], start=l, cache=Cache(z=dict(base.z), a=dict(base.a)))
    crossed = any(
        bool(((cache.z[i] > 0) != (base.z[i] > 0)).any())
        for i in range(l, net.L + 1) if not net.sigma(i).analytic
    )
    return moved.cost_value(cache, y), crossed


# -- a bpcli network: entry by entry, restarted at layer l ----------------------------------------------


class _Restart:
    """The forward pass restarted at layer l, for many single-entry perturbations at once."""

    def __init__(self, net: Network, base: Cache, y: Array) -> None:
        self.net, self.base, self.y = net, base, y
        self.cost_rows = _cost_rows_for(net, base, y)
        # Contiguous w^T: gathering its rows, and multiplying by it, is several times faster than
        # going through the transposed view of w.
        self.w_T = {l: np.ascontiguousarray(net.w[l].T) for l in net.layers}
        self.relu = {l: not net.sigma(l).analytic for l in net.layers}  # layers with a kink at z = 0

    def derivatives(
        self, l: int, j: Array, k: Array | None, method: str, h: float, workers: int | None = None
    ) -> tuple[Array, Array]:
        """dC/dw^l_jk (or dC/db^l_j if k is None) for the (P,) index arrays, and the (P,) kink mask.

        central: the sum over examples of C_x(+h) - C_x(-h), / 2hm; complex: of Im C_x(ih), / hm.
        The entries are cut into blocks of about one chunk of rows each, which run on `workers`
        threads (NumPy releases the GIL in its loops) and fill their own slices of the result, so it
        does not depend on the scheduling and memory stays bounded however many entries there are.
        """
        m, P = len(self.y), len(j)
        a_prev = self.base.a[l - 1]
        steps = np.array([1j * h]) if method == "complex" else np.array([h, -h])
        itemsize = 16 if method == "complex" else 8
        chunk = max(1, CHUNK_BYTES // (len(steps) * max(self.net.sizes[l - 1:]) * itemsize))
        # Rows per entry: the examples whose z^l_j the entry moves at all (all m for a bias).
        rows = np.full(P, m) if k is None else np.count_nonzero(a_prev, axis=0)[k]
        block = (np.cumsum(rows) - 1) // chunk
        starts = sorted({0, *np.flatnonzero(np.diff(block, prepend=-1)).tolist(), P})
        g_num, kink = np.zeros(P), np.zeros(P, dtype=bool)
        denominator = (2 * h if method == "central" else h) * m

        def run(p0: int, p1: int) -> None:
            jj = j[p0:p1]
            if k is None:
                p, x = np.divmod(np.arange((p1 - p0) * m), m)
                coef = np.ones(len(p))                              # dz^l_j / db^l_j = 1
            else:
                kk = k[p0:p1]
                p, x = np.nonzero(a_prev[:, kk].T)
                coef = a_prev[x, kk[p]]                             # dz^l_j / dw^l_jk = a^(l-1)_k
            if len(p) == 0:
                return  # no example moves: C is unchanged, g_num stays exactly 0
            c, crossed = self.costs(l, jj[p], x, coef, steps)
            diff = c[0] - c[1] if method == "central" else c[0].imag
            g_num[p0:p1] = np.bincount(p, weights=diff, minlength=p1 - p0) / denominator
            kink[p0:p1] = np.bincount(p, weights=crossed, minlength=p1 - p0) > 0

        spans = list(zip(starts[:-1], starts[1:]))
        workers = min(cpu_count() if workers is None else workers, len(spans))
        # One BLAS thread per worker thread: the products here are thin (rows x n x n_L), and a BLAS that
        # spreads each over all cores while the workers also run was measured 5-8x slower on a busy 2-core
        # machine.
        with blas_threads(1):
            if workers > 1:
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(lambda span: run(*span), spans))
            else:
                for span in spans:
                    run(*span)
        return g_num, kink

    def costs(self, l: int, j: Array, x: Array, coef: Array, steps: Array) -> tuple[Array, Array]:
        """Per-example costs C_x with z^l_j moved by t * coef for each step t: shape (S, R) for S steps
        and R rows (j[r], x[r], coef[r]); and the rows that move some ReLU input across 0, (R,).

        The pass restarts at layer l: z^l_j' = z^l_j + t coef; for l < L the change reaches layer l+1
        as the rank-one update z^(l+1)' = z^(l+1) + (a^l_j' - a^l_j) w^(l+1)[:, j], and layers
        l+2..L then run on all S * R rows, one matrix product per layer.
        """
        net, base, L = self.net, self.base, self.net.L
        S, R = len(steps), len(j)
        kinks = np.zeros(R, dtype=bool)
        z_j = base.z[l][x, j]                                       # (R,)
        z_j_new = z_j + steps[:, None] * coef                       # (S, R)
        if self.relu[l]:
            kinks |= ((z_j_new.real > 0) != (z_j > 0)).any(axis=0)
        if l == L:
            # The output activation may mix a row (softmax), so rebuild whole rows of z^L.
            z = np.broadcast_to(base.z[L][x], (S, R, net.sizes[-1])).astype(z_j_new.dtype)
            z[:, np.arange(R), j] = z_j_new
        else:
            # Hidden activations are elementwise: of a^l only a^l_j changes, by da.
            da = net.sigma(l).value(z_j_new) - base.a[l][x, j]          # (S, R)
            z = da[:, :, None] * self.w_T[l + 1][j]                      # (S, R, n_(l+1))
            z += base.z[l + 1][x]
            for i in range(l + 1, L + 1):
                if self.relu[i]:
                    kinks |= ((z.real > 0) != (base.z[i][x] > 0)).any(axis=(0, 2))
                if i == L:
                    break
                a = net.sigma(i).value(z.reshape(S * R, -1))            # (S R, n_i)
                z = a @ self.w_T[i + 1]                                  # (S R, n_(i+1))
                z += net.b[i + 1]
                z = z.reshape(S, R, -1)
        z = z.reshape(S * R, -1)
        y = np.broadcast_to(self.y[x], (S, R, self.y.shape[1])).reshape(S * R, -1)
        return self.cost_rows(z, net.output.value(z), y).reshape(S, R), kinks


# -- per-example cost --------------------------------------------------------------------------------

# (z^L, a^L, y), each (R, n_L) -> C_x of each row, (R,)
CostRows = Callable[[Array, Array, Array], Array]


def _cost_rows_for(net: Network, base: Cache, y: Array) -> CostRows:
    """The network's per-example cost C_x, vectorized over rows, checked against `Network.cost_value`
    on the unperturbed batch.

    `Cost.value` returns only the batch mean, and the entry-by-entry check needs C_x for many
    perturbed copies at once; the formulas below are those of `bpcli.costs`. A cost this module does
    not know falls back to `Cost.value` one row at a time (correct, slow).
    """
    cost, output = net.cost, net.output
    rows: CostRows
    if isinstance(cost, Quadratic):
        def rows(z: Array, a: Array, y: Array) -> Array:
            d = a - y
            return 0.5 * np.sum(d * d, axis=1)
    elif isinstance(cost, CrossEntropy) and isinstance(output, Softmax):
        def rows(z: Array, a: Array, y: Array) -> Array:
            return -np.sum(y * output.log_value(z), axis=1)
    elif isinstance(cost, CrossEntropy) and isinstance(output, Sigmoid):
        def rows(z: Array, a: Array, y: Array) -> Array:
            return np.sum(y * _softplus(-z) + (1.0 - y) * _softplus(z), axis=1)
    else:
        def rows(z: Array, a: Array, y: Array) -> Array:
            return np.array([cost.value(z[i:i + 1], a[i:i + 1], y[i:i + 1], output) for i in range(len(z))])
    L = net.L
    mean = float(np.mean(rows(base.z[L], base.a[L], y)))
    expected = net.cost_value(base, y)
    if not math.isclose(mean, expected, rel_tol=1e-12, abs_tol=1e-300):
        raise RuntimeError(f"per-example {cost.name} cost {mean!r} disagrees with Cost.value {expected!r}")
    return rows
