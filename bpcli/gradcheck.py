"""Gradient checking: backprop's dC/dw^l_jk and dC/db^l_j against derivatives of C computed from forward
evaluations of C alone. Pure compute: `check` returns plain data, `render.gradcheck` draws it.

C(w, b) = (1/m) sum_x C_x is the batch-mean cost of a fixed batch x (m, n_1) with targets y (m, n_L),
exactly what `Network.cost_value` computes; L2 decay and anything else outside C is not part of it.
Three numerical methods, none using the backward pass:

  central      g_i ~ (C(theta + h e_i) - C(theta - h e_i)) / 2h   entry by entry; error O(h^2) + noise / h
  complex      g_i ~ Im C(theta + i h e_i) / h                    entry by entry; nothing is subtracted, so
                                                                 h can be tiny and the error is ~eps_machine
  directional  g . v ~ (C(theta + h v) - C(theta - h v)) / 2h      a few random unit directions v per group
                                                                 (w^l or b^l): two forward passes each

Why the entry-by-entry methods are fast. A perturbation t of w^l_jk changes only z^l_j, and only by
t a^(l-1)_k (of b^l_j: by t). Nothing below layer l changes, and at layer l one column does:

    z^l_j'    = z^l_j + t a^(l-1)_k                         (one number per example)
    a^l_j'    = sigma(z^l_j')
    z^(l+1)'  = z^(l+1) + (a^l_j' - a^l_j) w^(l+1)[:, j]    (a rank-one change: no matrix product)

then layers l+2..L run as usual, with all perturbed copies of all examples stacked as the rows of one
matrix. Each (perturbation, example) row yields that example's cost C_x, and C of a perturbation is the
mean over the examples. An example with a^(l-1)_k = 0 (a blank MNIST pixel, a silent ReLU) keeps C_x
exactly, so its row is not computed: it would add exactly 0 to C(+) - C(-). Rows run in chunks that
bound memory, on a few threads.

Comparison. err = |g_bp - g_num| and rel = err / max(|g_bp|, |g_num|, atol / rtol); an entry passes
when rel <= rtol, which is the same as err <= rtol * max(|g_bp|, |g_num|) or err <= atol. The floor
atol / rtol keeps entries whose derivative is (near) zero from failing on rounding noise; an entry whose
derivative is exactly zero (a pixel that is 0 in every example) gets g_num = 0 exactly.

ReLU kinks. In a network with ReLU hidden layers an entry is a kink when its perturbed forward pass
(+h or -h) moves some hidden z across 0 - any example, any layer from l up - compared with the
unperturbed pass: C is not differentiable within the step, so the entry is counted as a kink and kept
out of pass / fail. The perturbed z are the ones the check computes anyway, so the test is exact.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from bpcli.activations import Array, Sigmoid, Softmax
from bpcli.costs import CrossEntropy, Quadratic, _softplus
from bpcli import checkpoint as checkpoint_module
from bpcli import config as config_module
from bpcli import resources
from bpcli.config import Config
from bpcli.data import load_mnist, one_hot
from bpcli.errors import UsageError
from bpcli.network import Cache, Network

Method = Literal["central", "complex", "directional"]
METHODS: tuple[str, ...] = ("central", "complex", "directional")

# (dw, db) by layer l = 2..L, with the shapes of w[l] and b[l].
GradientFn = Callable[[Network, Array, Array], tuple[dict[int, Array], dict[int, Array]]]

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


# -- results ---------------------------------------------------------------------------------------


@dataclass
class Worst:
    """The checked entry with the largest relative error: w^l_jk, or b^l_j (k is None). For the
    directional method j numbers the direction and k is None."""

    l: int
    j: int
    k: int | None
    backprop: float
    numerical: float


@dataclass
class GroupResult:
    """The comparison for one parameter group, w^l or b^l."""

    name: str                     # "w^2", "b^2", ...
    l: int
    kind: Literal["w", "b"]
    shape: tuple[int, ...]        # (n_l, n_(l-1)) or (n_l,)
    checked: int                  # entries (directional: directions) compared, kinks included
    max_grad: float               # max |g_bp| over the whole group
    rms_grad: float               # sqrt(mean g_bp^2) over the whole group
    max_abs_error: float          # over the checked entries that are not kinks
    max_rel_error: float          # likewise; rel as in the module docstring
    worst: Worst | None           # None when nothing but kinks was checked
    kinks: int = 0                # entries whose perturbation crosses a ReLU kink
    failures: int = 0             # entries with rel > rtol
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.failures == 0

    @property
    def verdict(self) -> Literal["pass", "fail", "kink"]:
        """fail if any entry fails; kink if none fails but kinks were kept out; else pass."""
        if self.failures:
            return "fail"
        return "kink" if self.kinks else "pass"


@dataclass
class GradcheckResult:
    method: str
    eps: float                    # h
    rtol: float
    atol: float
    atol_auto: bool               # atol is the default noise floor, not given
    cost: float                   # C at the checked point
    examples: int                 # m, the batch C averages over
    sizes: tuple[int, ...]
    groups: list[GroupResult]
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.groups)

    @property
    def failed_groups(self) -> list[str]:
        return [g.name for g in self.groups if not g.passed]

    @property
    def checked(self) -> int:
        return sum(g.checked for g in self.groups)

    @property
    def kinks(self) -> int:
        return sum(g.kinks for g in self.groups)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready data; non-finite floats become null."""
        groups = []
        for g in self.groups:
            d = asdict(g)
            d["shape"] = list(g.shape)
            d["passed"] = g.passed
            d["verdict"] = g.verdict
            groups.append(d)
        data = {
            "passed": self.passed,
            "method": self.method,
            "eps": self.eps,
            "rtol": self.rtol,
            "atol": self.atol,
            "atol_auto": self.atol_auto,
            "cost": self.cost,
            "examples": self.examples,
            "sizes": list(self.sizes),
            "checked": self.checked,
            "kinks": self.kinks,
            "failed_groups": self.failed_groups,
            "notes": list(self.notes),
            "groups": groups,
        }
        return _finite_or_none(data)  # type: ignore[return-value]


