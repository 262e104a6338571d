"""The backprop core: values on a hand-computed network, derivatives against central differences."""

from __future__ import annotations

import numpy as np
import pytest

from bpcli.activations import HIDDEN, OUTPUT, Softmax
from bpcli.costs import COSTS, output_delta
from bpcli.network import Network


def sigmoid(t: float) -> float:
    return 1.0 / (1.0 + np.exp(-t))


def tiny_network() -> Network:
    """2 inputs, 2 sigmoid hidden neurons, 1 sigmoid output, quadratic cost; numbers chosen by hand."""
    w = {2: np.array([[0.1, 0.2], [0.3, 0.4]]), 3: np.array([[0.5, -0.6]])}
    b = {2: np.array([0.5, -0.5]), 3: np.array([0.1])}
    return Network((2, 2, 1), w, b, HIDDEN["sigmoid"], OUTPUT["sigmoid"], COSTS["quadratic"])


def test_forward_matches_hand_computation() -> None:
    net = tiny_network()
    cache = net.forward(np.array([[1.0, 0.5]]))
    # z^2 = w^2 x + b^2 = [0.1 + 0.1 + 0.5, 0.3 + 0.2 - 0.5] = [0.7, 0.0]
    np.testing.assert_allclose(cache.z[2], [[0.7, 0.0]])
    np.testing.assert_allclose(cache.a[2], [[sigmoid(0.7), 0.5]])
    z3 = 0.5 * sigmoid(0.7) - 0.6 * 0.5 + 0.1
    np.testing.assert_allclose(cache.z[3], [[z3]])
    np.testing.assert_allclose(cache.a[3], [[sigmoid(z3)]])


def test_backward_matches_hand_computation() -> None:
    net = tiny_network()
    x, y = np.array([[1.0, 0.5]]), np.array([[1.0]])
    cache = net.forward(x)
    grads = net.backward(cache, y)
    a2, a3 = cache.a[2][0], cache.a[3][0, 0]
    # delta^3 = (a^3 - y) sigma'(z^3); delta^2 = (w^3)^T delta^3 (.) sigma'(z^2)
    delta3 = (a3 - 1.0) * a3 * (1 - a3)
    delta2 = np.array([0.5, -0.6]) * delta3 * a2 * (1 - a2)
    np.testing.assert_allclose(grads.db[3], [delta3])
    np.testing.assert_allclose(grads.dw[3], [[delta3 * a2[0], delta3 * a2[1]]])
    np.testing.assert_allclose(grads.db[2], delta2)
    np.testing.assert_allclose(grads.dw[2], np.outer(delta2, [1.0, 0.5]))


def test_shapes_for_a_batch(rng: np.random.Generator) -> None:
    net = Network.create([5, 4, 3, 2], "tanh", "softmax", "cross_entropy", "xavier", rng)
    x = rng.random((7, 5))
    y = np.eye(2)[rng.integers(0, 2, 7)]
    cache = net.forward(x)
    grads = net.backward(cache, y)
    for l in net.layers:
        n_l, n_prev = net.sizes[l - 1], net.sizes[l - 2]
        assert net.w[l].shape == grads.dw[l].shape == (n_l, n_prev)
        assert net.b[l].shape == grads.db[l].shape == (n_l,)
        assert cache.z[l].shape == cache.a[l].shape == grads.delta[l].shape == (7, n_l)
    assert (net.n_w, net.n_b) == (5 * 4 + 4 * 3 + 3 * 2, 4 + 3 + 2)


def numerical_gradient(net: Network, x: np.ndarray, y: np.ndarray, p: np.ndarray, h: float = 1e-6) -> np.ndarray:
    g = np.zeros_like(p)
    for i in np.ndindex(p.shape):
        old = p[i]
        p[i] = old + h
        plus = net.cost_value(net.forward(x), y)
        p[i] = old - h
        minus = net.cost_value(net.forward(x), y)
        p[i] = old
        g[i] = (plus - minus) / (2 * h)
    return g


