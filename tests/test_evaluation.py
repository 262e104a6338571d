"""`evaluate`: the confusion matrix has one row per true label and one column per prediction, and the
accuracy and loss are the ones that matrix and the outputs give.

Why a hand-made network: with w = 10 I and b = 0, a one-hot input e_k is predicted as class k, so the
test chooses every (true, predicted) pair and knows the matrix in advance; a transposed matrix or an
accuracy computed from the wrong thing shows as a wrong number.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bpcli.cli import app
from bpcli.data import Split, load_mnist, one_hot
from bpcli.network import Network
from bpcli.train import evaluate

from conftest import CONFIGS

# (true label, predicted label) for six examples: class 0 right once and taken for 1 once, class 1
# right, class 2 taken for 0 once and right twice.
PAIRS = [(0, 0), (0, 1), (1, 1), (2, 0), (2, 2), (2, 2)]
CONFUSION = [[1, 1, 0],
             [0, 1, 0],
             [1, 0, 2]]


def picking_network() -> Network:
    """[3, 3] softmax / cross-entropy network that predicts argmax(x): w = 10 I, b = 0."""
    net = Network.create([3, 3], output="softmax", cost="cross_entropy")
    net.w[2][...] = 10 * np.eye(3)
    net.b[2][...] = 0
    return net


def chosen_split() -> Split:
    labels = np.array([t for t, _ in PAIRS])
    x = one_hot(np.array([p for _, p in PAIRS]), 3, np.float64)
    return Split(x, one_hot(labels, 3, np.float64), labels)


@pytest.mark.parametrize("batch_size", [10_000, 4, 1])
def test_confusion_rows_are_true_labels_and_accuracy_is_its_diagonal(batch_size: int) -> None:
    result = evaluate(picking_network(), chosen_split(), batch_size=batch_size)
    assert result.confusion.tolist() == CONFUSION
    assert result.accuracy == 4 / 6
    # Cross-entropy of softmax(10 e_p) at the true class: e^10 / (e^10 + 2) when right, 1 / (e^10 + 2)
    # when wrong; the loss is the mean over all six, whatever the batching.
    right, wrong = -math.log(math.exp(10) / (math.exp(10) + 2)), -math.log(1 / (math.exp(10) + 2))
    assert result.loss == pytest.approx((4 * right + 2 * wrong) / 6, rel=1e-12)


def test_an_empty_split_evaluates_to_zeros() -> None:
    empty = Split(np.empty((0, 3)), np.empty((0, 3)), np.empty(0, dtype=np.int64))
    result = evaluate(picking_network(), empty)
    assert (result.loss, result.accuracy) == (0.0, 0.0) and result.confusion.tolist() == [[0] * 3] * 3


def test_cli_evaluate_confusion_rows_sum_to_the_test_labels(mnist_dir: Path, tmp_path: Path) -> None:
    # On real MNIST: row k of the matrix holds every test image whose true label is k, so the row sums
    # are the label counts of the test set, and the reported accuracy is the diagonal's share.
    out = tmp_path / "run"
    sets = [f"data.path={mnist_dir}", "data.limit=600", "data.validation_size=100", "training.epochs=1"]
    trained = CliRunner().invoke(app, ["train", str(CONFIGS / "tiny.yaml"), *[a for s in sets for a in ("--set", s)],
                                       "--out", str(out), "--json"])
    assert trained.exit_code == 0, trained.output
    result = CliRunner().invoke(app, ["evaluate", str(out / "best.npz"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    confusion = np.array(report["confusion"])
    labels = load_mnist(mnist_dir, validation_size=0).test.labels
    assert confusion.sum(axis=1).tolist() == np.bincount(labels, minlength=10).tolist()
    assert confusion.sum(axis=0).tolist() != confusion.sum(axis=1).tolist()  # not symmetric: rows are pinned
    assert report["test_accuracy"] == np.trace(confusion) / len(labels)
    assert report["test_accuracy"] == json.loads(trained.output)["test_accuracy"]  # best = last after 1 epoch
    assert report["epoch"] == 1
    assert report["batch"] == 0

    # A checkpoint saved inside epoch 2 (an interrupt) says so, in the line and in the JSON.
    from dataclasses import replace

    from bpcli import checkpoint

    last = checkpoint.load(out / "last.npz")
    position = {**last.rng_state["position"], "batch": 7, "epoch_rng_state": last.rng_state["rng"]}
    inside = replace(last, rng_state={**last.rng_state, "position": position})
    checkpoint.save(tmp_path / "inside.npz", inside)
    shown = CliRunner().invoke(app, ["evaluate", str(tmp_path / "inside.npz")])
    assert shown.exit_code == 0, shown.output
    assert "after 1 epoch and 7 batches of epoch 2, from" in " ".join(shown.stdout.split())
    assert json.loads(CliRunner().invoke(app, ["evaluate", str(tmp_path / "inside.npz"), "--json"]).stdout)["batch"] == 7
