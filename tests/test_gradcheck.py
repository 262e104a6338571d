"""`bpcli.gradcheck`: planted backprop bugs are caught and the right groups named; correct backprop
passes for every activation, cost and depth; complex step reaches ~machine precision; ReLU kinks are
reported as kinks; exactly-zero derivatives pass."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bpcli import gradcheck
from bpcli.costs import output_delta
from bpcli.errors import UsageError
from bpcli.network import Network

Array = np.ndarray
Grads = tuple[dict[int, Array], dict[int, Array]]

PAIRS = [("softmax", "cross_entropy"), ("sigmoid", "cross_entropy"), ("sigmoid", "quadratic"),
         ("identity", "quadratic"), ("softmax", "quadratic")]


def setup(sizes: list[int], hidden: str = "sigmoid", output: str = "softmax", cost: str = "cross_entropy",
          m: int = 4, seed: int = 0, init: str = "xavier") -> tuple[Network, Array, Array]:
    net = Network.create(sizes, hidden, output, cost, init, np.random.default_rng(seed))
    x, y, _ = gradcheck.batch_for(tuple(sizes), output, m, seed, None)
    return net, x, y


def names(net: Network, *kinds: str) -> set[str]:
    return {f"{kind}^{l}" for l in net.layers for kind in kinds}


# -- planted bugs ------------------------------------------------------------------------------------


def buggy_backprop(
    *, drop_sigma_prime_at: int | None = None, transpose: bool = False, wrong_z: bool = False,
    bias: str = "sum", cost_factor: float = 1.0,
) -> Callable[[Network, Array, Array], Grads]:
    """Backprop as in `Network.backward`, with one planted bug (examples as rows, so the notes'
    (w^(l+1))^T delta^(l+1) is delta[l+1] @ w[l+1])."""

    def gradient(net: Network, x: Array, y: Array) -> Grads:
        cache = net.forward(x)
        L = net.L
        delta = {L: cost_factor * output_delta(net.cost, net.output, cache.z[L], cache.a[L], y)}
        for l in range(L - 1, 1, -1):
            w_next = net.w[l + 1].T if transpose else net.w[l + 1]  # bug: w where w^T belongs
            g = delta[l + 1] @ w_next
            z, a = (cache.z[l + 1], cache.a[l + 1]) if wrong_z else (cache.z[l], cache.a[l])
            delta[l] = g if l == drop_sigma_prime_at else net.sigma(l).chain(g, z, a)
        dw = {l: delta[l].T @ cache.a[l - 1] for l in net.layers}
        db = {
            "sum": lambda d: d.sum(axis=0),
            "first": lambda d: d[0],            # bug: the first example's delta only
            "mean": lambda d: d.mean(axis=0),   # bug: 1/m applied twice
            "none": lambda d: d,                # bug: (m, n_l), not summed at all
        }[bias]
        return dw, {l: db(delta[l]) for l in net.layers}

    return gradient


def test_the_reference_implementation_of_the_planted_bugs_is_backprop_without_them() -> None:
    net, x, y = setup([7, 6, 5, 4])
    dw, db = buggy_backprop()(net, x, y)
    grads = net.backward(net.forward(x), y)
    for l in net.layers:
        np.testing.assert_allclose(dw[l], grads.dw[l], rtol=1e-14)
        np.testing.assert_allclose(db[l], grads.db[l], rtol=1e-14)
    assert gradcheck.check(net, x, y, gradient=buggy_backprop()).passed


@pytest.mark.parametrize("method", ["central", "complex", "directional"])
@pytest.mark.parametrize(("layer", "broken"), [(2, {"w^2", "b^2"}), (3, {"w^2", "b^2", "w^3", "b^3"})])
def test_sigma_prime_dropped_in_one_hidden_layer(method: str, layer: int, broken: set[str]) -> None:
    """delta^l without (.) sigma'(z^l) is wrong, and so is every delta below it; w^4, b^4 stay right."""
    net, x, y = setup([7, 6, 5, 4])
    result = gradcheck.check(net, x, y, method=method, gradient=buggy_backprop(drop_sigma_prime_at=layer))
    assert not result.passed
    assert set(result.failed_groups) == broken


