"""The book-style network with a mistake in the output error (BP1).

The learner had read that "delta^L = a^L - y" and used it with the quadratic cost, dropping the factor
sigma'(z^L). That shortcut holds for the cross-entropy cost with sigmoid outputs, where sigma'(z^L)
cancels; with C_x = 1/2 ||a^L - y||^2 it does not, so delta^L is wrong and every earlier delta^l,
computed from it, is wrong too. The network still trains, only badly.

    bpcli gradcheck --model examples/buggy_bp1.py:Network --model-args '[6, 5, 4, 3]'
"""

from book_network import Network as Correct
from book_network import sigmoid, sigmoid_prime


class Network(Correct):
    def backprop(self, x, y):
        a, activations, zs = x, [x], []
        for w, b in zip(self.weights, self.biases):
            z = w @ a + b
            a = sigmoid(z)
            zs.append(z)
            activations.append(a)
        nabla_b = [None] * len(self.biases)
        nabla_w = [None] * len(self.weights)
        delta = activations[-1] - y                     # BUG: the quadratic cost needs * sigmoid_prime(zs[-1])
        for i in reversed(range(len(self.weights))):
            nabla_b[i] = delta
            nabla_w[i] = delta @ activations[i].T
            if i > 0:
                delta = (self.weights[i].T @ delta) * sigmoid_prime(zs[i - 1])
        return nabla_b, nabla_w
