"""What one training epoch and one run do, seen from inside: which examples each update used, in which
order, with which learning rate and decay, and which epoch `best.npz` keeps.

Why a spy: a loop that skips the shuffle or drops the last short batch still "trains" (the loss falls,
two runs agree), so only a record of what each backward pass received can tell. `SpyNetwork` is a
`Network` that notes every batch handed to `backward` (the training pass; evaluation only runs
`forward`), and the data are made-up rows that are all different, so every row a batch holds can be
traced back to its example index.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from typer.testing import CliRunner

from bpcli import checkpoint, config
from bpcli.cli import app
from bpcli.config import Config
from bpcli.data import Dataset, Split, load_mnist, one_hot
from bpcli.network import Cache, Grads, Network, Workspace
from bpcli.optim import learning_rate
from bpcli.train import EpochMetrics, Interrupted, RunFiles, Trainer, evaluate, fit

from conftest import CONFIGS

Array = np.ndarray
TINY = CONFIGS / "tiny.yaml"
N, FEATURES, CLASSES, BATCH = 50, 6, 3, 16  # 50 = 3 x 16 + 2: the epoch ends with a batch of 2


class SpyNetwork(Network):
    """A Network that records, for every backward pass, the inputs, targets and outputs it got."""

    def __init__(self, net: Network) -> None:
        super().__init__(net.sizes, net.w, net.b, net.hidden, net.output, net.cost)
        self.batches: list[tuple[Array, Array, Array]] = []  # (x, y, a^L) per training batch
        self.costs: list[float] = []  # C of each batch, before its update (`Network.cost_value`)

    def backward(self, cache: Cache, y: Array, workspace: Workspace | None = None, scale: float = 1.0) -> Grads:
        # Copies: the loop reuses its buffers for the next batch.
        self.batches.append((cache.a[1].copy(), y.copy(), cache.a[self.L].copy()))
        self.costs.append(self.cost_value(cache, y))
        return super().backward(cache, y, workspace, scale)


def split(x: Array, labels: Array) -> Split:
    return Split(x, one_hot(labels, CLASSES, x.dtype), labels)


def made_up_data(n: int = N, validation: int = 0, seed: int = 7) -> Dataset:
    """n training rows of random values (so no two rows are equal), labels 0..2; `validation` more."""
    rng = np.random.default_rng(seed)
    x = rng.random((n + validation, FEATURES))
    labels = rng.integers(0, CLASSES, n + validation)
    empty = split(np.empty((0, FEATURES)), np.empty(0, dtype=np.int64))
    return Dataset(train=split(x[:n], labels[:n]),
                   validation=split(x[n:], labels[n:]) if validation else empty,
                   test=empty, classes=CLASSES)


def made_up_config(*extra: str) -> Config:
    """tiny.yaml cut down to the made-up data, in float64 so that update arithmetic can be compared."""
    return config.load(TINY, [f"model.layers=[{FEATURES}, 5, {CLASSES}]", f"training.batch_size={BATCH}",
                              "training.seed=3", "training.dtype=float64", *extra])


def spy_trainer(cfg: Config, data: Dataset) -> tuple[Trainer, SpyNetwork]:
    """A Trainer on a SpyNetwork initialized as the config says."""
    net = SpyNetwork(Network.from_config(cfg.model, cfg.training.seed, cfg.training.dtype))
    return Trainer(cfg, data, net=net), net


def record_rates(trainer: Trainer) -> list[float]:
    """The learning rate of every update the trainer's optimizer makes from now on."""
    rates: list[float] = []
    step = trainer.optimizer.step

    def recording_step(params: list[Array], grads: list[Array], eta: float, scaled: float = 1.0) -> None:
        rates.append(eta)
        step(params, grads, eta, scaled)

    trainer.optimizer.step = recording_step  # type: ignore[method-assign]
    return rates


def example_indices(data: Dataset, rows: Array) -> list[int]:
    """The training-set index of each row (each made-up row is unique)."""
    where = {row.tobytes(): i for i, row in enumerate(data.train.x)}
    return [where[row.tobytes()] for row in rows]


# -- one epoch -------------------------------------------------------------------------------------------


def test_an_epoch_trains_on_every_example_once_in_the_seeded_shuffled_order() -> None:
    data = made_up_data()
    cfg = made_up_config()
    trainer, spy = spy_trainer(cfg, data)
    reported: list[int] = []
    trainer.run_epoch(on_batch=reported.append)

    # Four updates: three full batches and the short one with the last 2 examples.
    assert [len(x) for x, _, _ in spy.batches] == [16, 16, 16, 2]
    assert trainer.optimizer.t == trainer.position.step == 4
    seen = [i for x, _, _ in spy.batches for i in example_indices(data, x)]
    assert sorted(seen) == list(range(N))  # every example exactly once
    # The order is the permutation drawn from the seeded generator (a Trainer given its network
    # shuffles with a fresh default_rng(seed)), not the file order.
    assert seen == list(np.random.default_rng(cfg.training.seed).permutation(N))
    assert seen != list(range(N))
    # Each target travelled with its input through the shuffle.
    for x, y, _ in spy.batches:
        assert np.array_equal(y, data.train.y[example_indices(data, x)])
    # What progress reports: examples done after each batch, ending at the training-set size.
    assert reported == [16, 32, 48, 50]


