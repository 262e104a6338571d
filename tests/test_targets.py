"""Targets beyond one-hot rows (issue 11): the closed-form output errors delta^L of the matched output and
cost pairs hold for every y, so backprop's gradient is the true gradient of C whatever the targets.

softmax + cross-entropy: dC_x/dz_j = a_j sum_k y_k - y_j, which is a^L - y only when the row sums to 1;
sigmoid + cross-entropy and identity + quadratic: a^L - y for any real y."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bpcli import gradcheck
from bpcli.costs import COSTS, output_delta
from bpcli.activations import OUTPUT
from bpcli.network import Network

FUSED = [("softmax", "cross_entropy"), ("sigmoid", "cross_entropy"), ("identity", "quadratic")]


def targets(kind: str, m: int, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "one-hot":
        return np.eye(n)[rng.integers(0, n, m)]
    if kind == "smoothed":        # label smoothing: rows still sum to 1
        return 0.9 * np.eye(n)[rng.integers(0, n, m)] + 0.1 / n
    if kind == "soft":            # rows sum to anything between 0.5 and 3
        return rng.random((m, n)) * rng.uniform(0.5, 3.0, (m, 1)) / (n / 2)
    return rng.uniform(-1.0, 2.0, (m, n))  # "any": negative, above 1, rows summing to anything


@pytest.mark.parametrize(("output", "cost"), FUSED)
@pytest.mark.parametrize("kind", ["one-hot", "smoothed", "soft", "any"])
def test_backprop_is_the_gradient_for_any_targets(output: str, cost: str, kind: str) -> None:
    rng = np.random.default_rng(7)
    net = Network.create([6, 5, 4], "tanh", output, cost, "xavier", rng)
    x, y = rng.random((3, 6)), targets(kind, 3, 4, rng)
    result = gradcheck.check(net, x, y)
    assert result.passed, [(g.name, g.max_rel_error) for g in result.groups]
    assert max(g.max_rel_error for g in result.groups) < 1e-7


def test_softmax_cross_entropy_delta_is_a_times_row_sum_minus_y() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 4))
    softmax = OUTPUT["softmax"]
    a = softmax.value(z)
    y = rng.random((5, 4)) * 3  # rows summing to about 6
    delta = output_delta(COSTS["cross_entropy"], softmax, z, a, y)
    np.testing.assert_allclose(delta, (a * y.sum(axis=1, keepdims=True) - y) / 5, rtol=1e-15)
    # ... and the general chain rule gives the same: J^T (dC_x/da) with dC_x/da = -y / a.
    general = softmax.chain(COSTS["cross_entropy"].derivative(a, y, softmax), z, a) / 5
    np.testing.assert_allclose(delta, general, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(("output", "cost"), FUSED)
def test_one_hot_delta_is_unchanged(output: str, cost: str) -> None:
    """For one-hot rows the general form is a^L - y exactly, bit for bit, in float32 as in training."""
    rng = np.random.default_rng(1)
    z = rng.standard_normal((7, 10)).astype(np.float32)
    sigma = OUTPUT[output]
    a = sigma.value(z)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 7)]
    out = np.empty_like(a)
    delta = output_delta(COSTS[cost], sigma, z, a, y, out=out, scale=0.5)
    assert delta is out and delta.dtype == np.float32
    expected = a - y
    expected *= np.float32(0.5 / 7)
    np.testing.assert_array_equal(delta, expected)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(pair=st.sampled_from(FUSED), m=st.integers(1, 6), seed=st.integers(0, 2**16),
       kind=st.sampled_from(["one-hot", "smoothed", "soft", "any"]))
def test_targets_property(pair: tuple[str, str], m: int, seed: int, kind: str) -> None:
    rng = np.random.default_rng(seed)
    net = Network.create([4, 3, 5], "sigmoid", *pair, "xavier", rng)
    assert gradcheck.check(net, rng.random((m, 4)), targets(kind, m, 5, rng)).passed
