"""A sigmoid network with a softmax output and the cross-entropy cost, in the "function style" bpcli
gradcheck understands: `init_params(sizes, rng)`, `loss(params, x, y)` and `grad(params, x, y)`, with
a batch x of one example per row and the loss the MEAN over the batch.

The weights are stored as W (n_(l-1), n_l) so that a layer is `a @ W + b`; bpcli maps W1 to w^2
(transposed), b1 to b^2, and so on.

    bpcli gradcheck --model examples/function_network.py --model-args '[6, 5, 4, 3]'
"""

import numpy as np


def init_params(sizes, rng):
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"W{i}"] = rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)
        params[f"b{i}"] = np.zeros(n_out)
    return params


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True).real)   # shift for stability; .real keeps complex input analytic
    return e / e.sum(axis=1, keepdims=True)


def forward(params, x):
    """Activations a^1..a^L, each (m, n_l)."""
    n_layers = len(params) // 2
    activations = [x]
    for i in range(1, n_layers + 1):
        z = activations[-1] @ params[f"W{i}"] + params[f"b{i}"]
        activations.append(softmax(z) if i == n_layers else sigmoid(z))
    return activations


def loss(params, x, y):
    a = forward(params, x)[-1]
    return -np.sum(y * np.log(a)) / len(x)


def grad(params, x, y):
    n_layers = len(params) // 2
    activations = forward(params, x)
    m = len(x)
    delta = (activations[-1] - y) / m                   # softmax + cross-entropy, averaged over the batch
    g = {}
    for i in range(n_layers, 0, -1):
        g[f"W{i}"] = activations[i - 1].T @ delta
        g[f"b{i}"] = delta.sum(axis=0)
        if i > 1:
            a = activations[i - 1]
            delta = (delta @ params[f"W{i}"].T) * a * (1 - a)
    return g
