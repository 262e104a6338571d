"""Learners' networks as gradient-check subjects: C and the gradient come from *their* code.

    BookSubject      C = (1/m) sum_x C_x with C_x = cost.fn(a^L, y) (or 1/2 ||a^L - y||^2 when the
                     network has no `cost`), a^L = their feedforward(x); the gradient is the mean over
                     the batch of their backprop(x, y), one example at a time, as their training uses it
    FunctionSubject  C = loss(params, x, y) and the gradient grad(params, x, y), on the whole batch

Both evaluate C by writing theta into the learner's own parameter arrays (a complex theta, which no
float array can hold, by lending them complex arrays in their place) and put every original array
object and every bit of its value back after each evaluation, so a check leaves their network exactly
as it found it. Parameters are reported as bpcli's groups w^2, b^2, ..., w^L, b^L: a bias (n,) or
(n, 1) is the group b^l of shape (n,); a function-style weight stored as (n_(l-1), n_l) (for x @ W)
keeps that shape, and `transposed` says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bpcli.activations import Array
from bpcli.errors import UsageError
from bpcli.gradcheck.numerical import Layered
from bpcli.gradcheck.subject import Parameter
from bpcli.gradcheck.user_load import Model, call

ComplexWarning = getattr(np, "exceptions", np).ComplexWarning


@dataclass
class Slot:
    """Where group w^l or b^l lives in the learner's structure: `get`/`put` read and replace it."""

    name: str
    l: int
    kind: str
    where: str            # how their code names it: "weights[0]", "params['W1']"
    shape: tuple[int, ...]  # their array's shape
    transposed: bool = False


