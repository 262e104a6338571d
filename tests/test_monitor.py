"""Per-layer learning statistics against a direct computation, and their rendering at 60 and 120
columns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bpcli.cli import app
from bpcli.monitor import SATURATION, LayerMonitor, slowdown
from bpcli.network import Network
from bpcli.render import layers as layer_view

from conftest import CONFIGS


def _batch(rng: np.random.Generator, m: int, n_in: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.random((m, n_in))
    y = np.eye(classes)[rng.integers(0, classes, m)]
    return x, y


def test_relu_statistics_equal_a_direct_computation_and_find_the_dead_unit(rng: np.random.Generator) -> None:
    net = Network.create((5, 4, 3, 2), "relu", "softmax", "cross_entropy", "he", rng, dtype=np.float64)
    net.b[2][1] = -100.0  # unit 1 of layer 2 can never be active: dead
    x, y = _batch(rng, 7, 5, 2)
    z2 = x @ net.w[2].T + net.b[2]  # layer 2's z, computed directly
    monitor = LayerMonitor(net, steps_per_epoch=1)
    cache = net.forward(x)
    monitor.forward(cache)
    scale = 0.25  # the backward pass computes scale * gradient, as training does for SGD
    grads = net.backward(cache, y, scale=scale)
    monitor.backward(grads, scale)
    monitor.before_step()
    before = {l: net.w[l].copy() for l in net.layers}
    for l in net.layers:  # an SGD step, eta folded into the gradient
        net.w[l] -= grads.dw[l]
        net.b[l] -= grads.db[l]
    monitor.after_step()
    rows = monitor.epoch_stats()

    assert [r.l for r in rows] == [2, 3, 4]
    for r in rows:
        l = r.l
        dw = grads.dw[l] / scale
        assert r.grad_rms_w == pytest.approx(np.sqrt(np.mean(dw ** 2)), rel=1e-12)
        assert r.grad_rms_b == pytest.approx(np.sqrt(np.mean((grads.db[l] / scale) ** 2)), rel=1e-12)
        assert r.weight_norm == pytest.approx(np.linalg.norm(net.w[l]))
        assert r.update_ratio == pytest.approx(np.linalg.norm(net.w[l] - before[l]) / np.linalg.norm(net.w[l]))
        assert r.saturated is None
    assert rows[0].dead == pytest.approx(np.mean(~(z2 > 0).any(axis=0))) and rows[0].dead >= 0.25
    assert rows[1].dead == pytest.approx(np.mean(~(cache.z[3] > 0).any(axis=0)))
    assert rows[2].dead is None  # the output layer is softmax: neither dead nor alive


def test_sigmoid_saturation_is_the_share_of_large_z(rng: np.random.Generator) -> None:
    net = Network.create((6, 5, 3), "sigmoid", "softmax", "cross_entropy", "normal", rng, dtype=np.float64)
    net.w[2] *= 8.0  # push many |z| past the threshold
    x, _ = _batch(rng, 9, 6, 3)
    monitor = LayerMonitor(net, steps_per_epoch=1)
    cache = net.forward(x)
    monitor.forward(cache)
    expected = np.mean(np.abs(cache.z[2]) >= SATURATION["sigmoid"])
    assert 0 < expected < 1
    rows = monitor.epoch_stats()
    assert rows[0].saturated == pytest.approx(expected) and rows[0].dead is None


def test_only_every_kth_batch_is_sampled() -> None:
    net = Network.create((4, 3, 2), "sigmoid", "softmax", "cross_entropy", "normal", np.random.default_rng(0))
    monitor = LayerMonitor(net, steps_per_epoch=320)
    assert [b for b in range(320) if monitor.sample(b)] == list(range(0, 320, 10))


def test_slowdown_compares_first_and_last_hidden_layers() -> None:
    rows = [{"l": 2, "grad_rms_b": 1e-4}, {"l": 3, "grad_rms_b": 5e-4}, {"l": 4, "grad_rms_b": 1e-3},
            {"l": 5, "grad_rms_b": 9.0}]
    assert slowdown(rows) == (2, 4, pytest.approx(0.1))
    assert slowdown(rows[-2:]) is None  # one hidden layer: nothing to compare


def _rows(n_layers: int) -> list[dict]:
    return [{"l": l, "n": 30, "grad_rms_w": 1e-3, "grad_rms_b": 10.0 ** -(8 - l), "weight_norm": 152.31,
             "update_ratio": 3.6e-4, "saturated": 0.703 if l < n_layers + 1 else None, "dead": None}
            for l in range(2, n_layers + 2)]


@pytest.mark.parametrize("width", [60, 80, 120])
def test_layer_table_fits_and_calls_out_the_slowdown(width: int) -> None:
    lines = [t.plain for t in layer_view.table_lines(_rows(5), width - 3, epoch=4)]
    assert all(len(line) <= width - 3 for line in lines)
    assert "…" not in "".join(lines)
    assert lines[-1].startswith("layer 2 learns 0.001x as fast as layer 5")
    assert "70.3%" in lines[1] and "152.3" in lines[1]
    assert ("dC/db rms" in lines[0]) == (width - 3 >= layer_view.WIDE)


def test_train_logs_layers_and_shows_them(mnist_dir: Path, tmp_path: Path) -> None:
    sets = [f"data.path={mnist_dir}", "data.limit=600", "data.validation_size=200", "training.epochs=1",
            "model.layers=[784, 12, 12, 10]"]
    argv = ["train", str(CONFIGS / "tiny.yaml"), *[a for s in sets for a in ("--set", s)]]
    shown = CliRunner().invoke(app, [*argv, "--out", str(tmp_path / "a")])
    assert shown.exit_code == 0, shown.output
    row = json.loads((tmp_path / "a" / "metrics.jsonl").read_text())
    assert [r["l"] for r in row["layers"]] == [2, 3, 4]
    assert layer_view.plain_line(row["layers"]) in shown.output
    hidden = CliRunner().invoke(app, [*argv, "--out", str(tmp_path / "b"), "--no-layers"])
    assert hidden.exit_code == 0 and "dC/db rms" not in hidden.output
