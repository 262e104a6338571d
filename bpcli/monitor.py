"""How fast each layer learns: per-layer statistics gathered while training, from the buffers the
forward and backward passes already fill.

For each layer l = 2..L and epoch:

    grad_rms_w   RMS of dC/dw^l  (sqrt(mean over entries of (dC/dw^l_jk)^2)): the speed of learning
    grad_rms_b   RMS of dC/db^l
    weight_norm  ||w^l|| (Frobenius) at the end of the epoch
    update_ratio ||Δw^l|| / ||w^l|| for one update: how much an optimizer step changes the layer
    saturated    hidden sigmoid/tanh layers: the share of activations with |z| >= SATURATION[sigma],
                 where sigma'(z) has fallen below ~3% of its largest value
    dead         hidden ReLU layers: the share of units with z <= 0 on every example seen in the epoch

Cost: the statistics are taken on every k-th batch (about SAMPLES per epoch), so they add a few norms
of arrays that are already in memory to one batch in k; the gradient RMS averages the sampled batches'
squared gradients. The backward pass may compute a multiple `scale` of the gradient (eta folded into
delta^L for SGD and momentum); that factor is divided back out here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bpcli.network import Cache, Grads, Network

Array = np.ndarray

SAMPLES = 32  # batches sampled per epoch
SATURATION = {"sigmoid": 5.0, "tanh": 2.5}  # sigma'(5)/sigma'(0) = 0.027; tanh'(2.5) = 0.027


@dataclass
class LayerStats:
    """One layer's statistics for one epoch (see the module docstring); None where they do not apply."""

    l: int
    n: int
    grad_rms_w: float
    grad_rms_b: float
    weight_norm: float
    update_ratio: float
    saturated: float | None = None
    dead: float | None = None


class LayerMonitor:
    """Accumulates LayerStats over an epoch: `sample(batch)` says whether a batch is looked at; for a
    sampled batch call `forward(cache)`, `backward(grads, scale)` and, around the optimizer step,
    `before_step()` and `after_step()`; `epoch_stats()` returns the epoch's rows and starts the next.
    An epoch resumed from a checkpoint has statistics of the batches after the resume only."""

    def __init__(self, net: Network, steps_per_epoch: int) -> None:
        self.net = net
        self.every = max(1, steps_per_epoch // SAMPLES)
        self.hidden = net.hidden.name
        self.start_epoch()

    def start_epoch(self) -> None:
        """Forget what was gathered so far (a new epoch, or an epoch resumed from a checkpoint)."""
        layers = self.net.layers
        self.sq_w = {l: 0.0 for l in layers}
        self.sq_b = {l: 0.0 for l in layers}
        self.ratio = {l: 0.0 for l in layers}
        self.saturated = {l: 0 for l in layers}
        self.values = {l: 0 for l in layers}
        self.active = {l: np.zeros(self.net.sizes[l - 1], dtype=bool) for l in layers}
        self.batches = 0
        self._w_before: dict[int, Array] = {}

    def sample(self, batch: int) -> bool:
        return batch % self.every == 0

    def forward(self, cache: Cache) -> None:
        """Saturation (sigmoid, tanh) or activity (ReLU) of the hidden layers' z^l, shape (m, n_l)."""
        for l in self.net.layers[:-1]:
            z = cache.z[l]
            if self.hidden in SATURATION:
                self.saturated[l] += int(np.count_nonzero(np.abs(z) >= SATURATION[self.hidden]))
                self.values[l] += z.size
            elif self.hidden == "relu":
                self.active[l] |= (z > 0).any(axis=0)

    def backward(self, grads: Grads, scale: float) -> None:
        """Squared norms of dC/dw^l and dC/db^l; the buffers hold `scale` times the gradient."""
        for l in self.net.layers:
            dw, db = grads.dw[l].ravel(), grads.db[l]
            # Divided by scale twice, not by scale squared: that underflows to 0 for a tiny scale.
            self.sq_w[l] += float(np.dot(dw, dw)) / dw.size / scale / scale
            self.sq_b[l] += float(np.dot(db, db)) / db.size / scale / scale
        self.batches += 1

    def before_step(self) -> None:
        self._w_before = {l: self.net.w[l].copy() for l in self.net.layers}

    def after_step(self) -> None:
        for l, before in self._w_before.items():
            w = self.net.w[l]
            np.subtract(w, before, out=before)  # before now holds Δw^l
            norm = float(np.linalg.norm(w))
            self.ratio[l] += float(np.linalg.norm(before)) / norm if norm else 0.0
        self._w_before = {}

    def epoch_stats(self) -> list[LayerStats]:
        """The epoch's rows, l = 2..L, averaged over the sampled batches; then start afresh."""
        k = max(1, self.batches)
        rows = []
        for l in self.net.layers:
            hidden = l < self.net.L
            saturated = (self.saturated[l] / self.values[l]
                         if hidden and self.hidden in SATURATION and self.values[l] else None)
            dead = (1.0 - float(self.active[l].mean())) if hidden and self.hidden == "relu" and self.batches else None
            rows.append(LayerStats(l=l, n=self.net.sizes[l - 1], grad_rms_w=math.sqrt(self.sq_w[l] / k),
                                   grad_rms_b=math.sqrt(self.sq_b[l] / k),
                                   weight_norm=float(np.linalg.norm(self.net.w[l])),
                                   update_ratio=self.ratio[l] / k, saturated=saturated, dead=dead))
        self.start_epoch()
        return rows


def slowdown(rows: list[LayerStats] | list[dict]) -> tuple[int, int, float] | None:
    """(first hidden l, last hidden l, RMS of dC/db of the first / of the last) for a network with at
    least two hidden layers: how much more slowly the earliest hidden layer's neurons learn.

    dC/db^l_j = delta^l_j is the speed of learning of neuron j (as in Nielsen's chapter 5); dC/dw^l
    would mix in the inputs: for l = 2 it is delta times pixels that are zero at MNIST's borders, which
    makes the first layer look slow whatever the network."""
    def get(r: LayerStats | dict, key: str) -> float:
        return float(r[key] if isinstance(r, dict) else getattr(r, key))

    hidden = rows[:-1]
    if len(hidden) < 2:
        return None
    first, last = hidden[0], hidden[-1]
    g_last = get(last, "grad_rms_b")
    if not g_last:
        return None
    return int(get(first, "l")), int(get(last, "l")), get(first, "grad_rms_b") / g_last