@pytest.mark.parametrize("method", ["central", "complex", "directional"])
def test_w_instead_of_its_transpose_in_the_delta_recursion(method: str) -> None:
    """Square hidden matrices, so the bug is not a shape error but wrong numbers: delta^3 (from w^4)
    and delta^2 (from w^3) go wrong; the output layer's gradient does not use the recursion."""
    net, x, y = setup([7, 5, 5, 5])
    result = gradcheck.check(net, x, y, method=method, gradient=buggy_backprop(transpose=True))
    assert set(result.failed_groups) == {"w^2", "b^2", "w^3", "b^3"}


def test_w_instead_of_its_transpose_only_in_a_square_layer() -> None:
    """[7, 6, 6, 4]: only w^3 is square; using w^3 unchanged for delta^2 breaks just layer 2."""

    def gradient(net: Network, x: Array, y: Array) -> Grads:
        cache = net.forward(x)
        delta = {4: output_delta(net.cost, net.output, cache.z[4], cache.a[4], y)}
        delta[3] = net.sigma(3).chain(delta[4] @ net.w[4], cache.z[3], cache.a[3])
        delta[2] = net.sigma(2).chain(delta[3] @ net.w[3].T, cache.z[2], cache.a[2])  # the bug
        return ({l: delta[l].T @ cache.a[l - 1] for l in net.layers}, {l: delta[l].sum(axis=0) for l in net.layers})

    net, x, y = setup([7, 6, 6, 4])
    assert gradcheck.check(net, x, y, gradient=gradient).failed_groups == ["w^2", "b^2"]


@pytest.mark.parametrize("bias", ["first", "mean", "none"])
@pytest.mark.parametrize("method", ["central", "directional"])
def test_bias_gradient_not_summed_over_the_batch(bias: str, method: str) -> None:
    net, x, y = setup([7, 6, 5, 4], m=5)
    result = gradcheck.check(net, x, y, method=method, gradient=buggy_backprop(bias=bias))
    assert set(result.failed_groups) == names(net, "b")
    if bias == "none":  # (m, n_l) instead of (n_l,): named without comparing any entry
        assert all("shape (5," in g.note for g in result.groups if g.kind == "b")


@pytest.mark.parametrize("method", ["central", "complex", "directional"])
def test_delta_recursion_with_the_wrong_layers_z(method: str) -> None:
    """delta^l computed with z^(l+1), a^(l+1) (equal widths make it run): layers 2 and 3 break."""
    net, x, y = setup([7, 5, 5, 5])
    result = gradcheck.check(net, x, y, method=method, gradient=buggy_backprop(wrong_z=True))
    assert set(result.failed_groups) == {"w^2", "b^2", "w^3", "b^3"}


@pytest.mark.parametrize(("output", "cost"), PAIRS)
@pytest.mark.parametrize("method", ["central", "complex", "directional"])
def test_factor_of_two_in_the_cost_derivative_breaks_every_group(output: str, cost: str, method: str) -> None:
    net, x, y = setup([7, 6, 5, 4], output=output, cost=cost)
    result = gradcheck.check(net, x, y, method=method, gradient=buggy_backprop(cost_factor=2.0))
    assert set(result.failed_groups) == names(net, "w", "b")
    w2 = result.groups[0]
    assert w2.worst is not None and w2.worst.backprop == pytest.approx(2 * w2.worst.numerical, rel=1e-5)


def test_a_failure_names_the_worst_entry_with_both_values() -> None:
    net, x, y = setup([7, 6, 5, 4])
    true_dw, _ = gradcheck.backprop(net.astype(np.float64), x, y)

    def gradient(net: Network, x: Array, y: Array) -> Grads:
        dw, db = gradcheck.backprop(net, x, y)
        dw[3] = dw[3].copy()
        dw[3][4, 1] += 1e-3  # one wrong entry: w^3_41
        return dw, db

    result = gradcheck.check(net, x, y, gradient=gradient)
    assert result.failed_groups == ["w^3"]
    w3 = result.groups[2]
    assert w3.failures == 1 and w3.verdict == "fail"
    assert w3.worst is not None and (w3.worst.l, w3.worst.j, w3.worst.k) == (3, 4, 1)
    assert w3.worst.backprop == pytest.approx(true_dw[3][4, 1] + 1e-3, rel=1e-12)
    assert w3.worst.numerical == pytest.approx(true_dw[3][4, 1], rel=1e-6)
    assert w3.max_abs_error == pytest.approx(1e-3, rel=1e-4)