def _finite_or_none(v: object) -> object:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite_or_none(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite_or_none(x) for x in v]
    return v


# -- the check ---------------------------------------------------------------------------------------


def backprop(net: Network, x: Array, y: Array) -> tuple[dict[int, Array], dict[int, Array]]:
    """The network's own gradient: one forward and one backward pass."""
    grads = net.backward(net.forward(x), y)
    return grads.dw, grads.db


def check(
    net: Network,
    x: Array,
    y: Array,
    method: Method | str = "central",
    eps: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    entries: Literal["all"] | int = "all",
    seed: int = 0,
    gradient: GradientFn | None = None,
    workers: int | None = None,
) -> GradcheckResult:
    """Compare `gradient` (default: backprop) with numerical derivatives of C for the batch (x, y).

    x (m, n_1) and y (m, n_L), one example per row; the network is converted to float64. `entries` is
    "all" or a number N of entries per group drawn at random (seeded by `seed`); for the directional
    method it is the number of random directions per group ("all": DEFAULT_DIRECTIONS). eps, rtol and
    atol default to DEFAULT_EPS, DEFAULT_RTOL and `default_atol`. `workers` threads (default: the
    CPUs available) share the entry-by-entry work.
    """
    if method not in METHODS:
        raise UsageError(f"unknown gradcheck method {method!r}; use one of {', '.join(METHODS)}")
    h = DEFAULT_EPS[method] if eps is None else float(eps)
    rtol = DEFAULT_RTOL[method] if rtol is None else float(rtol)
    if not (math.isfinite(h) and h > 0):
        raise UsageError(f"--eps must be a positive number, got {eps}")
    if not (math.isfinite(rtol) and rtol > 0):
        raise UsageError(f"--rtol must be a positive number, got {rtol}")
    if atol is not None and not (math.isfinite(atol) and atol >= 0):
        raise UsageError(f"--atol must be a number >= 0, got {atol}")
    if entries != "all" and (isinstance(entries, bool) or not isinstance(entries, int) or entries < 1):
        raise UsageError(f"--entries must be 'all' or a positive whole number, got {entries!r}")
    if method == "complex":
        kinked = sorted({net.sigma(l).name for l in net.layers if not net.sigma(l).analytic})
        if kinked:
            raise UsageError(
                f"--method complex needs analytic activations, and {', '.join(kinked)} is not (it has a kink "
                "and no complex extension); use --method central or directional, which report ReLU kinks"
            )

    net = net.astype(np.float64)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != net.sizes[0] or y.shape != (len(x), net.sizes[-1]) or len(x) == 0:
        raise UsageError(
            f"data of shape x {x.shape}, y {y.shape} does not fit layers {list(net.sizes)}: "
            f"need x (m, {net.sizes[0]}) and y (m, {net.sizes[-1]}) with m >= 1"
        )
    base = net.forward(x)
    cost = net.cost_value(base, y)
    atol_auto = atol is None
    atol = default_atol(method, h, cost) if atol is None else float(atol)
    dw, db = (gradient or backprop)(net, x, y)

    restart = _Restart(net, base, y) if method != "directional" else None
    rng = np.random.default_rng(seed)
    groups: list[GroupResult] = []
    for l, kind in _groups(net):
        param = net.w[l] if kind == "w" else net.b[l]
        g = (dw if kind == "w" else db).get(l)
        g = None if g is None else np.asarray(g, dtype=np.float64)
        if g is None or g.shape != param.shape:
            groups.append(_misshapen(l, kind, param.shape, g))
        elif restart is None:
            n_dir = DEFAULT_DIRECTIONS if entries == "all" else int(entries)
            groups.append(_directional_group(net, base, y, l, kind, g, n_dir, h, rtol, atol, rng))
        else:
            flat = _sample(param.size, entries, rng)
            groups.append(_entry_group(restart, l, kind, g, flat, method, h, rtol, atol, workers))
    notes: list[str] = []
    if any(not net.sigma(l).analytic for l in net.layers):
        notes.append("ReLU network: entries whose step moves a hidden z^l across 0 are kinks, kept out of pass/fail")
    return GradcheckResult(method, h, rtol, atol, atol_auto, cost, len(x), net.sizes, groups, notes)