def test_each_epoch_draws_a_new_order_and_the_same_seed_repeats_it() -> None:
    data = made_up_data()
    orders = []
    for _ in range(2):
        trainer, spy = spy_trainer(made_up_config(), data)
        trainer.run_epoch()
        trainer.run_epoch()
        orders.append([example_indices(data, x) for x, _, _ in spy.batches])
    epoch1 = [i for batch in orders[0][:4] for i in batch]
    epoch2 = [i for batch in orders[0][4:] for i in batch]
    assert sorted(epoch2) == list(range(N)) and epoch2 != epoch1
    rng = np.random.default_rng(3)
    assert epoch1 == list(rng.permutation(N)) and epoch2 == list(rng.permutation(N))
    assert orders[0] == orders[1]  # same config and seed: same batches


def test_a_trainer_that_builds_its_network_still_shuffles_every_epoch() -> None:
    # The default path: the generator first initializes the network, then shuffles. Seen through
    # a spy on a copy of that network, which the Trainer then trains instead.
    data = made_up_data()
    trainer = Trainer(made_up_config(), data)
    spy = SpyNetwork(trainer.net)
    trainer.net = spy
    trainer.run_epoch()
    seen = [i for x, _, _ in spy.batches for i in example_indices(data, x)]
    assert sorted(seen) == list(range(N)) and seen != list(range(N))


@pytest.mark.parametrize("output,cost", [("softmax", "cross_entropy"), ("sigmoid", "cross_entropy"),
                                         ("identity", "quadratic")])
def test_train_loss_and_accuracy_are_over_exactly_the_epochs_examples(output: str, cost: str) -> None:
    # The running values average over the 50 examples the updates used, each counted once, with the
    # outputs each batch had before its own update: the batch costs weighted by batch size (2 in the
    # last batch, not 16).
    data = made_up_data(validation=20)
    trainer, spy = spy_trainer(made_up_config(f"model.output={output}", f"model.cost={cost}"), data)
    row = trainer.run_epoch()
    correct = sum(int(np.count_nonzero(a.argmax(axis=1) == y.argmax(axis=1))) for _, y, a in spy.batches)
    loss = sum(c * len(x) for c, (x, _, _) in zip(spy.costs, spy.batches)) / N
    assert row.train_accuracy == correct / N
    assert row.train_loss == pytest.approx(loss, rel=1e-12)
    if output == "softmax":  # and that is the cross-entropy -sum(y log a^L) / n written out
        assert loss == pytest.approx(sum(float(-np.sum(y * np.log(a))) for _, y, a in spy.batches) / N, rel=1e-12)
    # Validation is measured after the epoch, on the validation split, with the updated network.
    after = evaluate(trainer.net, data.validation)
    assert (row.val_accuracy, row.val_loss) == (after.accuracy, pytest.approx(after.loss, rel=1e-12))
    assert row.epoch == 1


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_l2_decays_the_trainers_weights_and_leaves_its_biases(optimizer: str) -> None:
    # One batch of the whole set (one update), with and without L2, from the same initial network:
    # the biases must come out bitwise equal, and for SGD the weights must differ by exactly the
    # decay step eta * (lambda / n) * w, with n the training-set size. init=normal draws nonzero
    # biases (the scaled schemes start them at 0, where decaying them would change nothing).
    data = made_up_data()
    runs = {}
    for l2 in (0.0, 5.0):
        cfg = made_up_config(f"training.batch_size={N}", f"training.l2={l2}", f"training.optimizer.name={optimizer}",
                             "model.init=normal")
        trainer = Trainer(cfg, data)
        w0 = {l: trainer.net.w[l].copy() for l in trainer.net.layers}
        assert all(np.all(trainer.net.b[l] != 0) for l in trainer.net.layers)
        trainer.run_epoch()
        runs[l2] = trainer.net
    plain, decayed = runs[0.0], runs[5.0]
    for l in plain.layers:
        assert np.array_equal(plain.b[l], decayed.b[l])
        assert not np.allclose(plain.w[l], decayed.w[l], rtol=0, atol=1e-9)
        if optimizer == "sgd":
            eta = 0.5  # tiny.yaml's learning rate
            assert decayed.w[l] == pytest.approx(plain.w[l] - eta * (5.0 / N) * w0[l], rel=1e-12, abs=1e-14)


