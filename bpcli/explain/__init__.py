"""`bpcli explain`: the notation, types and equations of backpropagation, instantiated for one network.

Pure compute: `describe` returns an `Explanation`, a tree of plain dataclasses holding strings and
numbers, one builder per section. Nothing here prints; `bpcli.render.explain` draws the model with
Rich, `bpcli.render.explain_formats` writes it as Markdown, Mermaid or DOT, and `to_json` gives it as
data.

Index convention, stated once and repeated in every output: layers l are numbered 1..L as in the math
(l = 1 is the input layer), while the neuron indices j and k are 0-based, as in the arrays, so that
w^l_jk is exactly `w[l][j, k]`.

Everything per example is a column vector in the math and a row in the code: the code keeps a
mini-batch of m examples as the rows of a matrix, so z^l in R^(n_l) becomes z[l] of shape (m, n_l).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bpcli import builtin
from bpcli import checkpoint as checkpoint_module
from bpcli import config as config_module
from bpcli import data as data_module
from bpcli import resources
from bpcli.config import Config
from bpcli.errors import UsageError
from bpcli.network import Network
# The package's parts, one section of the explanation each; the names other modules use are re-exported
# here, so `from bpcli import explain; explain.describe(...)` and `from bpcli.explain import Graph` work.
from bpcli.explain.base import (  # noqa: F401
    INDEX_NOTE, SECTIONS, TITLES, Spec, count, deriv, human_bytes, num, parse_sections, shape, space,
)
from bpcli.explain.graph import Graph, build_graph, graph_rows  # noqa: F401
from bpcli.explain.sections import (  # noqa: F401
    Block, CostSection, Equation, EquationsSection, LayerInfo, LayersSection, Symbol, build_cost, build_equations,
    build_layers, build_notation,
)
from bpcli.explain.trace import (  # noqa: F401
    Example, Trace, build_trace, central_difference, parse_weight, weight_ranges,
)

# -- what is explained: a config's network or a checkpoint's, and one test example ---------------------

DEFAULT_CONFIG = "configs/mnist.yaml"


def load_subject(
    config_path: str | Path | None, overrides: Sequence[str] = (), checkpoint: str | Path | None = None
) -> tuple[Config, Network, str]:
    """The config, the network to explain and a phrase saying where it came from.

    With a checkpoint, its stored config and trained parameters; `--set` may change anything but the
    model, which must match the stored arrays. Otherwise the config's freshly initialized network.
    """
    if checkpoint is not None:
        if config_path is not None:
            raise UsageError("give CONFIG or --checkpoint, not both: a checkpoint carries its own config")
        ckpt = checkpoint_module.load(checkpoint)
        cfg = ckpt.config
        if overrides:
            cfg = config_module.loads(cfg.to_yaml(), source=f"{checkpoint} (stored config)",
                                      overrides=list(overrides), name=cfg.name)
            if cfg.model != ckpt.config.model:
                raise UsageError("--set cannot change model.* with --checkpoint: the stored parameters fix it")
        return cfg, ckpt.network, f"checkpoint {checkpoint} (epoch {ckpt.epoch})"
    if config_path is None:  # configs/mnist.yaml here, else the built-in one (an installed tool, any directory)
        config_path = DEFAULT_CONFIG if Path(DEFAULT_CONFIG).is_file() else builtin.lookup("mnist")
        if config_path is None:
            raise UsageError(f"no CONFIG given and {DEFAULT_CONFIG} does not exist in {Path.cwd()}; pass one, e.g. "
                             f"bpcli explain {(builtin.names() or ['path/to/config.yaml'])[0]}")
    cfg = config_module.load(config_path, list(overrides))
    resources.check_network(cfg.model.layers, cfg.training.dtype)  # before NumPy sees a size like 10^12
    net = Network.from_config(cfg.model, cfg.training.seed, cfg.training.dtype)
    changed = "".join(f" --set {item}" for item in overrides)
    return cfg, net, f"{config_path}{changed}, initialized with seed {cfg.training.seed}"


def load_example(path: str | Path, index: int, sizes: Sequence[int], verify: bool = True) -> Example:
    """Test example `index` of the dataset at `path` (IDX directory or .npz): x scaled to [0, 1] when
    stored as bytes, y one-hot, and its class name when the dataset is a known one.

    Reads only the test files (and verifies them as `train` would), not the whole dataset.
    """
    images, labels, identity = data_module.load_test(path, verify)
    if not 0 <= index < len(labels):
        raise UsageError(f"--example {index}: out of range: the test set has {count(len(labels))} examples, "
                         f"use 0..{len(labels) - 1}")
    x = images[index].reshape(-1).astype(np.float64)
    if images.dtype == np.uint8:
        x /= 255.0
    n_1, n_L = sizes[0], sizes[-1]
    label = int(labels[index])
    if len(x) != n_1 or label >= n_L:
        raise UsageError(f"the trace feeds a test example with {len(x)} inputs and label {label}, but this "
                         f"network has n_1 = {n_1} inputs and n_L = {n_L} outputs")
    y = np.zeros(n_L)
    y[label] = 1.0
    name = identity.class_names[label] if label < len(identity.class_names) else ""
    return Example(x, y, index, label, f"{path} (test set)", name)


# -- the whole explanation ----------------------------------------------------------------------------


@dataclass
class Explanation:
    name: str
    source: str  # where the network came from (config and seed, or checkpoint)
    sizes: tuple[int, ...]
    batch_size: int
    dtype: str
    sections: tuple[str, ...]
    layers: LayersSection  # always built: the summary every format carries
    notation: list[Symbol] | None = None
    cost: CostSection | None = None
    equations: EquationsSection | None = None
    graph: Graph | None = None
    trace: Trace | None = None
    index_note: str = INDEX_NOTE

    @property
    def L(self) -> int:
        return len(self.sizes)


def describe(
    network: Network,
    *,
    name: str,
    source: str,
    batch_size: int,
    sections: Sequence[str] | None = None,
    weight: tuple[int, int, int] | None = None,
    example: Example | None = None,
) -> Explanation:
    """The explanation of `network` (examples in batches of `batch_size`), with the chosen sections.

    `trace` needs `weight` (l, j, k) and `example`; a given weight always adds it.
    """
    chosen = parse_sections(sections)
    if weight is not None and "trace" not in chosen:
        chosen = parse_sections([*chosen, "trace"])
    spec = Spec.of(network, name, batch_size)
    model = Explanation(name, source, spec.sizes, batch_size, spec.dtype, chosen, build_layers(spec))
    if "notation" in chosen:
        model.notation = build_notation(spec)
    if "cost" in chosen:
        model.cost = build_cost(spec)
    if "equations" in chosen:
        model.equations = build_equations(spec)
    if "graph" in chosen:
        model.graph = build_graph(spec)
    if "trace" in chosen:
        if weight is None or example is None:
            raise UsageError("the trace section needs --weight l,j,k; " + weight_ranges(spec.sizes))
        model.trace = build_trace(network, weight, example)
    return model


# -- JSON ----------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_json(model: Explanation) -> dict[str, Any]:
    """The explanation as JSON-ready data: the summary (name, L, sizes, n_w, n_b, layers, ...) always,
    then one key per chosen section."""
    ls = model.layers
    data: dict[str, Any] = {
        "name": model.name,
        "source": model.source,
        "index_convention": model.index_note,
        "L": model.L,
        "sizes": list(model.sizes),
        "batch_size": model.batch_size,
        "dtype": model.dtype,
        "n_w": ls.n_w,
        "n_b": ls.n_b,
        "n_params": ls.n_params,
        "bytes": ls.bytes,
        "sections": list(model.sections),
        "layers": [_plain(row) | {"params": row.params} for row in ls.layers],
    }
    if model.notation is not None:
        data["notation"] = _plain(model.notation)
    if model.cost is not None:
        data["cost"] = _plain(model.cost)
    if model.equations is not None:
        data["equations"] = _plain(model.equations)
    if model.graph is not None:
        data["graph"] = _plain(model.graph)
    if model.trace is not None:
        data["trace"] = _plain(model.trace)
    return data
