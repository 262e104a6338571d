"""`bpcli explain`: every concrete shape and count it prints is the real network's, the traced
derivative is the backprop gradient entry and the central difference, the Markdown for
configs/tiny.yaml matches its snapshot, and bad options give one line and exit code 2.

Regenerate the snapshot after an intended change with
    BPCLI_UPDATE_SNAPSHOTS=1 pytest tests/test_explain.py -k snapshot
and read the diff before committing it.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from bpcli import config, explain
from bpcli.checkpoint import Checkpoint, save
from bpcli.cli import app
from bpcli.data import read_idx
from bpcli.network import Network

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
SNAPSHOT = Path(__file__).parent / "snapshots" / "explain_tiny.md"

# Architectures to check against, as --set overrides on tiny.yaml (configs/tiny.yaml itself first).
ARCHITECTURES: list[list[str]] = [
    [],
    ["model.layers=[784, 100, 10]"],
    ["model.layers=[784, 30, 20, 10]", "training.batch_size=7"],
    ["model.layers=[784, 10]"],
    ["model.layers=[5, 4, 3, 3, 2]", "model.activation=tanh", "model.output=identity", "model.cost=quadratic",
     "training.dtype=float64"],
    ["model.layers=[3, 4, 2]", "model.output=sigmoid", "model.cost=quadratic", "training.batch_size=1"],
]


def sets(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def run(*args: str) -> Any:
    result = CliRunner().invoke(app, ["explain", *args])
    assert result.exit_code == 0, result.output
    return result


def run_json(*args: str) -> dict[str, Any]:
    return json.loads(run(*args, "--format", "json").stdout)


def network_for(overrides: list[str]) -> tuple[config.Config, Network]:
    cfg = config.load(TINY, overrides)
    return cfg, Network.from_config(cfg.model, cfg.training.seed, cfg.training.dtype)


# -- shapes and counts against the real arrays ------------------------------------------------------


@pytest.mark.parametrize("overrides", ARCHITECTURES, ids=lambda o: " ".join(o) or "tiny")
def test_json_shapes_and_counts_are_the_networks(overrides: list[str]) -> None:
    data = run_json(str(TINY), *sets(overrides))
    cfg, net = network_for(overrides)
    m = cfg.training.batch_size
    x = np.random.default_rng(0).random((m, net.sizes[0])).astype(net.dtype)
    y = np.eye(net.sizes[-1], dtype=net.dtype)[np.arange(m) % net.sizes[-1]]
    cache = net.forward(x)
    grads = net.backward(cache, y)

    assert data["L"] == net.L
    assert data["sizes"] == list(net.sizes)
    assert data["n_w"] == net.n_w == sum(w.size for w in net.w.values())
    assert data["n_b"] == net.n_b == sum(b.size for b in net.b.values())
    assert data["n_params"] == net.n_w + net.n_b
    assert data["bytes"] == sum(p.nbytes for p in net.params())
    assert data["dtype"] == net.dtype.name
    assert [row["l"] for row in data["layers"]] == list(range(1, net.L + 1))

    first = data["layers"][0]
    assert first["n"] == net.sizes[0] and first["w"] is None and first["b"] is None
    assert first["batch"] == list(cache.a[1].shape)
    for row in data["layers"][1:]:
        l = row["l"]
        assert row["n"] == net.sizes[l - 1]
        assert row["w"] == list(net.w[l].shape)
        assert row["b"] == list(net.b[l].shape)
        assert row["z"] == list(cache.z[l].shape[1:])
        assert row["a"] == list(cache.a[l].shape[1:])
        assert row["delta"] == list(grads.delta[l].shape[1:])
        assert row["batch"] == list(cache.z[l].shape) == list(cache.a[l].shape) == list(grads.delta[l].shape)
        assert row["weights"] == net.w[l].size == grads.dw[l].size
        assert row["biases"] == net.b[l].size == grads.db[l].size
        assert row["activation"] == net.sigma(l).name


@pytest.mark.parametrize("overrides", ARCHITECTURES, ids=lambda o: " ".join(o) or "tiny")
def test_notation_states_the_concrete_types(overrides: list[str]) -> None:
    data = run_json(str(TINY), *sets(overrides), "--section", "notation")
    _, net = network_for(overrides)
    rows = {row["symbol"]: row for row in data["notation"]}
    assert list(rows) == ["x", "y", "L", "l", "n_l", "w", "b", "n_w", "n_b", "w^l", "w^l_jk", "b^l", "z^l",
                          "a^l", "sigma", "C", "delta^l"]
    assert rows["x"]["concrete"] == explain.space(net.sizes[0])
    assert rows["y"]["concrete"] == explain.space(net.sizes[-1])
    assert rows["L"]["concrete"] == f"L = {net.L}"
    assert rows["w"]["concrete"] == explain.space(net.n_w)
    assert rows["b"]["concrete"] == explain.space(net.n_b)
    assert rows["n_w"]["concrete"].endswith(f"= {net.n_w:,}")
    assert rows["n_b"]["concrete"].endswith(f"= {net.n_b:,}")
    assert rows["C"]["concrete"] == f"R^{net.n_w + net.n_b:,} -> R"
    for l in net.layers:
        n, n_prev = net.w[l].shape
        assert f"w^{l} in {explain.space(n, n_prev)}" in rows["w^l"]["concrete"]
        assert f"w^{l}_jk: j in 0..{n - 1}, k in 0..{n_prev - 1}" in rows["w^l_jk"]["concrete"]
        for symbol in ("b", "z", "delta"):
            assert f"{symbol}^{l} in {explain.space(n)}" in rows[f"{symbol}^l"]["concrete"]


@pytest.mark.parametrize("overrides", ARCHITECTURES, ids=lambda o: " ".join(o) or "tiny")
def test_unrolled_domain_offsets_address_the_real_entries(overrides: list[str]) -> None:
    """The offsets section 3 prints are where each w^l_jk and b^l_j sit in w, b and theta = (w, b)."""
    data = run_json(str(TINY), *sets(overrides), "--section", "cost")
    _, net = network_for(overrides)
    w = np.concatenate([net.w[l].ravel() for l in net.layers])
    b = np.concatenate([net.b[l].ravel() for l in net.layers])
    theta = np.concatenate([w, b])
    assert data["cost"]["concrete_type"].startswith(f"C : R^{theta.size:,} -> R")
    rng = np.random.default_rng(0)
    for block in data["cost"]["blocks"]:
        l = block["l"]
        array = net.w[l] if block["kind"] == "w" else net.b[l]
        assert block["shape"] == list(array.shape)
        assert block["end"] - block["offset"] == array.size
        assert block["theta_end"] - block["theta_offset"] == array.size
        flat = w if block["kind"] == "w" else b
        np.testing.assert_array_equal(flat[block["offset"] : block["end"]], array.ravel())
        np.testing.assert_array_equal(theta[block["theta_offset"] : block["theta_end"]], array.ravel())
        # The printed formula for one entry, e.g. "w^3_jk = w[12544 + 16 j + k]".
        numbers = [int(v) for v in re.findall(r"\d+", block["index"].split("=", 1)[1])]
        if block["kind"] == "w":
            offset, stride = numbers
            j, k = int(rng.integers(array.shape[0])), int(rng.integers(array.shape[1]))
            assert w[offset + stride * j + k] == net.w[l][j, k]
        else:
            (offset,) = numbers
            j = int(rng.integers(array.shape[0]))
            assert b[offset + j] == net.b[l][j]


def test_equations_follow_the_induction_order() -> None:
    data = run_json(str(TINY), *sets(["model.layers=[784, 30, 20, 10]"]), "--section", "equations")
    eq = data["equations"]
    assert [r["l"] for r in eq["forward"]] == [2, 3, 4]
    assert [r["l"] for r in eq["backward"]] == [4, 3, 2]
    assert eq["backward"][0]["math"] == "delta^4 = a^4 - y"
    assert "delta^4" in eq["backward"][1]["uses"] and "z^3" in eq["backward"][1]["uses"]
    assert [i["type"] for i in eq["induction"]] == ["R^10 -> R", "R^20 -> R", "R^30 -> R"]
    assert eq["forward"][1]["code"].endswith("-> (32, 20)")


# -- the trace ------------------------------------------------------------------------------------------

PAIRS = [("sigmoid", "softmax", "cross_entropy"), ("tanh", "sigmoid", "cross_entropy"),
         ("relu", "identity", "quadratic"), ("sigmoid", "sigmoid", "quadratic"), ("tanh", "softmax", "quadratic")]


@pytest.mark.parametrize("hidden,output,cost", PAIRS)
def test_trace_equals_backprop_and_central_difference(hidden: str, output: str, cost: str) -> None:
    """Pure function, synthetic example: every output and cost pair, every layer, deltas rebuilt."""
    rng = np.random.default_rng(7)
    net = Network.create([6, 5, 4, 3], hidden, output, cost, "xavier", rng)
    x, y = rng.random(6), np.eye(3)[1]
    example = explain.Example(x, y, 0, 1, "synthetic")
    cache = net.forward(x[None])
    grads = net.backward(cache, y[None])
    for l in net.layers:
        j, k = int(rng.integers(net.sizes[l - 1])), int(rng.integers(net.sizes[l - 2]))
        t = explain.build_trace(net, (l, j, k), example)
        expected = grads.dw[l][j, k]
        assert t.backprop == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert t.product == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert abs(t.numerical - expected) <= 1e-6 * abs(expected) + 1e-9
        assert t.agrees
        assert t.a_prev == cache.a[l - 1][0, k] and t.z == pytest.approx(cache.z[l][0, j])
        assert t.delta == pytest.approx(grads.delta[l][0, j])
        if l < net.L:
            # delta^l_j = sigma'(z^l_j) * sum_i w^(l+1)_ij delta^(l+1)_i, with the terms listed.
            assert t.n_terms == net.sizes[l]
            assert t.weighted_sum == pytest.approx(net.w[l + 1][:, j] @ grads.delta[l + 1][0])
            assert t.delta == pytest.approx(t.sigma_prime * t.weighted_sum)
            assert t.rest + sum(term.product for term in t.terms) == pytest.approx(t.weighted_sum)
            assert [abs(term.product) for term in t.terms] == sorted((abs(term.product) for term in t.terms),
                                                                     reverse=True)
        elif net.cost.fused_with(net.output):
            assert t.delta == pytest.approx(t.a - t.y)


def test_central_difference_restores_the_weight() -> None:
    net = Network.create([4, 3, 2], rng=np.random.default_rng(0))
    before = net.w[2].copy()
    explain.central_difference(net, np.ones((1, 4)), np.eye(2)[:1], 2, 1, 2)
    np.testing.assert_array_equal(net.w[2], before)


TRACED = [
    ([], "2,3,354"),  # a^1_354 is a bright pixel of test image 0, so the derivative is not 0
    ([], "3,7,15"),
    (["model.layers=[784, 30, 20, 10]"], "2,29,355"),
    (["model.layers=[784, 30, 20, 10]"], "3,4,12"),
    (["model.layers=[784, 30, 20, 10]", "model.output=sigmoid", "model.cost=quadratic"], "4,0,19"),
]


@pytest.mark.parametrize("overrides,weight", TRACED)
def test_cli_trace_on_a_test_image(mnist_dir: Path, overrides: list[str], weight: str) -> None:
    data = run_json(str(TINY), *sets(overrides), "--set", f"data.path={mnist_dir}", "--weight", weight)
    assert "trace" in data["sections"]
    t = data["trace"]
    l, j, k = (int(v) for v in weight.split(","))
    assert (t["l"], t["j"], t["k"], t["example"]) == (l, j, k, 0)
    _, net = network_for(overrides)
    net = net.astype(np.float64)
    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    x = images[0].reshape(1, -1) / 255.0
    y = np.eye(10)[labels[:1]]
    grads = net.backward(net.forward(x), y)
    expected = grads.dw[l][j, k]
    assert expected != 0.0
    assert t["label"] == int(labels[0])
    assert t["a_prev"] == pytest.approx(net.forward(x).a[l - 1][0, k])
    assert t["backprop"] == pytest.approx(expected, rel=1e-12)
    assert t["product"] == pytest.approx(expected, rel=1e-12)
    assert t["numerical"] == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_trace_with_another_example_and_the_rich_view(mnist_dir: Path) -> None:
    out = run(str(TINY), "--set", f"data.path={mnist_dir}", "--weight", "2,0,300", "--example", "3",
              "--section", "trace").stdout
    labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert "6 · One partial derivative, traced" in out
    assert f"test example 3 (label {labels[3]})" in out
    assert "central difference" in out and "✓ agree" in out


# -- checkpoint -----------------------------------------------------------------------------------------


def test_checkpoint_parameters_are_explained(tmp_path: Path, mnist_dir: Path) -> None:
    cfg, net = network_for(["model.layers=[784, 12, 10]"])
    net.w[3] *= 3.0  # "trained": different from a fresh initialization
    save(tmp_path / "ckpt.npz", Checkpoint(cfg, net, epoch=4))
    data = run_json("--checkpoint", str(tmp_path / "ckpt.npz"), "--set", f"data.path={mnist_dir}",
                    "--weight", "3,1,5")
    assert data["sizes"] == [784, 12, 10] and "epoch 4" in data["source"]
    x = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[0].reshape(1, -1) / 255.0
    y = np.eye(10)[read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")[:1]]
    net64 = net.astype(np.float64)
    assert data["trace"]["w"] == pytest.approx(net.w[3][1, 5])
    assert data["trace"]["backprop"] == pytest.approx(net64.backward(net64.forward(x), y).dw[3][1, 5], rel=1e-6)


def test_checkpoint_refuses_a_model_override(tmp_path: Path) -> None:
    cfg, net = network_for([])
    save(tmp_path / "ckpt.npz", Checkpoint(cfg, net))
    result = CliRunner().invoke(app, ["explain", "--checkpoint", str(tmp_path / "ckpt.npz"),
                                      "--set", "model.layers=[784, 20, 10]"])
    assert result.exit_code == 2
    assert "model" in result.stderr


# -- graph export -----------------------------------------------------------------------------------------


def graph_ids(text: str, fmt: str) -> tuple[set[str], list[tuple[str, str]]]:
    if fmt == "mermaid":
        nodes = set(re.findall(r"^  (\w+)[\[(]", text, re.M))
        edges = re.findall(r"^  (\w+) --> (\w+)$", text, re.M)
    else:
        nodes = set(re.findall(r"^  (\w+) \[label=", text, re.M))
        edges = re.findall(r"^  (\w+) -> (\w+);$", text, re.M)
    return nodes, edges


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_graph_export_collapses_large_layers(fmt: str) -> None:
    text = run(str(TINY), "--set", "model.layers=[784, 100, 10]", "--graph", fmt).stdout
    assert text.startswith("flowchart LR" if fmt == "mermaid" else "digraph backprop {")
    nodes, edges = graph_ids(text, fmt)
    assert {"a1", "w2", "b2", "a2", "a3", "y", "C"} <= nodes
    assert not any(re.fullmatch(r"[wba]2_\d+.*", n) for n in nodes)  # one node per w^2, b^2, a^2
    assert {f"w3_{j}" for j in range(10)} <= nodes  # the 10-neuron layer is drawn neuron by neuron
    assert all(src in nodes and dst in nodes for src, dst in edges)
    assert ("w2", "a2") in edges and ("a3", "C") in edges and ("y", "C") in edges
    if fmt == "dot":
        assert text.rstrip().endswith("}") and text.count("{") == text.count("}")


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_graph_export_small_network_has_every_weight(fmt: str) -> None:
    text = run(str(TINY), "--set", "model.layers=[3, 4, 2]", "--set", "model.output=sigmoid", "--graph", fmt).stdout
    nodes, edges = graph_ids(text, fmt)
    weights = {n for n in nodes if n.startswith("w")}
    expected = {f"w2_{j}_{k}" for j in range(4) for k in range(3)} | {f"w3_{j}_{k}" for j in range(2) for k in range(4)}
    assert weights == expected
    for j in range(4):  # neuron j of layer 2 is fed by its 3 weights, its bias and the 3 inputs
        assert sorted(src for src, dst in edges if dst == f"a2_{j}") == sorted(
            [f"w2_{j}_{k}" for k in range(3)] + [f"b2_{j}"] + [f"a1_{k}" for k in range(3)])


def test_graph_of_tiny_draws_neurons_and_rows() -> None:
    data = run_json(str(TINY), "--section", "graph")
    nodes = {n["id"]: n for n in data["graph"]["nodes"]}
    assert nodes["a1"]["size"] == 784
    assert {f"w2_{j}" for j in range(16)} <= set(nodes) and nodes["w2_0"]["size"] == 784
    assert {f"z3_{j}" for j in range(10)} <= set(nodes)  # softmax: neurons form z^3_j, one node a^3
    assert sum(n["size"] for n in nodes.values() if n["kind"] == "weight") == 784 * 16 + 16 * 10
    assert sum(n["size"] for n in nodes.values() if n["kind"] == "bias") == 16 + 10


# -- Markdown snapshot and the terminal view ------------------------------------------------------------


def test_markdown_snapshot_of_tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the source line names the config path as given
    text = run("configs/tiny.yaml", "--format", "markdown").stdout
    if os.environ.get("BPCLI_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(text, encoding="utf-8")
    expected = SNAPSHOT.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True),
                                            str(SNAPSHOT), "bpcli explain configs/tiny.yaml --format markdown"))
        pytest.fail(f"Markdown differs from the snapshot; if the change is intended, regenerate it with "
                    f"BPCLI_UPDATE_SNAPSHOTS=1 pytest {Path(__file__).name} -k snapshot\n{diff}")


def test_markdown_sections_in_order() -> None:
    text = run(str(TINY), "--format", "markdown").stdout
    titles = re.findall(r"^## (\d)\. (.+)$", text, re.M)
    assert [int(n) for n, _ in titles] == [1, 2, 3, 4, 5]
    assert "```mermaid\nflowchart LR" in text
    only = run(str(TINY), "--format", "markdown", "--section", "cost", "--section", "notation").stdout
    assert re.findall(r"^## (\d)\.", only, re.M) == ["1", "3"]


def test_rich_view_has_every_section() -> None:
    out = run(str(TINY)).stdout
    for number, name in enumerate(explain.SECTIONS[:5], 1):
        assert f"{number} · {explain.TITLES[name]}" in out
    assert "C : R^12,730 -> R" in out
    assert "z[2]" in out  # array indices survive (not eaten as Rich markup)
    assert "--weight l,j,k" in out  # the hint for the trace


# -- errors: one line, exit code 2 ---------------------------------------------------------------------------


@pytest.mark.parametrize("args,needles", [
    (["--section", "shapes"], ["'shapes'", "notation, layers, cost, equations, graph, trace"]),
    (["--weight", "4,0,0"], ["l must be in 2..3", "for l=2, j in 0..15 and k in 0..783"]),
    (["--weight", "2,16,0"], ["out of range", "j in 0..15"]),
    (["--weight", "3,0,16"], ["out of range", "for l=3, j in 0..9 and k in 0..15"]),
    (["--weight", "2,0"], ["expected l,j,k"]),
    (["--weight", "two,0,0"], ["expected l,j,k"]),
    (["--section", "trace"], ["needs --weight"]),
    (["--format", "html"], ["rich, markdown or json"]),
    (["--graph", "svg"], ["mermaid or dot"]),
])
def test_bad_options_give_one_line_and_exit_2(args: list[str], needles: list[str]) -> None:
    result = CliRunner().invoke(app, ["explain", str(TINY), *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error:")
    for needle in needles:
        assert needle in result.stderr


def test_example_out_of_range(mnist_dir: Path) -> None:
    result = CliRunner().invoke(app, ["explain", str(TINY), "--set", f"data.path={mnist_dir}",
                                      "--weight", "2,0,0", "--example", "10000"])
    assert result.exit_code == 2
    assert "0..9999" in result.stderr


def test_trace_needs_an_mnist_shaped_network(mnist_dir: Path) -> None:
    result = CliRunner().invoke(app, ["explain", str(TINY), "--set", "model.layers=[5, 3, 10]",
                                      "--set", f"data.path={mnist_dir}", "--weight", "2,0,0"])
    assert result.exit_code == 2
    assert "n_1 = 5" in result.stderr


def test_without_config_uses_configs_mnist_yaml_here_else_the_built_in_mnist(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed tool in any directory: with no configs/mnist.yaml there, the built-in mnist is used
    (it used to refuse and suggest configs/tiny.yaml, which did not exist there either)."""
    monkeypatch.chdir(tmp_path)
    data = run_json("--section", "layers")
    assert data["name"] == "mnist" and data["sizes"] == [784, 512, 256, 10]
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mnist.yaml").write_text("model:\n  layers: [784, 50, 10]\n")
    data = run_json("--section", "layers")
    assert data["sizes"] == [784, 50, 10] and data["n_w"] == 784 * 50 + 50 * 10