@pytest.mark.parametrize(
    "activation,output,cost",
    [
        ("sigmoid", "sigmoid", "quadratic"),
        ("sigmoid", "softmax", "cross_entropy"),
        ("tanh", "sigmoid", "cross_entropy"),
        ("relu", "identity", "quadratic"),
        ("tanh", "softmax", "quadratic"),  # the unfused path through the softmax Jacobian
    ],
)
def test_backward_equals_central_difference(activation: str, output: str, cost: str, rng: np.random.Generator) -> None:
    net = Network.create([6, 5, 4, 3], activation, output, cost, "xavier", rng)
    x = rng.random((4, 6))
    y = np.eye(3)[rng.integers(0, 3, 4)]
    grads = net.backward(net.forward(x), y)
    for l in net.layers:
        np.testing.assert_allclose(grads.dw[l], numerical_gradient(net, x, y, net.w[l]), rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(grads.db[l], numerical_gradient(net, x, y, net.b[l]), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu"])
def test_activation_derivative_equals_central_difference(name: str, rng: np.random.Generator) -> None:
    sigma = HIDDEN[name]
    z = rng.normal(size=(3, 5))
    z[np.abs(z) < 1e-3] = 0.5  # keep relu away from its kink
    h = 1e-6
    numeric = (sigma.value(z + h) - sigma.value(z - h)) / (2 * h)
    np.testing.assert_allclose(sigma.derivative(z), numeric, rtol=1e-6, atol=1e-9)
    g = rng.normal(size=z.shape)
    np.testing.assert_allclose(sigma.chain(g.copy(), z, sigma.value(z)), g * sigma.derivative(z), rtol=1e-12)


def test_softmax_chain_is_the_jacobian_transpose_product(rng: np.random.Generator) -> None:
    softmax = Softmax()
    z, g = rng.normal(size=(1, 4)), rng.normal(size=(1, 4))
    h = 1e-6
    jacobian = np.stack([(softmax.value(z + h * e) - softmax.value(z - h * e))[0] / (2 * h) for e in np.eye(4)], axis=1)
    np.testing.assert_allclose(softmax.chain(g.copy(), z, softmax.value(z))[0], jacobian.T @ g[0], rtol=1e-6)


@pytest.mark.parametrize("cost_name,output_name", [("quadratic", "sigmoid"), ("quadratic", "softmax"),
                                                   ("cross_entropy", "softmax"), ("cross_entropy", "sigmoid")])
def test_cost_derivative_and_output_delta(cost_name: str, output_name: str, rng: np.random.Generator) -> None:
    cost, output = COSTS[cost_name], OUTPUT[output_name]
    z = rng.normal(size=(3, 4))
    y = np.eye(4)[[0, 2, 3]]
    a = output.value(z)
    h = 1e-6
    # dC/dz^L by central differences in z, for the batch-mean cost.
    numeric = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        e = np.zeros_like(z)
        e[i] = h
        numeric[i] = (cost.value(z + e, output.value(z + e), y, output)
                      - cost.value(z - e, output.value(z - e), y, output)) / (2 * h)
    np.testing.assert_allclose(output_delta(cost, output, z, a, y), numeric, rtol=1e-6, atol=1e-10)
    if cost_name == "quadratic" or output_name == "sigmoid":
        # dC_x/da against a central difference in a (softmax's a cannot move one entry alone).
        da = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            e = np.zeros_like(a)
            e[i] = h
            if cost_name == "quadratic":
                da[i] = (cost.value(z, a + e, y, output) - cost.value(z, a - e, y, output)) / (2 * h) * len(a)
            else:
                bce = lambda a_: -np.sum(y * np.log(a_) + (1 - y) * np.log(1 - a_))  # noqa: E731
                da[i] = (bce(a + e) - bce(a - e)) / (2 * h)
        np.testing.assert_allclose(cost.derivative(a, y, output), da, rtol=1e-5)


def test_softmax_cross_entropy_is_stable_for_huge_logits() -> None:
    z = np.array([[1000.0, -1000.0, 0.0]])
    y = np.array([[0.0, 1.0, 0.0]])
    softmax = Softmax()
    a = softmax.value(z)
    assert np.isfinite(a).all()
    loss = COSTS["cross_entropy"].value(z, a, y, softmax)
    assert loss == pytest.approx(2000.0)
    sig = OUTPUT["sigmoid"]
    assert np.isfinite(COSTS["cross_entropy"].value(z, sig.value(z), np.array([[0.0, 1.0, 1.0]]), sig))


def test_initialization_scales(rng: np.random.Generator) -> None:
    for init, std in [("normal", 1.0), ("scaled_normal", 1 / np.sqrt(400)), ("he", np.sqrt(2 / 400))]:
        net = Network.create([400, 300, 10], init=init, rng=rng)
        assert net.w[2].std() == pytest.approx(std, rel=0.02)
    net = Network.create([400, 300, 10], init="scaled_normal", rng=rng, dtype=np.float32)
    assert net.w[2].dtype == np.float32 and not net.b[2].any()


@pytest.mark.parametrize("k", [6, 4])
def test_a_workspace_pass_gives_the_values_of_a_plain_pass(k: int) -> None:
    # The training loop's workspace keeps z, a and delta feature-major (each neuron's values contiguous
    # over the batch) so that BLAS sees w @ a^T; the values must be those of the plain pass, for a full
    # batch and for a short last batch cut with rows(k).
    from bpcli.network import Workspace

    rng = np.random.default_rng(3)
    net = Network.create((5, 4, 3, 2), activation="relu", init="he", rng=rng)
    x = rng.standard_normal((k, 5))
    y = np.eye(2)[rng.integers(0, 2, k)]
    ws = Workspace(net, 6).rows(k)
    assert ws.z[2].shape == (k, 4) and ws.z[2].strides[0] < ws.z[2].strides[1]  # feature-major
    plain = net.forward(x)
    grads = net.backward(plain, y)
    cache = net.forward(x, workspace=ws)
    fast = net.backward(cache, y, workspace=ws)
    for l in net.layers:
        np.testing.assert_allclose(cache.a[l], plain.a[l], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(fast.dw[l], grads.dw[l], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(fast.db[l], grads.db[l], rtol=1e-12, atol=1e-15)