def test_nan_in_the_gradient_fails() -> None:
    net, x, y = setup([4, 3, 2])

    def gradient(net: Network, x: Array, y: Array) -> Grads:
        dw, db = gradcheck.backprop(net, x, y)
        db[3] = db[3] * np.nan
        return dw, db

    assert gradcheck.check(net, x, y, gradient=gradient).failed_groups == ["b^3"]


# -- correct backprop passes ---------------------------------------------------------------------------


@pytest.mark.parametrize("hidden", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize(("output", "cost"), PAIRS)
@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_correct_backprop_passes(hidden: str, output: str, cost: str, depth: int) -> None:
    sizes = [6, 5, 4, 3][: depth + 1] + [3]
    net, x, y = setup(sizes, hidden, output, cost, m=3, init="he" if hidden == "relu" else "xavier")
    result = gradcheck.check(net, x, y)
    assert result.passed, result.groups
    assert [g.name for g in result.groups] == [f"{kind}^{l}" for l in net.layers for kind in "wb"]
    assert result.checked == net.n_w + net.n_b
    for g in result.groups:
        assert g.max_rel_error <= 1e-7


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    sizes=st.lists(st.integers(1, 8), min_size=2, max_size=5),
    hidden=st.sampled_from(["sigmoid", "tanh", "relu"]),
    pair=st.sampled_from(PAIRS),
    init=st.sampled_from(["normal", "scaled_normal", "xavier", "he"]),
    m=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    method=st.sampled_from(["central", "complex", "directional"]),
)
def test_backprop_equals_numerical_gradient_for_random_architectures(
    sizes: list[int], hidden: str, pair: tuple[str, str], init: str, m: int, seed: int, method: str
) -> None:
    if method == "complex" and hidden == "relu":
        method = "central"
    net, x, y = setup(sizes, hidden, *pair, m=m, seed=seed, init=init)
    result = gradcheck.check(net, x, y, method=method, seed=seed)
    assert result.passed, [(g.name, g.max_rel_error, g.max_abs_error, g.worst) for g in result.groups]


def test_complex_step_reaches_machine_precision_on_a_sigmoid_network() -> None:
    net, x, y = setup([30, 20, 12, 10], "sigmoid", "softmax", "cross_entropy", m=8)
    result = gradcheck.check(net, x, y, method="complex")
    assert result.passed and result.eps == 1e-30 and result.rtol == 1e-12
    assert max(g.max_rel_error for g in result.groups) <= 1e-12
    # Also without the noise floor, on every entry whose derivative is not tiny.
    dw, db = gradcheck.backprop(net, x, y)
    for l in net.layers:
        j, k = np.unravel_index(np.arange(net.w[l].size), net.w[l].shape)
        g_num, _ = gradcheck.numerical_entries(net, x, y, l, j, k, "complex")
        g = dw[l].ravel()
        big = np.abs(g) > 1e-6
        assert big.sum() > g.size // 2
        assert np.max(np.abs(g_num - g)[big] / np.abs(g[big])) <= 1e-12


def test_complex_step_on_mnist_sigmoid_network(mnist_dir: Path) -> None:
    net = Network.create([784, 16, 10], "sigmoid", "softmax", "cross_entropy", "scaled_normal", np.random.default_rng(0))
    x, y, source = gradcheck.batch_for(net.sizes, "softmax", 5, 0, mnist_dir)
    assert "MNIST test" in source and x.shape == (5, 784)
    result = gradcheck.check(net, x, y, method="complex")
    assert result.passed and max(g.max_rel_error for g in result.groups) <= 1e-12