class UserSubject:
    """What the two protocols share: the slots, lending arrays, and restoring them bitwise."""

    path = "yours"
    dtype = "float64"
    slots: list[Slot]

    def __init__(self, model: Model, x: Array, y: Array) -> None:
        self.model = model
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        self.m = len(self.x)
        self.originals: list[Array] = []   # their array objects
        self.saved: list[Array] = []       # copies of their values, for bitwise restoration
        self.notes: list[str] = []

    # -- storage: subclasses say where the i-th array lives ---------------------------------------------
    def _get(self, i: int) -> Any:
        raise NotImplementedError

    def _put(self, i: int, value: Any) -> None:
        raise NotImplementedError

    def _remember(self) -> None:
        self.originals = [self._get(i) for i in range(len(self.slots))]
        for s, a in zip(self.slots, self.originals):
            if not isinstance(a, np.ndarray):
                raise UsageError(f"{self.model.name}: {s.where} is a {type(a).__name__}, not a NumPy array")
            if a.shape != s.shape:
                raise UsageError(f"{self.model.name}: {s.where} has shape {a.shape}, but layers "
                                 f"{list(self.model.sizes)} need {s.shape} for {s.name}")
            if not np.issubdtype(a.dtype, np.floating):
                raise UsageError(f"{self.model.name}: {s.where} holds {a.dtype}, not floating-point numbers")
        self.saved = [a.copy() for a in self.originals]

    def restore(self) -> None:
        """Their original array objects back in place, holding exactly their original bits."""
        for i, (a, v) in enumerate(zip(self.originals, self.saved)):
            self._put(i, a)
            np.copyto(a, v)

    def parameters(self) -> list[Parameter]:
        return [Parameter(s.name, s.l, s.kind, np.array(v, dtype=np.float64).reshape(self._group_shape(s)))
                for s, v in zip(self.slots, self.saved)]

    @staticmethod
    def _group_shape(s: Slot) -> tuple[int, ...]:
        return (s.shape[0] * (s.shape[1] if len(s.shape) > 1 else 1),) if s.kind == "b" else s.shape

    def _lend(self, theta: Sequence[Array]) -> None:
        """theta into their arrays: in place when they can hold it exactly, else arrays lent for the call."""
        for i, (s, a, t) in enumerate(zip(self.slots, self.originals, theta)):
            t = np.asarray(t).reshape(s.shape)
            if a.dtype == np.float64 and not np.iscomplexobj(t) and a.flags.writeable:
                np.copyto(a, t)
                self._put(i, a)
            else:
                self._put(i, t.copy())

    def cost(self, theta: Sequence[Array]) -> complex | float:
        self._lend(theta)
        try:
            return self._cost()
        finally:
            self.restore()

    def _cost(self) -> complex | float:
        raise NotImplementedError

    def gradient(self) -> list[Array | None]:
        try:
            raw = self._gradient()
        finally:
            self.restore()  # a backprop that writes into the weights must not change the next check
        out: list[Array | None] = []
        for s, g in zip(self.slots, raw):
            g = np.asarray(g, dtype=np.float64) if _numeric(g) else None
            if g is not None and s.kind == "b" and g.size == s.shape[0] and g.ndim <= 2 and min(g.shape, default=1) == 1:
                g = g.reshape(-1)  # (n,) and (n, 1) are the same bias gradient
            if g is not None and not np.isfinite(g).all():
                self.notes.append(f"{s.name} ({s.where}): the gradient your code returned has "
                                  f"{int((~np.isfinite(g)).sum())} non-finite entries (NaN or inf)")
            out.append(g)
        return out

    def _gradient(self) -> list[Any]:
        raise NotImplementedError

    def layered(self) -> Layered | None:
        return None

    def rounding(self, runs: int, rng: np.random.Generator) -> None:
        return None

    def complex_support(self) -> str | None:
        """None if C of complex parameters carries the derivative in its imaginary part (so the complex
        step works), else why not: compared along one random direction with central differences."""
        rng = np.random.default_rng(7)
        theta = [p.value for p in self.parameters()]
        v = [rng.standard_normal(t.shape) for t in theta]
        norm = np.sqrt(sum(float(np.sum(d * d)) for d in v))
        v = [d / norm for d in v]
        h = 1e-5
        central = (float(np.real(self.cost([t + h * d for t, d in zip(theta, v)])))
                   - float(np.real(self.cost([t - h * d for t, d in zip(theta, v)])))) / (2 * h)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", ComplexWarning)
                c = self.cost([t + 1e-30j * d for t, d in zip(theta, v)])
        except Exception as e:  # noqa: BLE001 - any failure on complex input is a reason to fall back
            cause = e.error if hasattr(e, "error") else e
            return f"your code raised {type(cause).__name__} on complex parameters ({str(cause)[:80]})"
        if not np.iscomplexobj(c) or np.imag(c) == 0:
            return ("your cost came back real for complex parameters (abs, np.linalg.norm, float() or "
                    "writing into a float array drops the imaginary part)")
        step = float(np.imag(c)) / 1e-30
        if not np.isclose(step, central, rtol=1e-5, atol=1e-8):
            return (f"along a random direction the complex step gives {step:.6e} but central differences "
                    f"{central:.6e} (abs, max or comparisons in your code are not analytic)")
        return None


def _numeric(g: Any) -> bool:
    try:
        return np.asarray(g).dtype.kind in "fiuc" and np.asarray(g).dtype.kind != "c"
    except Exception:  # noqa: BLE001
        return False


