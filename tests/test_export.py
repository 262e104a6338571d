"""bpcli export: an ONNX graph of Gemm + activations + Softmax that passes onnx.checker and, run by
onnxruntime, matches bpcli's own predictions on the test set within 1e-5 in float32; and an .npz of
plainly named arrays that loads without pickle and computes the same network."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bpcli import checkpoint, config, export
from bpcli.cli import app
from bpcli.data import load_dataset
from bpcli.network import Network

from conftest import train_tiny

runner = CliRunner()


@pytest.fixture(scope="module")
def run(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("export") / "run", mnist_dir, "data.limit=3000",
                      "model.layers=[784, 24, 16, 10]", "model.activation=relu")


@pytest.fixture(scope="module")
def test_x(mnist_dir: Path) -> np.ndarray:
    return load_dataset(mnist_dir, validation_size=0).test.x


def _session(path: Path):  # noqa: ANN202 - onnxruntime.InferenceSession
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_export_passes_the_checker_and_matches_bpcli_on_the_test_set(run: Path, test_x: np.ndarray,
                                                                          tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "net.onnx"
    result = runner.invoke(app, ["export", str(run), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "input 'input' [batch, 784] float32 -> 'probabilities' [batch, 10]" in result.stdout
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["Gemm", "Relu", "Gemm", "Relu", "Gemm", "Softmax"]
    [inp] = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "input" and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert (dims[0].dim_param, dims[1].dim_value) == ("batch", 784)
    assert model.graph.output[0].name == "probabilities"
    props = {p.key: p.value for p in model.metadata_props}
    assert props["class_names"] == '["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]'

    ours = checkpoint.load(run).network.predict(test_x)
    theirs = _session(out).run(None, {"input": test_x})[0]
    assert theirs.dtype == np.float32 and theirs.shape == ours.shape == (10_000, 10)
    assert np.abs(theirs - ours).max() <= 1e-5
    assert np.array_equal(theirs.argmax(axis=1), ours.argmax(axis=1))


@pytest.mark.parametrize("hidden,output,dtype", [("sigmoid", "softmax", "float64"), ("tanh", "sigmoid", "float32"),
                                                 ("relu", "identity", "float64")])
def test_every_activation_and_output_exports_to_the_same_function(hidden: str, output: str, dtype: str,
                                                                  test_x: np.ndarray, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    layers = [784, 20, 12, 10]
    cfg = config.from_dict({"model": {"layers": layers, "activation": hidden, "output": output,
                                      "cost": "quadratic" if output == "identity" else "cross_entropy"},
                            "training": {"dtype": dtype}})
    net = Network.create(layers, hidden, output, cfg.model.cost, rng=np.random.default_rng(3), dtype=np.dtype(dtype))
    checkpoint.save(tmp_path / "c.npz", checkpoint.Checkpoint(cfg, net))
    written = export.export(tmp_path / "c.npz", tmp_path / "c.onnx", "onnx")
    assert written.output == ("probabilities" if output == "softmax" else "output")
    ours = net.predict(test_x[:2000].astype(dtype))
    theirs = _session(tmp_path / "c.onnx").run(None, {"input": test_x[:2000]})[0]
    assert np.abs(theirs - ours).max() <= 1e-5


def test_npz_export_loads_without_pickle_and_computes_the_network(run: Path, test_x: np.ndarray,
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "net.npz"
    result = runner.invoke(app, ["export", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "w2, b2, w3, b3, w4, b4, layers, activation, output, class_names" in result.stdout
    with np.load(out, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    assert sorted(arrays) == sorted(["w2", "b2", "w3", "b3", "w4", "b4", "layers", "activation", "output",
                                     "class_names"])
    assert arrays["layers"].tolist() == [784, 24, 16, 10] and str(arrays["activation"]) == "relu"
    assert arrays["w2"].shape == (24, 784) and arrays["b4"].shape == (10,)
    # The forward pass of the notes, in plain NumPy: a^l = sigma(w^l a^(l-1) + b^l), softmax at the end.
    a = test_x[:500]
    for l in (2, 3):
        a = np.maximum(a @ arrays[f"w{l}"].T + arrays[f"b{l}"], 0)
    z = a @ arrays["w4"].T + arrays["b4"]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    assert np.abs(p - checkpoint.load(run).network.predict(test_x[:500])).max() <= 1e-5


def test_export_mistakes_are_one_line(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = {
        ("--out", str(tmp_path / "net.bin")): "give --format onnx or npz",
        ("--out", str(tmp_path / "net.onnx"), "--format", "npz"): "ends in .onnx but --format is npz",
        ("--out", str(tmp_path / "net.x"), "--format", "tflite"): "expected onnx or npz",
        ("--out", str(tmp_path / "no" / "net.npz")): "does not exist",
    }
    for args, words in cases.items():
        result = runner.invoke(app, ["export", str(run), *args])
        assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1 and words in result.stderr, args
    monkeypatch.setitem(sys.modules, "onnx", None)
    result = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "net.onnx")])
    assert result.exit_code == 2
    assert result.stderr == "error: ONNX export needs onnx: pip install 'bpcli[onnx]'\n"
    assert not (tmp_path / "net.onnx").exists()


def test_help_lists_predict_runs_and_export_in_one_sentence_each_at_80_columns() -> None:
    import re

    listing = runner.invoke(app, ["-h"], env={"COLUMNS": "80"}).output
    for name in ("predict", "runs", "export"):
        assert re.search(rf"│ {name}\s+\S.*\.\s+│", listing), name
        result = runner.invoke(app, [name, "-h"], env={"COLUMNS": "80"}, terminal_width=80)
        assert result.exit_code == 0 and "<bool>" not in result.output
