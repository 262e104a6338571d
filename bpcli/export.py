"""`bpcli export`: a trained network for use outside bpcli.

ONNX (the `onnx` extra): a standard graph any ONNX runtime runs, one Gemm per layer followed by its
activation, z^l = a^(l-1) (w^l)^T + b^l (Gemm with transB = 1, so w^l keeps its (n_l, n_(l-1)) shape),
a^l = sigma(z^l), and Softmax (or Sigmoid) at the output. The input is named `input`, shape
[batch, n_1] float32 (batch left free); the output `probabilities` (softmax) or `output`, [batch, n_L].
Parameters are stored in float32. Class names, the source checkpoint and its epoch go in the model's
metadata. The model passes `onnx.checker` (full check, with shape inference) before it is written.

NPZ: the parameters under the names of the notes, w2, b2, ..., wL, bL (w^l of shape (n_l, n_(l-1))),
with layers, activation, output and class_names as plain arrays: no pickle needed to load it.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bpcli import __version__
from bpcli import checkpoint as ckpt_io
from bpcli.errors import UsageError
from bpcli.extras import need
from bpcli.files import write_atomic
from bpcli.network import Network
from bpcli.rundir import RunFiles

FORMATS = ("onnx", "npz")
OPSET = 17  # widely supported (onnxruntime >= 1.11); every operator used here is older
IR_VERSION = 8  # the IR version of opset 17, so older runtimes load the file too
INPUT = "input"
ONNX_OPS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "softmax": "Softmax", "identity": "Identity"}


@dataclass
class Exported:
    path: Path
    format: str
    sizes: list[int]
    input: str
    output: str
    operators: list[str]  # in graph order
    bytes: int


def format_for(out: Path, fmt: str | None) -> str:
    """The format: --format, else the suffix of --out; they must agree."""
    suffix = out.suffix.lower().lstrip(".")
    if fmt is None:
        if suffix not in FORMATS:
            raise UsageError(f"--out {out}: give --format onnx or npz (or a file name ending in .onnx or .npz)")
        return suffix
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: expected onnx or npz")
    if suffix in FORMATS and suffix != fmt:
        raise UsageError(f"--out {out} ends in .{suffix} but --format is {fmt}")
    return fmt


def _source(run: Path) -> tuple[Path, ckpt_io.Checkpoint, list[str]]:
    run = Path(run)
    source = run / "last.npz" if run.is_dir() else run
    ckpt = ckpt_io.load(source)
    record = RunFiles(source.parent).read_record("dataset.json") or {}
    names = record.get("class_names")
    n_L = ckpt.network.sizes[-1]
    if not (isinstance(names, list) and len(names) == n_L and all(isinstance(n, str) for n in names)):
        names = [str(k) for k in range(n_L)]
    return source, ckpt, names


def onnx_model(net: Network, class_names: list[str], source: str = "", epoch: int = 0) -> object:
    """The network as an onnx.ModelProto, checked by onnx.checker."""
    onnx = need("onnx", "ONNX export")
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    a = INPUT
    ops = []
    for l in net.layers:
        w = numpy_helper.from_array(np.ascontiguousarray(net.w[l], dtype=np.float32), f"w{l}")
        b = numpy_helper.from_array(np.ascontiguousarray(net.b[l], dtype=np.float32), f"b{l}")
        inits += [w, b]
        z = f"z{l}"
        nodes.append(helper.make_node("Gemm", [a, f"w{l}", f"b{l}"], [z], name=f"layer{l}_gemm", transB=1))
        sigma = net.sigma(l).name
        last = l == net.L
        a = ("probabilities" if sigma == "softmax" else "output") if last else f"a{l}"
        attrs = {"axis": 1} if sigma == "softmax" else {}
        nodes.append(helper.make_node(ONNX_OPS[sigma], [z], [a], name=f"layer{l}_{sigma}", **attrs))
        ops += ["Gemm", ONNX_OPS[sigma]]
    graph = helper.make_graph(
        nodes, "bpcli_network",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", net.sizes[0]])],
        [helper.make_tensor_value_info(a, TensorProto.FLOAT, ["batch", net.sizes[-1]])],
        initializer=inits,
        doc_string=f"fully-connected network {net.sizes}: {net.hidden.name} hidden layers, {net.output.name} output",
    )
    model = helper.make_model(graph, producer_name="bpcli", producer_version=__version__,
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    model.doc_string = (f"Input `{INPUT}`: rows of {net.sizes[0]} pixels in [0, 1] (light ink on black, as MNIST); "
                        f"output `{a}`: one score per class.")
    helper.set_model_props(model, {"class_names": json.dumps(class_names), "source": source, "epoch": str(epoch),
                                   "layers": json.dumps(list(net.sizes))})
    onnx.checker.check_model(model, full_check=True)
    return model


def npz_arrays(net: Network, class_names: list[str]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {"layers": np.array(net.sizes, dtype=np.int64),
                                     "activation": np.array(net.hidden.name), "output": np.array(net.output.name),
                                     "class_names": np.array(class_names)}
    for l in net.layers:
        arrays[f"w{l}"] = np.ascontiguousarray(net.w[l])
        arrays[f"b{l}"] = np.ascontiguousarray(net.b[l])
    return arrays


def export(run: Path, out: Path, fmt: str) -> Exported:
    """Write the network of `run` (a run directory means its last.npz) to `out` in `fmt`, atomically."""
    source, ckpt, names = _source(run)
    net = ckpt.network
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: the directory {out.parent} does not exist")
    if fmt == "onnx":
        model = onnx_model(net, names, str(source), ckpt.epoch)
        data = model.SerializeToString()  # type: ignore[attr-defined]
        output = model.graph.output[0].name  # type: ignore[attr-defined]
        ops = [n.op_type for n in model.graph.node]  # type: ignore[attr-defined]
    else:
        buffer = io.BytesIO()
        np.savez(buffer, **npz_arrays(net, names))
        data, output, ops = buffer.getvalue(), "", []
    try:
        write_atomic(out, data)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write it ({e.strerror or e})") from None
    return Exported(out, fmt, list(net.sizes), INPUT if fmt == "onnx" else "", output, ops, len(data))
