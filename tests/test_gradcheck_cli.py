"""`bpcli gradcheck` through the command line: output, JSON file, exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bpcli import config
from bpcli.checkpoint import Checkpoint, save
from bpcli.cli import app
from bpcli.costs import output_delta
from bpcli.network import Cache, Grads, Network

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["gradcheck", *args])
    return result.exit_code, result.stdout, result.stderr


def test_tiny_on_mnist_passes_and_writes_json(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "gc.json"
    code, stdout, _ = run(TINY, "--set", f"data.path={mnist_dir}", "--batch", "3", "--json", str(out))
    assert code == 0
    assert "PASS" in stdout and "R^(16x784)" in stdout and "R^16" in stdout
    assert "first 3 MNIST test examples" in stdout
    data = json.loads(out.read_text())
    assert data["passed"] is True and data["method"] == "central" and data["examples"] == 3
    assert list(data["paths"]) == ["reference", "training"] and data["failed"] == {"reference": [], "training": []}
    for path in ("reference", "training"):
        assert [g["name"] for g in data["paths"][path]["groups"]] == ["w^2", "b^2", "w^3", "b^3"]
    w2 = data["paths"]["reference"]["groups"][0]
    assert w2["shape"] == [16, 784] and w2["checked"] == 16 * 784 and w2["passed"] is True
    assert 0 <= w2["max_rel_error"] <= 1e-7 and w2["max_abs_error"] >= 0 and w2["verdict"] == "pass"
    assert data["paths"]["training"]["dtype"] == "float32" and data["paths"]["training"]["training"]["scale"] == 0.5
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary left behind


@pytest.mark.parametrize("method", ["complex", "directional"])
def test_other_methods_on_random_data(method: str, tmp_path: Path) -> None:
    out = tmp_path / "gc.json"
    code, stdout, _ = run(TINY, "--random-data", "--method", method, "--json", str(out))
    assert code == 0, stdout
    data = json.loads(out.read_text())
    assert data["method"] == method and data["passed"] is True and data["examples"] == 3  # the default batch


def test_a_planted_bug_exits_1_and_names_every_group(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Network.backward with the cost derivative doubled (the classic lost 1/2)."""

    def backward(self: Network, cache: Cache, y: np.ndarray, workspace: object = None, scale: float = 1.0) -> Grads:
        L = self.L
        delta = {L: 2 * output_delta(self.cost, self.output, cache.z[L], cache.a[L], y, scale=scale)}
        for l in range(L - 1, 1, -1):
            delta[l] = self.sigma(l).chain(delta[l + 1] @ self.w[l + 1], cache.z[l], cache.a[l])
        return Grads({l: delta[l].T @ cache.a[l - 1] for l in self.layers},
                     {l: delta[l].sum(axis=0) for l in self.layers}, delta)

    monkeypatch.setattr(Network, "backward", backward)
    out = tmp_path / "gc.json"
    code, stdout, _ = run(TINY, "--random-data", "--batch", "2", "--entries", "50", "--json", str(out))
    assert code == 1
    assert "FAIL" in stdout and "w^2, b^2, w^3, b^3" in stdout
    data = json.loads(out.read_text())
    assert data["passed"] is False
    assert data["failed"] == {"reference": ["w^2", "b^2", "w^3", "b^3"], "training": ["w^2", "b^2", "w^3", "b^3"]}
    assert [g["checked"] for g in data["paths"]["training"]["groups"]] == [50, 16, 50, 10]


def test_relu_kinks_and_l2_are_said(tmp_path: Path) -> None:
    code, stdout, _ = run(TINY, "--random-data", "--set", "model.activation=relu", "--set", "training.l2=0.01",
                          "--entries", "20")
    assert code == 0
    assert "kink" in stdout and "L2" in stdout and "not checked" in stdout


def test_checkpoint_network_is_checked(tmp_path: Path) -> None:
    cfg = config.load(TINY, ["model.layers=[784, 8, 10]"])
    net = Network.from_config(cfg.model, 5, "float32")
    net.w[3] *= 3.0
    save(tmp_path / "ckpt.npz", Checkpoint(cfg, net, epoch=2))
    out = tmp_path / "gc.json"
    code, stdout, _ = run("--checkpoint", str(tmp_path / "ckpt.npz"), "--random-data", "--json", str(out))
    assert code == 0 and "checkpoint" in stdout and "epoch 2" in stdout
    assert json.loads(out.read_text())["sizes"] == [784, 8, 10]


@pytest.mark.parametrize(("args", "needle"), [
    (["--random-data", "--set", "model.activation=relu", "--method", "complex"], "complex"),
    (["--random-data", "--method", "forward"], "--method"),
    (["--random-data", "--entries", "many"], "--entries"),
    (["--random-data", "--entries", "0"], "--entries"),
    (["--random-data", "--eps", "0"], "--eps"),
    (["--random-data", "--set", "model.layerz=[3, 2]"], "layerz"),
    (["--set", "data.path=/nonexistent/mnist"], "/nonexistent/mnist"),
    (["--random-data", "--json", "/nonexistent/dir/gc.json"], "--json"),
])
def test_bad_input_exits_2_with_one_line(args: list[str], needle: str) -> None:
    code, _, stderr = run(TINY, *args)
    assert code == 2
    assert needle in stderr and "Traceback" not in stderr


def test_missing_config_and_checkpoint_exit_2(tmp_path: Path) -> None:
    code, _, stderr = run()
    assert code == 2 and "CONFIG" in stderr
    code, _, stderr = run(str(tmp_path / "nope.yaml"), "--random-data")
    assert code == 2 and "nope.yaml" in stderr
    code, _, stderr = run("--checkpoint", str(tmp_path / "nope.npz"), "--random-data")
    assert code == 2 and "nope.npz" in stderr


def test_checkpoint_with_a_different_model_exits_2(tmp_path: Path) -> None:
    cfg = config.load(TINY)
    save(tmp_path / "ckpt.npz", Checkpoint(cfg, Network.from_config(cfg.model, 0, "float32")))
    code, _, stderr = run("--checkpoint", str(tmp_path / "ckpt.npz"), "--random-data",
                          "--set", "model.layers=[784, 20, 10]")
    assert code == 2 and "model" in stderr


def test_batch_must_be_positive() -> None:
    code, _, _ = run(TINY, "--random-data", "--batch", "0")
    assert code == 2
