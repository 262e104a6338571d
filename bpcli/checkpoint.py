"""Checkpoints: a network, its optimizer state, the training position and the config, in one .npz.

Everything is stored as plain arrays (the config as YAML text, the RNG state as JSON text) so that
loading works with `allow_pickle=False`. Files are written atomically.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bpcli import config as config_module
from bpcli.config import CONFIG_VERSION, Config
from bpcli.errors import BpcliError, CheckpointError
from bpcli.network import Network

Array = np.ndarray
FORMAT = "bpcli-checkpoint"


@dataclass
class Checkpoint:
    """What training needs to continue exactly where it stopped.

    epoch: epochs completed. step: optimizer updates done. rng_state: the shuffling generator's
    bit-generator state after `epoch` epochs. best_accuracy: best validation accuracy so far.
    """

    config: Config
    network: Network
    optimizer_state: dict[str, Array] = field(default_factory=dict)
    epoch: int = 0
    step: int = 0
    rng_state: dict[str, Any] = field(default_factory=dict)
    best_accuracy: float = -1.0


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves the old file or the new one, never a torn one:
    temporary file in the same directory, flush, fsync, rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(path: str | Path, ckpt: Checkpoint) -> None:
    net = ckpt.network
    arrays: dict[str, Array] = {
        "format": np.array(FORMAT),
        "version": np.array(CONFIG_VERSION),
        "config": np.array(ckpt.config.to_yaml()),
        "epoch": np.array(ckpt.epoch),
        "step": np.array(ckpt.step),
        "best_accuracy": np.array(ckpt.best_accuracy),
        "rng_state": np.array(json.dumps(ckpt.rng_state)),
    }
    for l in net.layers:
        arrays[f"w{l}"] = net.w[l]
        arrays[f"b{l}"] = net.b[l]
    for key, value in ckpt.optimizer_state.items():
        arrays[f"opt_{key}"] = value
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(Path(path), buffer.getvalue())


def load(path: str | Path) -> Checkpoint:
    """Read and check a checkpoint written by `save`."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.npz"
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable bpcli checkpoint ({e})") from None

    def need(key: str) -> Array:
        if key not in arrays:
            raise CheckpointError(f"{path}: checkpoint is missing '{key}'; it was not written by bpcli or is damaged")
        return arrays[key]

    if str(need("format")) != FORMAT:
        raise CheckpointError(f"{path}: not a bpcli checkpoint")
    version = int(need("version"))
    if version != CONFIG_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version}, this bpcli reads version {CONFIG_VERSION}")
    try:
        cfg = config_module.from_dict(yaml.safe_load(str(need("config"))), source=f"{path} (stored config)")
    except (yaml.YAMLError, BpcliError) as e:
        raise CheckpointError(f"{path}: stored config is not valid: {e}") from None
    sizes = cfg.model.layers
    template = Network.create(sizes, cfg.model.activation, cfg.model.output, cfg.model.cost, "normal",
                              np.random.default_rng(0), dtype=np.dtype(cfg.training.dtype))
    for l in template.layers:
        for name, shape in ((f"w{l}", template.w[l].shape), (f"b{l}", template.b[l].shape)):
            if need(name).shape != shape:
                raise CheckpointError(
                    f"{path}: {name} has shape {need(name).shape}, but the stored config's layers {list(sizes)} need {shape}"
                )
            if not np.issubdtype(need(name).dtype, np.floating):
                raise CheckpointError(f"{path}: {name} has dtype {need(name).dtype}, expected a float type")
        template.w[l] = need(f"w{l}").copy()
        template.b[l] = need(f"b{l}").copy()
    try:
        rng_state = json.loads(str(need("rng_state")))
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: rng_state is not valid JSON") from None
    return Checkpoint(
        config=cfg,
        network=template,
        optimizer_state={k[4:]: v.copy() for k, v in arrays.items() if k.startswith("opt_")},
        epoch=int(need("epoch")),
        step=int(need("step")),
        rng_state=rng_state,
        best_accuracy=float(need("best_accuracy")),
    )