# -- schedules and metrics through a run -----------------------------------------------------------


def test_every_update_uses_the_scheduled_rate_and_each_epoch_logs_one_row(tmp_path: Path) -> None:
    # step schedule: halve every epoch; 4 updates per epoch over 3 epochs.
    cfg = made_up_config("training.epochs=3", "training.schedule.name=step", "training.schedule.step_epochs=1",
                         "training.schedule.gamma=0.5")
    trainer = Trainer(cfg, made_up_data(validation=10))
    rates = record_rates(trainer)
    shown: list[EpochMetrics] = []
    files = RunFiles.create(tmp_path / "run")
    summary = fit(trainer, files, on_epoch_end=shown.append)

    assert rates == [0.5] * 4 + [0.25] * 4 + [0.125] * 4
    assert rates == [learning_rate(cfg.training.schedule, 0.5, s, 4, 3) for s in range(12)]
    # metrics.jsonl: one row per epoch, numbered 1..3, exactly the rows the view was shown.
    logged = [json.loads(line) for line in files.metrics.read_text().splitlines()]
    assert logged == [asdict(r) for r in shown]
    assert [r["epoch"] for r in logged] == [1, 2, 3]
    assert [r["learning_rate"] for r in logged] == [0.5, 0.25, 0.125]
    assert summary.epochs == 3 and summary.train_seconds == pytest.approx(sum(r.seconds for r in shown))
    assert checkpoint.load(files.last).epoch == 3 and checkpoint.load(files.last).step == 12


def test_cosine_schedule_reaches_its_minimum_only_after_the_last_update() -> None:
    # Over 2 epochs of 4 updates the rates go from eta down towards min_learning_rate, never below.
    cfg = made_up_config("training.epochs=2", "training.schedule.name=cosine",
                         "training.schedule.min_learning_rate=0.1")
    trainer = Trainer(cfg, made_up_data())
    rates = record_rates(trainer)
    trainer.run_epoch()
    trainer.run_epoch()
    assert rates[0] == 0.5 and len(rates) == 8
    assert all(a > b > 0.1 for a, b in zip(rates, rates[1:]))
    assert trainer.learning_rate(8) == pytest.approx(0.1)  # the end point, after the last update


# -- which checkpoint is best ----------------------------------------------------------------------------