def test_central_is_accurate_on_mnist_and_blank_pixels_are_exact(mnist_dir: Path) -> None:
    """Pixels that are 0 in every example give dC/dw^2_jk = 0 exactly, on both sides."""
    net = Network.create([784, 16, 10], "sigmoid", "softmax", "cross_entropy", "scaled_normal", np.random.default_rng(0))
    x, y, _ = gradcheck.batch_for(net.sizes, "softmax", 10, 0, mnist_dir)
    result = gradcheck.check(net, x, y)
    assert result.passed and result.checked == net.n_w + net.n_b
    assert max(g.max_rel_error for g in result.groups) <= 1e-8
    blank = np.flatnonzero((x == 0).all(axis=0))
    assert len(blank) > 100
    j, k = np.repeat(np.arange(16), len(blank)), np.tile(blank, 16)
    g_num, kink = gradcheck.numerical_entries(net, x, y, 2, j, k)
    dw, _ = gradcheck.backprop(net.astype(np.float64), x, y)
    assert not kink.any()
    assert np.all(g_num == 0.0) and np.all(dw[2][j, k] == 0.0)


# -- ReLU kinks ----------------------------------------------------------------------------------------------


def test_relu_kink_is_reported_not_passed_or_failed() -> None:
    """Put z^2_1 of example 0 within the step of 0: perturbing w^2_1k moves it by h a^1_k across 0."""
    net, x, y = setup([5, 4, 3], "relu", m=3, init="he")
    net.b[2][1] -= net.forward(x).z[2][0, 1] - 1e-7  # z^2_1(x_0) = 1e-7 now
    result = gradcheck.check(net, x, y)
    w2, b2 = result.groups[0], result.groups[1]
    assert w2.kinks == 5 and b2.kinks == 1  # every w^2_1k (a^1_k > 0 for random x) and b^2_1
    assert w2.verdict == b2.verdict == "kink" and result.passed
    assert result.groups[2].kinks == 0 and result.groups[2].verdict == "pass"
    assert any("kink" in note for note in result.notes)
    # They are kinks for a reason: the one-sided slopes differ, so central differences are off there.
    dw, db = gradcheck.backprop(net.astype(np.float64), x, y)
    g_num, kink = gradcheck.numerical_entries(net, x, y, 2, np.full(5, 1), np.arange(5))
    assert kink.all()
    assert np.all(np.abs(g_num - dw[2][1]) > 1e-3 * np.abs(dw[2][1]).max())


def test_relu_kink_in_a_later_layer_is_found() -> None:
    """A perturbation of w^2 that flips the sign of some z^3 (not z^2) is a kink too."""
    net, x, y = setup([5, 4, 3, 2], "relu", m=2, init="he")
    cache = net.forward(x)
    j = int(np.argmax(cache.z[2][0]))                 # an active neuron of layer 2 for example 0
    net.b[3][0] -= cache.z[3][0, 0] - 1e-9            # z^3_0(x_0) = 1e-9: any change of a^2 can flip it
    result = gradcheck.check(net, x, y)
    assert result.passed
    g_num, kink = gradcheck.numerical_entries(net, x, y, 2, np.full(5, j), np.arange(5))
    w3_is_nonzero = net.w[3][0, j] != 0
    assert w3_is_nonzero and kink.all()


def test_relu_exactly_at_its_kink_and_inputs_that_move_nothing() -> None:
    """x = 0 and b = 0 put every z^2 exactly at 0: each b^2_j is a kink; each w^2_jk moves nothing
    (a^1_k = 0), so both gradients are exactly 0 there."""
    net = Network.create([5, 4, 3], "relu", "softmax", "cross_entropy", "he", np.random.default_rng(0))
    x, y = np.zeros((3, 5)), np.eye(3)
    result = gradcheck.check(net, x, y)
    w2, b2 = result.groups[0], result.groups[1]
    assert result.passed and b2.kinks == 4 and b2.verdict == "kink" and b2.worst is None
    assert w2.kinks == 0 and w2.max_abs_error == 0.0


def test_complex_step_refuses_relu() -> None:
    net, x, y = setup([5, 4, 3], "relu")
    with pytest.raises(UsageError, match="complex.*relu.*central"):
        gradcheck.check(net, x, y, method="complex")


# -- options, sampling and data --------------------------------------------------------------------------------


