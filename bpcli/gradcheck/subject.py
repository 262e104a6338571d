"""What a gradient check checks: a *subject*, one small protocol.

A subject is a differentiable cost at a fixed point: its parameter arrays theta (the point), C(theta)
for any theta near it, and the gradient it claims, dC/dtheta at the point. The checker compares that
gradient with numerical derivatives of C and never asks how the gradient was computed, so the same
comparison serves every way of computing it:

    ReferenceSubject   bpcli's `Network.backward` in float64, no workspace, scale 1: backprop as the
                       notes write it
    TrainingSubject    the same network as `Trainer.run_epoch` calls it: the config's dtype, a
                       `Workspace` sized for the configured batch and cut with `rows(k)` for a shorter
                       one, after a batch of other examples went through the same buffers, and
                       `scale` = the optimizer's gradient scale (eta for SGD and momentum) folded into
                       delta^L and divided back out here

C is always evaluated in float64 (parameters of a float32 subject are represented exactly), so the
numerical side keeps float64 precision whatever the subject computes in. Parameters are listed as in
`Network.params()`: w^2, b^2, w^3, b^3, ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from bpcli.activations import Array
from bpcli.config import TrainingConfig
from bpcli.gradcheck.numerical import Layered
from bpcli.gradcheck.rounding import Rounding, simulate
from bpcli.network import Network, Workspace
from bpcli.optim import Optimizer, learning_rate

# (dw, db) by layer l = 2..L, with the shapes of w[l] and b[l]: a gradient function under test.
GradientFn = Callable[[Network, Array, Array], tuple[dict[int, Array], dict[int, Array]]]


@dataclass
class Parameter:
    """One parameter group: w^l (shape (n_l, n_(l-1))) or b^l (shape (n_l,)), its value in float64."""

    name: str
    l: int
    kind: Literal["w", "b"]
    value: Array


class Subject(Protocol):
    """The protocol every checked gradient implements (bpcli's two paths now; learners' own networks
    later). Only `parameters`, `cost` and `gradient` are essential; the others may return None."""

    path: str    # how the report names it: "reference", "training", ...
    dtype: str   # what the gradient is computed in

    def parameters(self) -> list[Parameter]:
        """theta, the point the gradient is taken at, as float64 arrays."""

    def cost(self, theta: Sequence[Array]) -> float:
        """C at theta (arrays shaped as `parameters()`; complex for the complex step)."""

    def gradient(self) -> list[Array | None]:
        """The subject's dC/dtheta at the point, one array per parameter (None: none computed)."""

    def layered(self) -> Layered | None:
        """C as a bpcli network in float64, which makes the numerical side fast; or None."""

    def rounding(self, runs: int, rng: np.random.Generator) -> Rounding | None:
        """`runs` simulated deviations of the gradient that rounding in `dtype` could cause, from
        which the tolerance of a low-precision path is derived; None when it is float64."""


def backprop(net: Network, x: Array, y: Array) -> tuple[dict[int, Array], dict[int, Array]]:
    """The network's own gradient: one forward and one backward pass, no workspace, scale 1."""
    grads = net.backward(net.forward(x), y)
    return grads.dw, grads.db


class ReferenceSubject:
    """A bpcli network's C(w, b) on the batch (x, y), with `gradient` (default: `backprop`) in float64."""

    path = "reference"
    dtype = "float64"

    def __init__(self, net: Network, x: Array, y: Array, gradient: GradientFn | None = None) -> None:
        self.net = net.astype(np.float64)
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        self.gradient_fn = gradient or backprop

    def parameters(self) -> list[Parameter]:
        net = self.net
        return [Parameter(f"{kind}^{l}", l, kind, net.w[l] if kind == "w" else net.b[l])
                for l in net.layers for kind in ("w", "b")]

    def cost(self, theta: Sequence[Array]) -> float:
        net = self.net
        w = {l: theta[2 * i] for i, l in enumerate(net.layers)}
        b = {l: theta[2 * i + 1] for i, l in enumerate(net.layers)}
        moved = Network(net.sizes, w, b, net.hidden, net.output, net.cost)
        return moved.cost_value(moved.forward(self.x.astype(theta[0].dtype)), self.y)

    def gradient(self) -> list[Array | None]:
        dw, db = self.gradient_fn(self.net, self.x, self.y)
        return [_float64((dw if kind == "w" else db).get(l)) for l in self.net.layers for kind in ("w", "b")]

    def layered(self) -> Layered:
        return Layered(self.net, self.x, self.y)

    def rounding(self, runs: int, rng: np.random.Generator) -> None:
        return None