class BookSubject(UserSubject):
    """A network with `weights`, `biases`, `feedforward(a)` and `backprop(x, y)` (see module docstring).
    Examples go in as column vectors (n, 1) when the biases are (n, 1), as vectors (n,) when they are (n,)."""

    def __init__(self, model: Model, x: Array, y: Array) -> None:
        super().__init__(model, x, y)
        net, sizes = model.obj, model.sizes
        weights, biases = net.weights, net.biases
        if len(weights) != len(sizes) - 1 or len(biases) != len(sizes) - 1:
            raise UsageError(f"{model.name}: {len(weights)} weight and {len(biases)} bias arrays, but sizes "
                             f"{list(sizes)} have {len(sizes) - 1} layers of parameters")
        self.column = np.ndim(biases[0]) == 2
        self.slots = []
        for i, l in enumerate(range(2, len(sizes) + 1)):
            n = sizes[l - 1]
            self.slots.append(Slot(f"w^{l}", l, "w", f"weights[{i}]", (n, sizes[l - 2])))
            self.slots.append(Slot(f"b^{l}", l, "b", f"biases[{i}]", (n, 1) if np.ndim(biases[i]) == 2 else (n,)))
        self._remember()
        self.has_cost = hasattr(net, "cost") and hasattr(net.cost, "fn")

    def _get(self, i: int) -> Any:
        return (self.model.obj.weights if i % 2 == 0 else self.model.obj.biases)[i // 2]

    def _put(self, i: int, value: Any) -> None:
        (self.model.obj.weights if i % 2 == 0 else self.model.obj.biases)[i // 2] = value

    def example(self, i: int) -> tuple[Array, Array]:
        """Example i of the batch as their code takes it: columns (n, 1), or vectors (n,); copies, since
        their code may change its input in place (`a /= 1.5`), which changed the batch under every later
        evaluation of C and failed a correct backprop."""
        if self.column:
            return self.x[i].reshape(-1, 1).copy(), self.y[i].reshape(-1, 1).copy()
        return self.x[i].copy(), self.y[i].copy()

    def output(self, i: int) -> Array:
        """a^L for example i from their feedforward, checked for shape."""
        x, _ = self.example(i)
        a = np.asarray(call("feedforward", self.model.obj.feedforward, x))
        n_out = self.model.sizes[-1]
        if a.size != n_out:
            raise UsageError(f"{self.model.name}: feedforward returned shape {a.shape} for an input of shape "
                             f"{x.shape}, expected {n_out} outputs (biases {self.slots[1].shape} broadcast "
                             f"against {x.shape}?)")
        return a.reshape((n_out, 1) if self.column else (n_out,))

    def cost_x(self, a: Array, y: Array) -> Any:
        if self.has_cost:
            return call("cost.fn", self.model.obj.cost.fn, a, y)
        d = a - y
        return 0.5 * np.sum(d * d)  # not norm(): squaring keeps a complex step's imaginary part

    def _cost(self) -> complex | float:
        total = sum(self.cost_x(self.output(i), self.example(i)[1]) for i in range(self.m))
        return _scalar(total, "the cost") / self.m

    def _gradient(self) -> list[Any]:
        L = len(self.model.sizes)
        sums: list[Any] = [0.0] * (2 * (L - 1))
        for i in range(self.m):
            x, y = self.example(i)
            nabla_b, nabla_w = self._structure(call("backprop", self.model.obj.backprop, x, y))
            for n in range(L - 1):
                sums[2 * n] = sums[2 * n] + np.asarray(nabla_w[n], dtype=np.float64)
                sums[2 * n + 1] = sums[2 * n + 1] + np.asarray(nabla_b[n], dtype=np.float64)
        return [s / self.m for s in sums]

    def _structure(self, result: Any) -> tuple[list[Any], list[Any]]:
        """(nabla_b, nabla_w), each one array per layer, or one clear line saying what came back instead."""
        L1 = len(self.model.sizes) - 1
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            got = f"a {type(result).__name__}" + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
            raise UsageError(f"{self.model.name}: backprop(x, y) returned {got}; expected a pair "
                             f"(nabla_b, nabla_w) of lists of {L1} arrays")
        nabla_b, nabla_w = result
        for what, part in (("nabla_b", nabla_b), ("nabla_w", nabla_w)):
            if not isinstance(part, (list, tuple)) or len(part) != L1 or not all(_numeric(p) for p in part):
                got = f"{len(part)} items" if isinstance(part, (list, tuple)) else f"a {type(part).__name__}"
                raise UsageError(f"{self.model.name}: backprop's {what} is {got}; expected a list of {L1} "
                                 "arrays, one per layer l = 2..L")
        w_shapes = [s.shape for s in self.slots[0::2]]
        b_shapes = [s.shape for s in self.slots[1::2]]
        if [np.shape(p) for p in nabla_b] == w_shapes != b_shapes:
            raise UsageError(f"{self.model.name}: backprop returned (nabla_w, nabla_b); the order is "
                             "(nabla_b, nabla_w)")
        return list(nabla_b), list(nabla_w)


class FunctionSubject(UserSubject):
    """loss(params, x, y) and grad(params, x, y) on the whole batch, params as init_params made them."""

    def __init__(self, model: Model, x: Array, y: Array) -> None:
        super().__init__(model, x, y)
        self.keys = _leaves(model.params)
        # slot i (w^2, b^2, ...) is leaf _order[i] of params
        self.slots, self._order = _assign(model, [(k, _at(model.params, k)) for k in self.keys])
        self._remember()

    def _get(self, i: int) -> Any:
        return _at(self.model.params, self.keys[self._order[i]])

    def _put(self, i: int, value: Any) -> None:
        _set(self.model.params, self.keys[self._order[i]], value)

    def _cost(self) -> complex | float:
        return _scalar(call("loss", self.model.obj.loss, self.model.params, self.x, self.y), "loss")

    def _gradient(self) -> list[Any]:
        g = call("grad", self.model.obj.grad, self.model.params, self.x, self.y)
        keys = _leaves(g) if isinstance(g, (dict, list, tuple)) else None
        if keys is None or sorted(map(repr, keys)) != sorted(map(repr, self.keys)):
            kind = type(self.model.params).__name__
            raise UsageError(f"{self.model.name}: grad(params, x, y) returned {_describe(g)}; expected the "
                             f"structure of params (a {kind} with {_describe(self.model.params)[2:]})")
        return [_at(g, self.keys[i]) for i in self._order]


def _scalar(value: Any, what: str) -> complex | float:
    a = np.asarray(value)
    if a.size != 1 or a.dtype.kind not in "fiuc":
        raise UsageError(f"{what} returned {_describe(value)}; expected one number")
    v = a.reshape(()).item()
    return v if isinstance(v, complex) else float(v)


def _describe(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"an array of shape {v.shape}"
    if isinstance(v, dict):
        return f"a dict with keys {', '.join(map(str, list(v)[:8]))}"
    if isinstance(v, (list, tuple)):
        return f"a {type(v).__name__} of {len(v)} items"
    return f"a {type(v).__name__}"


Key = tuple[Any, ...]


def _leaves(tree: Any, prefix: Key = ()) -> list[Key]:
    """Paths to the arrays of a dict / list / tuple structure, in its own order."""
    if isinstance(tree, dict):
        return [k for key in tree for k in _leaves(tree[key], prefix + (key,))]
    if isinstance(tree, (list, tuple)):
        return [k for i, item in enumerate(tree) for k in _leaves(item, prefix + (i,))]
    return [prefix]


def _at(tree: Any, key: Key) -> Any:
    for k in key:
        tree = tree[k]
    return tree


def _set(tree: Any, key: Key, value: Any) -> None:
    for k in key[:-1]:
        tree = tree[k]
    if isinstance(tree, tuple):
        raise UsageError("params holds a tuple, which cannot be changed in place; use a list or a dict")
    tree[key[-1]] = value


def _name(key: Key) -> str:
    return "params" + "".join(f"[{k!r}]" for k in key)


def _assign(model: Model, leaves: list[tuple[Key, Any]]) -> tuple[list[Slot], list[int]]:
    """Each array of params to the first free group it fits, in the order w^2, b^2, w^3, b^3, ...:
    a weight (n_l, n_(l-1)) or (n_(l-1), n_l), a bias of n_l entries ((n,), (n, 1) or (1, n))."""
    sizes = model.sizes
    free = [(l, kind) for l in range(2, len(sizes) + 1) for kind in ("w", "b")]
    taken: dict[tuple[int, str], tuple[int, Slot]] = {}
    for index, (key, a) in enumerate(leaves):
        shape = np.shape(a)
        for l, kind in free:
            n, n_prev = sizes[l - 1], sizes[l - 2]
            if kind == "w" and shape in ((n, n_prev), (n_prev, n)):
                slot = Slot(f"w^{l}", l, "w", _name(key), shape, transposed=shape != (n, n_prev))
            elif kind == "b" and shape in ((n,), (n, 1), (1, n)):
                slot = Slot(f"b^{l}", l, "b", _name(key), shape)
            else:
                continue
            free.remove((l, kind))
            taken[(l, kind)] = (index, slot)
            break
        else:
            raise UsageError(f"{model.name}: {_name(key)} has shape {shape}, which fits no weight or bias of "
                             f"layers {list(sizes)} (w^l: (n_l, n_(l-1)) or its transpose, b^l: n_l entries)")
    if free:
        l, kind = free[0]
        raise UsageError(f"{model.name}: init_params gave no array for {kind}^{l} of layers {list(sizes)}")
    ordered = [taken[(l, kind)] for l in range(2, len(sizes) + 1) for kind in ("w", "b")]
    return [s for _, s in ordered], [i for i, _ in ordered]