def load_subject(
    config_path: str | Path | None, overrides: list[str], checkpoint: str | Path | None, seed: int | None
) -> tuple[Config, Network, int, str]:
    """The config, the network to check, the seed and a phrase saying where the network came from.

    Without a checkpoint: the config's initialization, seeded by `seed` (default training.seed). With
    one: its trained parameters, and for the rest (data.path, training.l2) CONFIG if given, else the
    stored config; `--set` may change anything but the model, which the stored parameters fix.
    """
    if seed is not None and seed < 0:
        # NumPy seeds are non-negative; say so here rather than let default_rng raise a ValueError.
        raise UsageError(f"--seed {seed}: must be a whole number >= 0")
    if checkpoint is None:
        if config_path is None:
            raise UsageError("gradcheck needs a CONFIG file or --checkpoint CKPT")
        cfg = config_module.load(config_path, overrides)
        seed = cfg.training.seed if seed is None else seed
        resources.check_network(cfg.model.layers, "float64")  # before NumPy sees a size like 10^12
        net = Network.from_config(cfg.model, seed, "float64")
        return cfg, net, seed, f"network {list(net.sizes)} initialized from {config_path} ({cfg.model.init}, seed {seed})"
    ckpt = checkpoint_module.load(checkpoint)
    if config_path is not None:
        cfg = config_module.load(config_path, overrides)
    else:
        cfg = config_module.loads(ckpt.config.to_yaml(), source=f"{checkpoint} (stored config)",
                                  overrides=overrides, name=ckpt.config.name)
    if cfg.model != ckpt.config.model:
        raise UsageError(f"{checkpoint} holds a different model than the config describes "
                         f"(layers {list(ckpt.config.model.layers)}, {ckpt.config.model.activation}); "
                         "model.* cannot change with --checkpoint")
    seed = cfg.training.seed if seed is None else seed
    return cfg, ckpt.network, seed, f"network from checkpoint {checkpoint} (epoch {ckpt.epoch})"


