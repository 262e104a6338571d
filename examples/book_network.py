"""A small sigmoid network in the "book style" bpcli gradcheck understands: `sizes`, `weights`,
`biases` (lists with one array per layer l = 2..L), `feedforward(a)` and `backprop(x, y)` returning
(nabla_b, nabla_w) for ONE example given as column vectors.

The cost is C_x = 1/2 ||a^L - y||^2, so dC/da^L = a^L - y.

    bpcli gradcheck --model examples/book_network.py:Network --model-args '[6, 5, 4, 3]'
"""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z):
    s = sigmoid(z)
    return s * (1.0 - s)


class Network:
    def __init__(self, sizes, seed=0):
        rng = np.random.default_rng(seed)
        self.sizes = list(sizes)
        # weights[i] is w^(i+2), shape (n_l, n_(l-1)); biases[i] is b^(i+2), a column (n_l, 1)
        self.weights = [rng.standard_normal((n, n_prev)) for n_prev, n in zip(sizes[:-1], sizes[1:])]
        self.biases = [rng.standard_normal((n, 1)) for n in sizes[1:]]

    def feedforward(self, a):
        for w, b in zip(self.weights, self.biases):
            a = sigmoid(w @ a + b)
        return a

    def backprop(self, x, y):
        # forward, keeping every weighted input z^l and activation a^l
        a, activations, zs = x, [x], []
        for w, b in zip(self.weights, self.biases):
            z = w @ a + b
            a = sigmoid(z)
            zs.append(z)
            activations.append(a)
        nabla_b = [None] * len(self.biases)
        nabla_w = [None] * len(self.weights)
        # BP1: delta^L = (a^L - y) * sigma'(z^L)
        delta = (activations[-1] - y) * sigmoid_prime(zs[-1])
        for i in reversed(range(len(self.weights))):
            nabla_b[i] = delta                          # BP3: dC/db^l = delta^l
            nabla_w[i] = delta @ activations[i].T       # BP4: dC/dw^l = delta^l (a^(l-1))^T
            if i > 0:
                # BP2: delta^(l-1) = ((w^l)^T delta^l) * sigma'(z^(l-1))
                delta = (self.weights[i].T @ delta) * sigmoid_prime(zs[i - 1])
        return nabla_b, nabla_w

    def train_step(self, batch, eta):
        """One step of gradient descent on a list of (x, y) column-vector pairs."""
        sum_b = [np.zeros_like(b) for b in self.biases]
        sum_w = [np.zeros_like(w) for w in self.weights]
        for x, y in batch:
            nabla_b, nabla_w = self.backprop(x, y)
            sum_b = [s + n for s, n in zip(sum_b, nabla_b)]
            sum_w = [s + n for s, n in zip(sum_w, nabla_w)]
        self.weights = [w - eta / len(batch) * s for w, s in zip(self.weights, sum_w)]
        self.biases = [b - eta / len(batch) * s for b, s in zip(self.biases, sum_b)]
