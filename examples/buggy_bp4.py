"""The function-style network with a mistake in the weight gradient (BP4).

The loss is the mean over the batch, and the learner divided by m when averaging the bias gradient
(`delta.mean(axis=0)`), but the weight gradient `a^T @ delta` sums over the m examples and was never
divided: dC/dw comes out m times too large while every dC/db is right.

    bpcli gradcheck --model examples/buggy_bp4.py --model-args '[6, 5, 4, 3]'
"""

from function_network import forward, init_params, loss  # noqa: F401 - the protocol is these three and grad


def grad(params, x, y):
    n_layers = len(params) // 2
    activations = forward(params, x)
    delta = activations[-1] - y                         # per example, not yet divided by m
    g = {}
    for i in range(n_layers, 0, -1):
        g[f"W{i}"] = activations[i - 1].T @ delta       # BUG: sums over the batch; needs / len(x)
        g[f"b{i}"] = delta.mean(axis=0)
        if i > 1:
            a = activations[i - 1]
            delta = (delta @ params[f"W{i}"].T) * a * (1 - a)
    return g