@dataclass(frozen=True)
class TrainingSetup:
    """What `Trainer.run_epoch` hands `Network.backward`, read from a config."""

    dtype: str         # training.dtype: parameters, batch and every buffer
    batch_size: int    # training.batch_size: the rows of the Workspace
    eta: float         # the learning rate of the first update (schedules start from it)
    optimizer: str     # training.optimizer.name
    scale: float       # Optimizer.gradient_scale(eta): backward computes scale * dC/dtheta

    @classmethod
    def from_config(cls, t: TrainingConfig) -> TrainingSetup:
        eta = learning_rate(t.schedule, t.learning_rate, 0, 1, max(1, t.epochs))
        scale = Optimizer(t.optimizer, [], [], 0.0).gradient_scale(eta)
        return cls(t.dtype, t.batch_size, float(eta), t.optimizer.name, float(scale))


class TrainingSubject:
    """A bpcli network's gradient computed the way training computes it (see the module docstring).

    The point is the network and batch in `setup.dtype`: convert them first if they are not (the
    checker does), so that the float64 C of `parameters` and `cost` is exactly the function the
    float32 pass approximates.
    """

    path = "training"

    def __init__(self, net: Network, x: Array, y: Array, setup: TrainingSetup, seed: int = 0) -> None:
        self.setup = setup
        self.dtype = str(np.dtype(setup.dtype))
        self.net = net.astype(self.dtype)
        self.x = np.asarray(x, dtype=self.dtype)
        self.y = np.asarray(y, dtype=self.dtype)
        self.seed = seed
        self.point = ReferenceSubject(self.net, self.x, self.y)  # C in float64 at the same point
        self.m = len(self.x)
        self.workspace_rows = max(setup.batch_size, self.m)

    def parameters(self) -> list[Parameter]:
        return self.point.parameters()

    def cost(self, theta: Sequence[Array]) -> float:
        return self.point.cost(theta)

    def layered(self) -> Layered:
        return self.point.layered()

    def previous_batch(self) -> tuple[Array, Array]:
        """A full batch of other examples (seeded random inputs in [0, 1), one-hot targets): in
        training the short last batch comes after full ones, which leave their z, a, delta, dw, db
        in the buffers, so a pass that reads or adds to what is left there goes wrong here too."""
        rng = np.random.default_rng([self.seed, 11])
        n_in, n_out = self.net.sizes[0], self.net.sizes[-1]
        x = rng.random((self.workspace_rows, n_in)).astype(self.dtype)
        y = np.eye(n_out, dtype=self.dtype)[rng.integers(0, n_out, self.workspace_rows)]
        return x, y

    def gradient(self) -> list[Array | None]:
        """dC/dtheta from `Network.backward(cache, y, workspace=ws.rows(m), scale=scale)` / scale."""
        net, scale = self.net, self.setup.scale
        workspace = Workspace(net, self.workspace_rows)
        x_prev, y_prev = self.previous_batch()
        net.backward(net.forward(x_prev, workspace=workspace), y_prev, workspace=workspace, scale=scale)
        ws = workspace.rows(self.m)
        grads = net.backward(net.forward(self.x, workspace=ws), self.y, workspace=ws, scale=scale)
        out: list[Array | None] = []
        for l in net.layers:
            for g in (grads.dw.get(l), grads.db.get(l)):
                out.append(None if g is None else _float64(g) / scale)
        return out

    def rounding(self, runs: int, rng: np.random.Generator) -> Rounding | None:
        if np.dtype(self.dtype) == np.float64:
            return None
        point = self.point
        return simulate(point.net, point.x, point.y, np.dtype(self.dtype), self.setup.scale, runs, rng)


def _float64(g: Array | None) -> Array | None:
    return None if g is None else np.asarray(g, dtype=np.float64)