def test_entries_sample_is_seeded_and_counted() -> None:
    net, x, y = setup([20, 10, 4])
    a = gradcheck.check(net, x, y, entries=7, seed=3)
    b = gradcheck.check(net, x, y, entries=7, seed=3)
    c = gradcheck.check(net, x, y, entries=7, seed=4)
    assert [g.checked for g in a.groups] == [7, 7, 7, 4]  # b^3 has only 4 entries: all of them
    assert [g.worst for g in a.groups] == [g.worst for g in b.groups]
    assert [g.worst for g in a.groups] != [g.worst for g in c.groups]


def test_directional_counts_directions() -> None:
    net, x, y = setup([20, 10, 4])
    result = gradcheck.check(net, x, y, method="directional")
    assert result.passed and [g.checked for g in result.groups] == [gradcheck.DEFAULT_DIRECTIONS] * 4
    assert gradcheck.check(net, x, y, method="directional", entries=3).checked == 12


def test_thresholds_are_adjustable() -> None:
    net, x, y = setup([6, 5, 3])
    assert not gradcheck.check(net, x, y, rtol=1e-16, atol=0.0).passed  # central cannot reach that
    assert gradcheck.check(net, x, y, eps=1e-3, rtol=1e-3).passed


def test_default_atol_follows_the_noise_floor() -> None:
    net, x, y = setup([6, 5, 3])
    result = gradcheck.check(net, x, y)
    assert result.atol_auto
    assert result.atol == pytest.approx(10 * np.finfo(float).eps * max(1.0, result.cost) / 1e-5)
    assert gradcheck.check(net, x, y, atol=1e-9).atol == 1e-9


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"method": "forward"}, "method"), ({"eps": 0.0}, "eps"), ({"eps": float("nan")}, "eps"),
    ({"rtol": -1.0}, "rtol"), ({"atol": -1.0}, "atol"), ({"entries": 0}, "entries"), ({"entries": "some"}, "entries"),
])
def test_bad_options_are_usage_errors(kwargs: dict[str, object], needle: str) -> None:
    net, x, y = setup([4, 3, 2])
    with pytest.raises(UsageError, match=needle):
        gradcheck.check(net, x, y, **kwargs)  # type: ignore[arg-type]


def test_data_that_does_not_fit_the_network_is_a_usage_error() -> None:
    net, x, y = setup([4, 3, 2])
    with pytest.raises(UsageError, match="does not fit"):
        gradcheck.check(net, x[:, :3], y)


def test_float32_network_is_checked_in_float64() -> None:
    net, x, y = setup([6, 5, 3])
    result = gradcheck.check(net.astype(np.float32), x.astype(np.float32), y)
    assert result.passed and max(g.max_rel_error for g in result.groups) <= 1e-7


def test_json_dict_has_the_promised_fields() -> None:
    net, x, y = setup([6, 5, 3])
    data = gradcheck.check(net, x, y).to_dict()
    assert data["passed"] is True and data["method"] == "central"
    g = data["groups"][0]  # type: ignore[index]
    assert g["name"] == "w^2" and g["shape"] == [5, 6] and g["checked"] == 30
    assert isinstance(g["max_abs_error"], float) and isinstance(g["max_rel_error"], float) and g["passed"] is True


def test_mnist_batch_must_fit_the_network(mnist_dir: Path) -> None:
    with pytest.raises(UsageError, match="random-data"):
        gradcheck.batch_for((100, 5, 10), "softmax", 3, 0, mnist_dir)
    with pytest.raises(UsageError, match="only 10,000"):
        gradcheck.batch_for((784, 5, 10), "softmax", 10_001, 0, mnist_dir)


@pytest.mark.parametrize(("output", "low", "high"), [("softmax", 0, 1), ("sigmoid", 0, 1), ("identity", -10, 10)])
def test_random_data_suits_the_output(output: str, low: float, high: float) -> None:
    x, y, source = gradcheck.batch_for((5, 4, 3), output, 6, 1, None)
    assert x.shape == (6, 5) and y.shape == (6, 3) and "random" in source
    assert ((x >= 0) & (x < 1)).all() and ((y >= low) & (y <= high)).all()
    if output == "softmax":
        assert (y.sum(axis=1) == 1).all()
    x2, _, _ = gradcheck.batch_for((5, 4, 3), output, 6, 1, None)
    np.testing.assert_array_equal(x, x2)