def batch_for(
    sizes: tuple[int, ...], output: str, m: int, seed: int, mnist_dir: str | Path | None
) -> tuple[Array, Array, str]:
    """A batch to check on: x (m, n_1), y (m, n_L) in float64, and a description of it.

    With `mnist_dir`, the first m images of the MNIST test set (pixels in [0, 1], one-hot digits);
    without, seeded random x in [0, 1) and targets that suit the output layer: one-hot for softmax,
    values in (0, 1) for sigmoid, standard normal for identity.
    """
    n_in, n_out = sizes[0], sizes[-1]
    if m < 1:
        raise UsageError(f"--batch {m}: must be at least 1")
    # Before any array of m rows exists: --batch 100000000 is refused in one line, not a MemoryError.
    resources.check_gradcheck(sizes, m)
    if mnist_dir is None:
        rng = np.random.default_rng(seed)
        x = rng.random((m, n_in))
        if output == "softmax":
            y = one_hot(rng.integers(0, n_out, m), n_out, np.float64)
        elif output == "sigmoid":
            y = rng.uniform(0.05, 0.95, (m, n_out))
        else:
            y = rng.standard_normal((m, n_out))
        return x, y, f"{m} random example{'s' * (m != 1)} (seed {seed})"
    # validation_size and limit of 1 keep the loader from converting the 60,000 training images.
    ds = load_mnist(mnist_dir, validation_size=1, limit=1, dtype="float64")
    test = ds.test
    if m > len(test):
        raise UsageError(f"--batch {m}: the test set of {mnist_dir} has only {len(test):,} examples")
    if test.x.shape[1] != n_in or test.y.shape[1] != n_out:
        raise UsageError(
            f"{mnist_dir} has inputs of {test.x.shape[1]} pixels and {test.y.shape[1]} classes, but the network's "
            f"layers are {list(sizes)}; use --random-data, or layers [{test.x.shape[1]}, ..., {test.y.shape[1]}]"
        )
    return test.x[:m], test.y[:m], f"the first {m} MNIST test example{'s' * (m != 1)} ({mnist_dir})"


def _groups(net: Network) -> Iterator[tuple[int, Literal["w", "b"]]]:
    """w^2, b^2, w^3, b^3, ...: the order of `Network.params`."""
    for l in net.layers:
        yield l, "w"
        yield l, "b"


def _sample(size: int, entries: Literal["all"] | int, rng: np.random.Generator) -> Array:
    """Flat indices of the entries to check: all of them, or a seeded random sample of N, in order."""
    if entries == "all" or entries >= size:
        return np.arange(size)
    return np.sort(rng.choice(size, size=int(entries), replace=False))


def _misshapen(l: int, kind: Literal["w", "b"], shape: tuple[int, ...], g: Array | None) -> GroupResult:
    """A group whose gradient is missing or has the wrong shape: failed without comparing."""
    got = "no gradient" if g is None else f"gradient of shape {g.shape}"
    size = math.prod(shape)
    return GroupResult(f"{kind}^{l}", l, kind, tuple(shape), size, math.nan, math.nan, math.inf, math.inf,
                       None, failures=size, note=f"{got}, expected {tuple(shape)}")


