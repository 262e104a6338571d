"""Update rules and schedules against numbers worked out by hand, through the public `Optimizer` API.

Why literal numbers: a test that only checks that two runs agree, or that the loss goes down, passes
for a momentum that climbs the gradient or an Adam without bias correction. Each expected value below
is written out from the formula in the comment next to it (eta = 0.1 unless said otherwise), so a
wrong sign, a missing correction or decay on a bias changes a number the test compares.

Params are float64 and in the order `Network.params()` gives: [w, b] for one layer, is_weight
[True, False].
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bpcli.config import OptimizerConfig, ScheduleConfig
from bpcli.optim import Optimizer, learning_rate

Array = np.ndarray
ETA = 0.1
# Three gradients, the same for w (2 x 2) and b (2,) entry by entry; signs and sizes vary so that a
# rule that ignores the sign, the history or the scale gives different numbers.
GRADS = [0.5, -0.25, 1.0]


def run(name: str, steps: list[float], decay: float = 0.0, scaled: bool = False, **options: float) -> list[tuple[Array, Array]]:
    """(w, b) after each of the given gradient steps, starting from w = 1, b = 1 everywhere.

    `scaled`: hand the optimizer eta * g with scaled = eta, as the training loop does for SGD and
    momentum (`gradient_scale`); the result must be the same rule.
    """
    w, b = np.ones((2, 2)), np.ones(2)
    opt = Optimizer(OptimizerConfig(name=name, **options), [w, b], [True, False], decay)
    out = []
    for g in steps:
        factor = opt.gradient_scale(ETA) if scaled else 1.0
        grads = [np.full_like(w, g * factor), np.full_like(b, g * factor)]
        opt.step([w, b], grads, ETA, scaled=factor)
        out.append((w.copy(), b.copy()))
    return out


def values(history: list[tuple[Array, Array]], which: int) -> list[float]:
    """One entry of w (which=0) or b (which=1) per step; every entry of a param moves alike here."""
    for params in history:
        p = params[which]
        assert np.all(p == p.flat[0]), "entries with equal gradients must move equally"
    return [float(params[which].flat[0]) for params in history]


# -- SGD ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scaled", [False, True])
def test_sgd_steps_against_the_gradient(scaled: bool) -> None:
    # p <- p - eta g:  1 - 0.05 = 0.95,  0.95 + 0.025 = 0.975,  0.975 - 0.1 = 0.875
    history = run("sgd", GRADS, scaled=scaled)
    assert values(history, 0) == pytest.approx([0.95, 0.975, 0.875], abs=1e-15)
    assert values(history, 1) == pytest.approx([0.95, 0.975, 0.875], abs=1e-15)


@pytest.mark.parametrize("scaled", [False, True])
def test_sgd_l2_decays_weights_only(scaled: bool) -> None:
    # w <- w - eta (g + decay w), decay = 0.5:
    #   1 - 0.1 (0.5 + 0.5)            = 0.9
    #   0.9 - 0.1 (-0.25 + 0.45)       = 0.88
    #   0.88 - 0.1 (1.0 + 0.44)        = 0.736
    # b has no decay term: the plain SGD numbers.
    history = run("sgd", GRADS, decay=0.5, scaled=scaled)
    assert values(history, 0) == pytest.approx([0.9, 0.88, 0.736], abs=1e-15)
    assert values(history, 1) == pytest.approx([0.95, 0.975, 0.875], abs=1e-15)


# -- momentum ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("scaled", [False, True])
def test_momentum_velocity_descends(scaled: bool) -> None:
    # v <- mu v - eta g, p <- p + v, mu = 0.9:
    #   v = -0.05                      p = 0.95
    #   v = -0.045 + 0.025 = -0.02     p = 0.93
    #   v = -0.018 - 0.1   = -0.118    p = 0.812
    history = run("momentum", GRADS, scaled=scaled, momentum=0.9)
    assert values(history, 0) == pytest.approx([0.95, 0.93, 0.812], abs=1e-15)
    assert values(history, 1) == pytest.approx([0.95, 0.93, 0.812], abs=1e-15)


def test_momentum_velocity_is_the_state_a_checkpoint_keeps() -> None:
    # The velocity is saved in checkpoints as state["v<i>"]; after the three steps above it is -0.118.
    w, b = np.ones((2, 2)), np.ones(2)
    opt = Optimizer(OptimizerConfig(name="momentum", momentum=0.9), [w, b], [True, False], 0.0)
    for g in GRADS:
        opt.step([w, b], [np.full_like(w, g), np.full_like(b, g)], ETA)
    assert sorted(opt.state) == ["v0", "v1"] and opt.t == 3
    assert opt.state["v0"] == pytest.approx(np.full((2, 2), -0.118), abs=1e-15)
    assert opt.state["v1"] == pytest.approx(np.full(2, -0.118), abs=1e-15)


@pytest.mark.parametrize("scaled", [False, True])
def test_momentum_l2_decays_weights_only(scaled: bool) -> None:
    # decay = 0.5, the decay term joins g before the velocity update:
    #   g' = 0.5 + 0.5 = 1.0        v = -0.1                    w = 0.9
    #   g' = -0.25 + 0.45 = 0.2     v = -0.09 - 0.02 = -0.11    w = 0.79
    #   g' = 1.0 + 0.395 = 1.395    v = -0.099 - 0.1395 = -0.2385   w = 0.5515
    history = run("momentum", GRADS, decay=0.5, scaled=scaled, momentum=0.9)
    assert values(history, 0) == pytest.approx([0.9, 0.79, 0.5515], abs=1e-15)
    assert values(history, 1) == pytest.approx([0.95, 0.93, 0.812], abs=1e-15)


def test_momentum_zero_is_sgd() -> None:
    # With mu = 0 the velocity forgets everything: exactly the SGD numbers.
    assert values(run("momentum", GRADS, momentum=0.0), 0) == pytest.approx([0.95, 0.975, 0.875], abs=1e-15)


# -- Adam --------------------------------------------------------------------------------------------

# Adam with beta1 = 0.9, beta2 = 0.999, eps = 1e-8, from m = v = 0:
#   t = 1, g = 0.5:   m = 0.05, v = 0.00025; m_hat = 0.5, v_hat = 0.25 -> step eta * 0.5 / 0.5 = eta
#                     (the bias correction makes the first step eta * sign(g), whatever |g| is;
#                     without it the step would be eta * 0.05 / sqrt(0.00025) = 3.16 eta)
#   t = 2, g = -0.25: m = 0.02, v = 0.00031225; m_hat = 0.02 / 0.19, v_hat = 0.00031225 / 0.001999
#                     -> step 0.26633703 eta
#   t = 3, g = 1.0:   m = 0.118, v = 0.001311... ; m_hat = 0.118 / 0.271, v_hat = v / 0.002997
#                     -> step 0.65811159 eta
ADAM_P = [0.900000002, 0.8733662987078463, 0.8075551396770898]


def test_adam_bias_corrected_steps() -> None:
    history = run("adam", GRADS)
    assert values(history, 0) == pytest.approx(ADAM_P, rel=1e-12)
    assert values(history, 1) == pytest.approx(ADAM_P, rel=1e-12)


def test_adam_first_step_is_eta_times_sign_of_g() -> None:
    # The bias correction's visible effect: step 1 moves every entry by eta, for tiny and huge |g|.
    w, b = np.zeros((1, 3)), np.zeros(3)
    opt = Optimizer(OptimizerConfig(name="adam"), [w, b], [True, False], 0.0)
    g = np.array([[1e-3, -2.0, 50.0]])
    opt.step([w, b], [g.copy(), g[0].copy()], ETA)
    assert w == pytest.approx(-ETA * np.sign(g), rel=1e-5)
    assert b == pytest.approx(-ETA * np.sign(g[0]), rel=1e-5)


def test_adam_follows_the_textbook_formula_for_other_betas() -> None:
    # The bias corrections use beta1^t and beta2^t: check t = 1..3 against the formula written plainly,
    # for betas where a correction using the wrong beta or the wrong t shows.
    beta1, beta2, eps = 0.5, 0.8, 1e-3
    history = run("adam", GRADS, beta1=beta1, beta2=beta2, epsilon=eps)
    p, m, v, expected = 1.0, 0.0, 0.0, []
    for t, g in enumerate(GRADS, 1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        p -= ETA * (m / (1 - beta1**t)) / (math.sqrt(v / (1 - beta2**t)) + eps)
        expected.append(p)
    assert values(history, 0) == pytest.approx(expected, rel=1e-12)


def test_adam_l2_decays_weights_only() -> None:
    # With decay, w's gradient is g + decay * w (the textbook L2, not AdamW); b's trajectory must be
    # exactly the undecayed one.
    decay = 0.5
    history = run("adam", GRADS, decay=decay)
    p, m, v, expected = 1.0, 0.0, 0.0, []
    for t, g in enumerate(GRADS, 1):
        g = g + decay * p
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        p -= ETA * (m / (1 - 0.9**t)) / (math.sqrt(v / (1 - 0.999**t)) + 1e-8)
        expected.append(p)
    assert values(history, 0) == pytest.approx(expected, rel=1e-12)
    assert values(history, 0) != pytest.approx(ADAM_P, rel=1e-6)  # the decay did change w
    assert values(history, 1) == values(run("adam", GRADS), 1)


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_decay_never_touches_biases(name: str) -> None:
    # A big decay and zero gradients: the weights shrink, the biases stay exactly where they were.
    w, b = np.full((2, 3), 2.0), np.full(2, 2.0)
    opt = Optimizer(OptimizerConfig(name=name), [w, b], [True, False], decay=1.0)
    for _ in range(3):
        opt.step([w, b], [np.zeros_like(w), np.zeros_like(b)], ETA)
    assert np.all(b == 2.0)
    assert np.all(w < 2.0)


def test_adam_takes_the_plain_gradient() -> None:
    # Adam divides by sqrt(v): it must get g, not eta g (the loop asks `gradient_scale`).
    assert Optimizer(OptimizerConfig(name="adam"), [np.ones(1)], [True], 0.0).gradient_scale(0.3) == 1.0
    assert Optimizer(OptimizerConfig(name="sgd"), [np.ones(1)], [True], 0.0).gradient_scale(0.3) == 0.3
    assert Optimizer(OptimizerConfig(name="momentum"), [np.ones(1)], [True], 0.0).gradient_scale(0.3) == 0.3
    # A rate of 0 must not become the scale: backprop would hand over 0 * g and step could not
    # recover eta g from it (eta / scaled = 0 / 0).
    assert Optimizer(OptimizerConfig(name="sgd"), [np.ones(1)], [True], 0.0).gradient_scale(0.0) == 1.0


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_grads_given_scaled_give_the_same_step(name: str, scale: float) -> None:
    # `step`'s contract: grads that are `scaled` times the gradient, announced as such, make the same
    # update as the plain gradient, whatever the rule (the loop only ever scales for SGD and momentum,
    # but the API promises it for all).
    plain, scaled = np.ones((2, 2)), np.ones((2, 2))
    opt_plain = Optimizer(OptimizerConfig(name=name), [plain], [True], 0.25)
    opt_scaled = Optimizer(OptimizerConfig(name=name), [scaled], [True], 0.25)
    for g in GRADS:
        opt_plain.step([plain], [np.full((2, 2), g)], ETA)
        opt_scaled.step([scaled], [np.full((2, 2), g * scale)], ETA, scaled=scale)
        assert scaled == pytest.approx(plain, rel=1e-12)


@pytest.mark.parametrize("eta", [1.0, 2.0])
def test_sgd_and_momentum_at_other_learning_rates(eta: float) -> None:
    # The update skips the multiplication by eta / scaled when that factor is 1; at other rates it
    # must still happen. p = 1, g = 0.5: SGD 1 - 0.5 eta; momentum, two steps of the same g,
    # p = 1 - 0.5 eta - (0.9 * 0.5 eta + 0.5 eta) = 1 - 1.45 eta.
    for name, steps, expected in (("sgd", [0.5], 1 - 0.5 * eta), ("momentum", [0.5, 0.5], 1 - 1.45 * eta)):
        p = np.ones(3)
        opt = Optimizer(OptimizerConfig(name=name, momentum=0.9), [p], [True], 0.0)
        for g in steps:
            opt.step([p], [np.full(3, g)], eta)
        assert p == pytest.approx(np.full(3, expected), abs=1e-15)


# -- learning-rate schedules -------------------------------------------------------------------------


def test_constant_schedule() -> None:
    cfg = ScheduleConfig(name="constant")
    assert [learning_rate(cfg, 0.3, s, 5, 4) for s in (0, 7, 19, 100)] == [0.3] * 4


def test_step_schedule_multiplies_by_gamma_every_step_epochs() -> None:
    # 3 updates per epoch, gamma 0.5 every 2 epochs: updates 0-5 (epochs 0, 1) at eta, 6-11 (epochs 2,
    # 3) at eta/2, 12-14 (epoch 4) at eta/4.
    cfg = ScheduleConfig(name="step", step_epochs=2, gamma=0.5)
    got = [learning_rate(cfg, 0.8, s, steps_per_epoch=3, epochs=5) for s in range(15)]
    assert got == pytest.approx([0.8] * 6 + [0.4] * 6 + [0.2] * 3, abs=1e-15)


def test_cosine_schedule_endpoints_and_middle() -> None:
    # From eta at update 0 to min_learning_rate at the last update (10 per epoch, 4 epochs = 40),
    # halfway at the middle, along half a cosine; it stays at the minimum past the end.
    cfg = ScheduleConfig(name="cosine", min_learning_rate=0.1)
    lr = [learning_rate(cfg, 0.5, s, steps_per_epoch=10, epochs=4) for s in range(45)]
    assert lr[0] == pytest.approx(0.5, abs=1e-15)
    assert lr[20] == pytest.approx(0.3, abs=1e-15)
    assert lr[10] == pytest.approx(0.1 + 0.4 * 0.5 * (1 + math.cos(math.pi / 4)), abs=1e-15)
    assert lr[40] == pytest.approx(0.1, abs=1e-15) and lr[44] == pytest.approx(0.1, abs=1e-15)
    assert all(a > b for a, b in zip(lr[:40], lr[1:41]))  # strictly decreasing on the way down


def test_cosine_schedule_of_a_single_update() -> None:
    # One update in all: it runs at eta, and the end point (update 1) is the minimum.
    cfg = ScheduleConfig(name="cosine", min_learning_rate=0.1)
    assert learning_rate(cfg, 0.5, 0, steps_per_epoch=1, epochs=1) == pytest.approx(0.5, abs=1e-15)
    assert learning_rate(cfg, 0.5, 1, steps_per_epoch=1, epochs=1) == pytest.approx(0.1, abs=1e-15)


# -- blocked updates ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_a_large_weight_updated_in_row_blocks_matches_the_whole_array_update_bitwise(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A weight larger than two blocks is updated block by block to stay in cache; each element must go
    # through the same operations, so the result is bitwise that of the unblocked rule. Uneven blocks
    # (7 rows of 5 values with blocks of 3 rows) also cover a short last block.
    import bpcli.optim as optim

    rng = np.random.default_rng(0)
    w0, grads = rng.standard_normal((7, 5)), [rng.standard_normal((7, 5)) for _ in range(3)]
    results = []
    for block in (15, 10**6):
        monkeypatch.setattr(optim, "BLOCK", block)
        w = w0.copy()
        opt = Optimizer(OptimizerConfig(name=name), [w], [True], decay=0.01)
        assert len(opt._blocks[0]) == (3 if block == 15 else 0)
        for g in grads:
            opt.step([w], [g.copy()], ETA, scaled=opt.gradient_scale(ETA))
        results.append((w, {k: v.copy() for k, v in opt.state.items()}))
    (blocked, blocked_state), (whole, whole_state) = results
    assert np.array_equal(blocked, whole)
    assert all(np.array_equal(blocked_state[k], whole_state[k]) for k in whole_state)
    assert not np.array_equal(blocked, w0)
