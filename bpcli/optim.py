"""Update rules (SGD, momentum, Adam) with L2 weight decay, and learning-rate schedules.

An optimizer updates a list of parameter arrays in place from a list of gradients of the same shapes,
in the order `Network.params()` gives: [w^2, b^2, w^3, b^3, ...]. L2 decay applies to the weights only.
"""

from __future__ import annotations

import math

import numpy as np

from bpcli.config import OptimizerConfig, ScheduleConfig

Array = np.ndarray


class Optimizer:
    """Gradient descent with optional momentum or Adam.

    L2 regularization adds (lambda / 2n) sum_w w^2 to C, whose gradient (lambda / n) w joins each weight
    gradient; `decay` = lambda / n, and `is_weight[i]` says which params receive it.

    Every update is done in place, on the parameter, its state and its gradient (which `step` may
    overwrite), with one scratch array per parameter where a rule needs a second intermediate: the
    plain `p -= eta * g` would allocate a temporary of p's size for `eta * g` at every step, so the
    training loop would not be allocation-free (the time saved is small, a few percent of the update,
    since the allocator recycles the block). The operations come in the order of the formulas, so the
    numbers are exactly those of the plain expressions.
    """

    def __init__(self, config: OptimizerConfig, params: list[Array], is_weight: list[bool], decay: float) -> None:
        self.name = config.name
        self.config = config
        self.is_weight = is_weight
        self.decay = decay
        self.t = 0  # updates done; Adam's bias correction needs it
        self.state: dict[str, Array] = {}
        if self.name == "momentum":
            self.state = {f"v{i}": np.zeros_like(p) for i, p in enumerate(params)}
        elif self.name == "adam":
            self.state = {f"m{i}": np.zeros_like(p) for i, p in enumerate(params)}
            self.state.update({f"v{i}": np.zeros_like(p) for i, p in enumerate(params)})
        needs_scratch = self.name == "adam" or bool(decay)
        self._scratch = [np.empty_like(p) for p in params] if needs_scratch else []
        keys = {"momentum": ("v",), "adam": ("m", "v")}.get(self.name, ())
        # Param i's state arrays, looked up once: `state` is only ever written in place (restoring a
        # checkpoint included), so these stay the same arrays.
        self._state = [[self.state[f"{key}{i}"] for key in keys] for i in range(len(params))]
        self._blocks = [_blocks(p) for p in params]

    def gradient_scale(self, eta: float) -> float:
        """The multiple of the gradient that `step` works with best: SGD and momentum use the gradient
        only as eta g, so they take eta g itself (`Network.backward(..., scale=eta)` computes it at
        the cost of scaling delta^L); Adam needs g."""
        return eta if self.name != "adam" and eta > 0 else 1.0

    def step(self, params: list[Array], grads: list[Array], eta: float, scaled: float = 1.0) -> None:
        """One update of every param with learning rate eta. Grads may be overwritten.

        `scaled`: the grads are `scaled` times the gradient (see `gradient_scale`). For scaled = eta
        the SGD and momentum rules skip `g *= eta`, a pass over memory as large as the parameters.

        A large parameter is updated block of rows by block of rows (`_blocks`): each rule is four to
        eight passes over arrays of the parameter's size, and a block small enough to stay in the core's
        cache between them is read from memory once instead of once per pass. Every element still goes
        through the same operations in the same order, so the numbers do not depend on the blocking.
        """
        self.t += 1
        for i, (p, g) in enumerate(zip(params, grads)):
            state = self._state[i]
            scratch = self._scratch[i] if self._scratch else None
            blocks = self._blocks[i]
            if not blocks:
                self._update(i, p, g, state, scratch, eta, scaled)
                continue
            for rows in blocks:
                self._update(i, p[rows], g[rows], [x[rows] for x in state], None if scratch is None else scratch[rows],
                             eta, scaled)

    def _update(self, i: int, p: Array, g: Array, state: list[Array], s: Array | None, eta: float,
                scaled: float) -> None:
        """The rule for param i (or a block of its rows): p, its gradient g (times `scaled`), its
        state arrays (v for momentum; m, v for Adam) and its scratch array s, all of one shape."""
        c = self.config
        eta_g = eta / scaled  # the factor that turns the given grads into eta g
        if self.decay and self.is_weight[i]:
            g += np.multiply(p, self.decay * scaled, out=s)  # g + (lambda / n) w
        if self.name == "sgd":
            if eta_g != 1.0:
                g *= eta_g
            p -= g                                                    # p - eta g
        elif self.name == "momentum":
            (v,) = state
            v *= c.momentum
            if eta_g != 1.0:
                g *= eta_g
            v -= g                                                    # v = mu v - eta g
            p += v
        else:
            if scaled != 1.0:
                g *= 1.0 / scaled
            m, v = state
            m *= c.beta1
            m += np.multiply(g, 1 - c.beta1, out=s)                   # m = beta1 m + (1 - beta1) g
            v *= c.beta2
            g *= g
            g *= 1 - c.beta2
            v += g                                                    # v = beta2 v + (1 - beta2) g^2
            # Bias-corrected step eta * m_hat / (sqrt(v_hat) + eps), with the corrections folded
            # into one scalar so that m_hat and v_hat need no arrays of their own.
            bias1 = 1 - c.beta1**self.t
            bias2 = 1 - c.beta2**self.t
            denom = np.sqrt(v, out=s)
            denom += c.epsilon * math.sqrt(bias2)
            step = np.multiply(m, eta * math.sqrt(bias2) / bias1, out=g)
            step /= denom
            p -= step


# Elements per block of an update: 4 arrays of 32,768 float32 (or float64) values are 0.5 (1) MiB, within
# a core's 2 MiB L2. Measured on the 2-core machine for the 512 x 784 weights with momentum and L2, cache
# cold: 551 us per update unblocked, 413-429 us in blocks of 32-64 rows (25,000-50,000 values).
BLOCK = 32_768


def _blocks(p: Array) -> list[slice]:
    """Row blocks of p of about BLOCK values each; none (update p whole) when p is small or 1-D."""
    if p.ndim < 2 or p.size <= 2 * BLOCK:
        return []
    rows = max(1, BLOCK // max(1, p[0].size))
    return [slice(r, r + rows) for r in range(0, len(p), rows)]


def learning_rate(config: ScheduleConfig, eta: float, step: int, steps_per_epoch: int, epochs: int) -> float:
    """eta at update number `step` (0-based) of a run of `epochs` epochs.

    constant: eta.  step: eta * gamma^(floor(epoch / step_epochs)).
    cosine: from eta down to min_learning_rate along half a cosine over all updates.
    """
    if config.name == "constant":
        return eta
    if config.name == "step":
        return eta * config.gamma ** ((step // steps_per_epoch) // config.step_epochs)
    total = max(1, steps_per_epoch * epochs)
    progress = min(step, total) / total
    return config.min_learning_rate + (eta - config.min_learning_rate) * 0.5 * (1 + math.cos(math.pi * progress))
