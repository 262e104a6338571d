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

    def step(self, params: list[Array], grads: list[Array], eta: float) -> None:
        """One update of every param with learning rate eta. Grads may be overwritten."""
        self.t += 1
        c = self.config
        for i, (p, g) in enumerate(zip(params, grads)):
            if self.decay and self.is_weight[i]:
                g += self.decay * p
            if self.name == "sgd":
                p -= eta * g
            elif self.name == "momentum":
                v = self.state[f"v{i}"]
                v *= c.momentum
                v -= eta * g
                p += v
            else:
                m, v = self.state[f"m{i}"], self.state[f"v{i}"]
                m *= c.beta1
                m += (1 - c.beta1) * g
                v *= c.beta2
                g *= g
                v += (1 - c.beta2) * g
                # Bias-corrected step eta * m_hat / (sqrt(v_hat) + eps), with the corrections folded
                # into one scalar so the update costs two array passes.
                bias1 = 1 - c.beta1**self.t
                bias2 = 1 - c.beta2**self.t
                denom = np.sqrt(v)
                denom += c.epsilon * math.sqrt(bias2)
                p -= (eta * math.sqrt(bias2) / bias1) * m / denom


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
