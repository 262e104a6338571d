"""The book-style network with a mistake in the backward recursion (BP2).

sigma'(z) = sigma(z) (1 - sigma(z)) = a (1 - a), and the learner, having the activations at hand,
called sigmoid_prime on a^l instead of z^l in the hidden layers. The output layer is right (its delta
uses z^L), so dC/dw^L and dC/db^L pass; every earlier layer gets the wrong delta^l.

    bpcli gradcheck --model examples/buggy_bp2.py:Network --model-args '[6, 5, 4, 3]'
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
        delta = (activations[-1] - y) * sigmoid_prime(zs[-1])
        for i in reversed(range(len(self.weights))):
            nabla_b[i] = delta
            nabla_w[i] = delta @ activations[i].T
            if i > 0:
                # BUG: sigmoid_prime takes z; activations[i] is a^l = sigma(z^l)
                delta = (self.weights[i].T @ delta) * sigmoid_prime(activations[i])
        return nabla_b, nabla_w