def _summary(
    l: int, kind: Literal["w", "b"], g: Array, g_bp: Array, g_num: Array, kink: Array,
    rtol: float, atol: float, position: Callable[[int], tuple[int, int | None]],
) -> GroupResult:
    """Errors of the checked entries (g_bp, g_num, kink: each (P,)) summarized for the group g."""
    err = np.abs(g_bp - g_num)
    scale = np.maximum(np.abs(g_bp), np.abs(g_num))
    floor = atol / rtol
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = err / np.maximum(scale, floor)
    rel = np.where(err == 0, 0.0, rel)              # an exactly zero derivative matched exactly (0/0)
    rel = np.where(np.isnan(rel), np.inf, rel)      # a NaN anywhere is a failure
    ok = ~kink
    failures = int((ok & ~(rel <= rtol)).sum())
    worst = None
    if ok.any():
        i = int(np.argmax(np.where(ok, rel, -1.0)))
        j, k = position(i)
        worst = Worst(l, j, k, float(g_bp[i]), float(g_num[i]))
    return GroupResult(
        name=f"{kind}^{l}", l=l, kind=kind, shape=tuple(g.shape), checked=len(g_bp),
        max_grad=float(np.abs(g).max(initial=0.0)), rms_grad=float(np.sqrt(np.mean(g * g))),
        max_abs_error=float(err[ok].max(initial=0.0)), max_rel_error=float(rel[ok].max(initial=0.0)),
        worst=worst, kinks=int(kink.sum()), failures=failures,
    )


# -- entry by entry: central differences and complex step ---------------------------------------------


def _entry_group(
    restart: _Restart, l: int, kind: Literal["w", "b"], g: Array, flat: Array, method: str, h: float,
    rtol: float, atol: float, workers: int | None,
) -> GroupResult:
    """Numerical dC/dw^l_jk (or dC/db^l_j) for the flat indices `flat` of the group, compared with g."""
    if kind == "w":
        j, k = np.unravel_index(flat, g.shape)
    else:
        j, k = flat, None
    g_num, kink = restart.derivatives(l, j, k, method, h, workers)

    def position(i: int) -> tuple[int, int | None]:
        return int(j[i]), (None if k is None else int(k[i]))

    return _summary(l, kind, g, g.ravel()[flat], g_num, kink, rtol, atol, position)


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
        workers = min(_available_cpus() if workers is None else workers, len(spans))
        with _single_threaded_blas():
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


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """One BLAS thread per worker thread: the products here are thin (rows x n x n_L), and a BLAS
    that spreads each over all cores while the workers also run was measured 5-8x slower on a busy
    2-core machine. Without threadpoolctl, BLAS keeps its own setting."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


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


# -- directional ----------------------------------------------------------------------------------------


def _directional_group(
    net: Network, base: Cache, y: Array, l: int, kind: Literal["w", "b"], g: Array, n_dir: int,
    h: float, rtol: float, atol: float, rng: np.random.Generator,
) -> GroupResult:
    """g . v against (C(theta + h v) - C(theta - h v)) / 2h for n_dir random unit directions v in the
    space of w^l (or b^l) alone: two forward passes per direction, restarted at layer l."""
    g_dot_v = np.empty(n_dir)
    g_num = np.empty(n_dir)
    kink = np.zeros(n_dir, dtype=bool)
    for i in range(n_dir):
        v = rng.standard_normal(g.shape)
        v /= np.linalg.norm(v)
        g_dot_v[i] = float(np.sum(g * v))
        c_plus, crossed_plus = _cost_along(net, base, y, l, kind, h * v)
        c_minus, crossed_minus = _cost_along(net, base, y, l, kind, -h * v)
        g_num[i] = (c_plus - c_minus) / (2 * h)
        kink[i] = crossed_plus or crossed_minus

    def position(i: int) -> tuple[int, int | None]:
        return i, None

    return _summary(l, kind, g, g_dot_v, g_num, kink, rtol, atol, position)


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