def test_best_checkpoint_is_the_epoch_with_the_highest_validation_accuracy(mnist_dir: Path, tmp_path: Path) -> None:
    # Seed 1 at learning rate 2 on a small slice: validation accuracy peaks at epoch 5 of 6, so the
    # best epoch is neither the first, nor the last, nor the worst.
    out = tmp_path / "run"
    sets = [f"data.path={mnist_dir}", "data.limit=300", "data.validation_size=200", "training.epochs=6",
            "training.learning_rate=2.0", "training.seed=1", "training.batch_size=20"]
    result = CliRunner().invoke(app, ["train", str(TINY), *[a for s in sets for a in ("--set", s)],
                                      "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    accuracies = [r["val_accuracy"] for r in rows]
    best_epoch = 1 + accuracies.index(max(accuracies))
    assert 1 < best_epoch < len(rows) and accuracies[-1] < max(accuracies)  # the run is a real test

    best = checkpoint.load(out / "best.npz")
    assert best.epoch == best_epoch and best.best_accuracy == max(accuracies)
    assert checkpoint.load(out / "last.npz").epoch == len(rows)
    # The network in best.npz is the one that scored it: re-measured on the same validation split.
    data = load_mnist(mnist_dir, validation_size=200, seed=1, limit=300)
    assert evaluate(best.network, data.validation).accuracy == max(accuracies)
    summary = json.loads(result.output)
    assert (summary["best_epoch"], summary["best_val_accuracy"]) == (best_epoch, max(accuracies))


def test_without_validation_the_latest_epoch_is_best(tmp_path: Path) -> None:
    files = RunFiles.create(tmp_path / "run")
    summary = fit(Trainer(made_up_config("training.epochs=3"), made_up_data()), files)
    assert checkpoint.load(files.best).epoch == 3
    assert summary.best_epoch is None and summary.best_val_accuracy is None
    assert [r.val_accuracy for r in files.read_metrics()] == [None, None, None]


# -- what one update does, and what fit reports --------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_one_update_is_one_optimizer_step_on_the_batch_gradient(optimizer: str) -> None:
    # A batch of the whole set: the update must be the rule applied to the mean gradient of that
    # batch, as `Network.gradient` computes it. SGD: w - eta g. Adam's first step: w - eta g / (|g| + eps)
    # (m_hat = g, v_hat = g^2). A loop that handed the optimizer eta g without saying so would step by
    # eta^2 g.
    data = made_up_data()
    trainer = Trainer(made_up_config(f"training.batch_size={N}", f"training.optimizer.name={optimizer}"), data)
    initial = trainer.net.astype(np.float64)  # a copy, taken before training
    _, grads = initial.gradient(data.train.x, data.train.y)
    trainer.run_epoch()
    eta = 0.5
    for l in initial.layers:
        for p0, g, p in ((initial.w[l], grads.dw[l], trainer.net.w[l]), (initial.b[l], grads.db[l], trainer.net.b[l])):
            step = eta * g if optimizer == "sgd" else eta * g / (np.abs(g) + 1e-8)
            assert p == pytest.approx(p0 - step, rel=1e-9, abs=1e-12)


def test_learning_rate_of_a_given_update() -> None:
    # Trainer.learning_rate(step) answers for the update asked about, not for where the run stands.
    cfg = made_up_config("training.epochs=2", "training.schedule.name=step", "training.schedule.step_epochs=1",
                         "training.schedule.gamma=0.5")
    trainer = Trainer(cfg, made_up_data())
    trainer.run_epoch()
    trainer.run_epoch()
    assert [trainer.learning_rate(s) for s in (0, 3, 4, 7)] == [0.5, 0.5, 0.25, 0.25]
    assert trainer.learning_rate() == 0.125  # the next update, the 9th: epoch 3


def test_fit_reports_each_epoch_start_and_the_progress_inside_it(tmp_path: Path) -> None:
    starts: list[int] = []
    progress: list[int] = []
    fit(Trainer(made_up_config("training.epochs=2"), made_up_data()), RunFiles.create(tmp_path / "run"),
        on_epoch_start=starts.append, on_batch=progress.append)
    assert starts == [1, 2]
    assert progress == [16, 32, 48, 50] * 2


def test_times_are_durations_and_the_session_counts_from_started(tmp_path: Path) -> None:
    # `started` lets the CLI count the data loading too; seconds are differences of the clock, never
    # clock readings.
    shown: list[EpochMetrics] = []
    began = time.perf_counter() - 1000.0
    summary = fit(Trainer(made_up_config("training.epochs=2"), made_up_data(validation=10)),
                  RunFiles.create(tmp_path / "run"), on_epoch_end=shown.append, started=began)
    assert all(0 <= r.seconds < 60 and 0 <= r.eval_seconds < 60 for r in shown)
    assert 1000 <= summary.seconds < 1060


class ScriptedTrainer(Trainer):
    """A Trainer whose epochs train normally but report the given validation accuracies, so that the
    choice of best.npz can be tested on any sequence, ties included."""

    def __init__(self, cfg: Config, data: Dataset, accuracies: list[float]) -> None:
        super().__init__(cfg, data)
        self.accuracies = accuracies

    def run_epoch(self, on_batch: Callable[[int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> EpochMetrics:
        row = super().run_epoch(on_batch, should_stop)
        row.val_accuracy = self.accuracies[row.epoch - 1]
        return row


@pytest.mark.parametrize("accuracies,best", [([0.5, 0.8, 0.8, 0.7], 2), ([0.9, 0.2, 0.3, 0.4], 1),
                                             ([0.1, 0.2, 0.3, 0.4], 4)])
def test_best_checkpoint_is_the_first_epoch_with_the_highest_accuracy(
    tmp_path: Path, accuracies: list[float], best: int
) -> None:
    # On a tie the earlier epoch stays best: the one the summary names too.
    files = RunFiles.create(tmp_path / "run")
    summary = fit(ScriptedTrainer(made_up_config("training.epochs=4"), made_up_data(validation=10), accuracies), files)
    saved = checkpoint.load(files.best)
    assert (saved.epoch, saved.best_accuracy) == (best, max(accuracies))
    assert (summary.best_epoch, summary.best_val_accuracy) == (best, max(accuracies))


def test_interrupted_before_an_epochs_first_batch_resumes_with_the_same_shuffle(tmp_path: Path) -> None:
    # Stopped between epochs 1 and 2, the checkpoint must replay epoch 2's permutation on resume:
    # the resumed run ends bitwise where an uninterrupted one does.
    cfg, data = made_up_config("training.epochs=2"), made_up_data()
    straight = Trainer(cfg, data)
    fit(straight, RunFiles.create(tmp_path / "straight"))
    first = Trainer(cfg, data)
    files = RunFiles.create(tmp_path / "stopped")
    asked = iter(range(1000))
    with pytest.raises(Interrupted):
        fit(first, files, should_stop=lambda: next(asked) == first.steps_per_epoch)
    saved = checkpoint.load(files.last)
    assert (saved.epoch, saved.rng_state["position"]["batch"]) == (1, 0)
    resumed = Trainer(cfg, data)
    resumed.restore(saved)
    fit(resumed, files)
    for l in straight.net.layers:
        assert np.array_equal(straight.net.w[l], resumed.net.w[l]) and np.array_equal(straight.net.b[l], resumed.net.b[l])
