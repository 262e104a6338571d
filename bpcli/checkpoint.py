"""Checkpoints: a network, its optimizer state, the training position and the config, in one .npz.

Everything is stored as plain arrays (the config as YAML text, the RNG state as JSON text) so that
loading works with `allow_pickle=False`. Files are written atomically, and only with finite parameters.

A checkpoint read from disk is untrusted input: every field is checked for type, shape, range and
finiteness before it is used, and every array's declared shape and dtype are read from its .npy header
and checked (against the stored config, and against the memory available) before its data is read, so
a crafted file is refused in one line naming the field instead of failing deep inside NumPy or
training, or asking for 37 GiB.
"""

from __future__ import annotations

import io
import json
import math
import typing
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from bpcli import config as config_module
from bpcli import resources, safe_yaml
from bpcli.activations import HIDDEN, OUTPUT
from bpcli.config import CONFIG_VERSION, Config
from bpcli.costs import COSTS
from bpcli.errors import BpcliError, CheckpointError, DivergenceError, clip, shorten, show
from bpcli.files import npy_header, write_atomic  # noqa: F401 - write_atomic re-exported
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

    @property
    def batch(self) -> int:
        """Batches done in epoch `epoch + 1` when it was saved inside that epoch (an interrupt), else 0."""
        return int(self.rng_state.get("position", {}).get("batch", 0))


def save(path: str | Path, ckpt: Checkpoint) -> None:
    """Write `ckpt` to `path` atomically. Non-finite parameters or optimizer state are refused, so the
    file at `path` (the last good checkpoint) is never replaced by one that could not be used."""
    write_atomic(Path(path), encode(ckpt, str(path)))


def encode(ckpt: Checkpoint, path: str = "checkpoint") -> bytes:
    """The .npz bytes of `ckpt` (what `save` writes), refusing non-finite parameters or state; `path`
    names the file in that refusal."""
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
    for key, value in arrays.items():
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            raise DivergenceError(f"{path}: not saved: {key} has {_count_nonfinite(value)} "
                                  "(NaN or inf); training diverged: lower training.learning_rate")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _count_nonfinite(a: Array) -> str:
    """'1 non-finite value', '3,072 non-finite values'."""
    n = int(a.size - np.count_nonzero(np.isfinite(a)))
    return f"{n:,} non-finite value{'s' * (n != 1)}"


# -- loading ------------------------------------------------------------------------------------------

MAX_MEMBERS = 10_000  # a checkpoint of L layers has 2(L-1) arrays, 4(L-1) more for Adam, and 7 fields
MAX_INT = 2**53  # counters (epochs, steps, examples) beyond this are not real; JSON ints are unbounded
# The fields of train.Position, the training position stored in rng_state["position"] (keep in step).
POSITION_INTS = ("epoch", "batch", "step", "correct", "seen")
POSITION_FIELDS = frozenset(POSITION_INTS + ("loss_sum", "epoch_rng_state"))


_KINDS = {"U": "text", "S": "bytes", "i": "an integer", "u": "an integer", "f": "a number", "b": "a boolean",
          "c": "a complex number"}


@dataclass
class _Member:
    """One array in the archive, as its .npy header declares it (nothing of its data read yet)."""

    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class _Archive:
    """The arrays of one checkpoint: headers checked up front, data read one field at a time."""

    def __init__(self, path: Path, zf: zipfile.ZipFile) -> None:
        self.path, self.zf = path, zf
        infos = [i for i in zf.infolist() if i.filename.endswith(".npy")]
        if len(infos) > MAX_MEMBERS:
            self.fail(f"{len(infos):,} arrays; a checkpoint has a few dozen")
        self.members = {i.filename[:-4]: self._header(i) for i in infos}

    def fail(self, message: str) -> typing.NoReturn:
        raise CheckpointError(f"{self.path}: {message}; it was not written by bpcli or is damaged")

    def _header(self, info: zipfile.ZipInfo) -> _Member:
        name = info.filename[:-4]
        try:
            with self.zf.open(info) as f:
                shape, dtype = npy_header(f)
                offset = f.tell()
        except CheckpointError:
            raise
        except (ValueError, OSError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile, KeyError) as e:
            self.fail(f"{show(name)} is not a readable array ({clip(str(e), 80)})")
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
            self.fail(f"{show(name)} has dtype {clip(str(dtype), 40)}; bpcli stores plain numbers and text")
        member = _Member(info, tuple(int(n) for n in shape), dtype)
        if member.nbytes + offset > info.file_size:
            self.fail(f"{show(name)} declares shape {shorten(member.shape)} ({resources.human(member.nbytes)}) "
                      f"but holds {resources.human(info.file_size)}")
        return member

    def need(self, key: str) -> _Member:
        if key not in self.members:
            self.fail(f"checkpoint is missing '{key}'")
        return self.members[key]

    def read(self, key: str) -> Array:
        member = self.need(key)
        try:
            with self.zf.open(member.info) as f:
                return np.lib.format.read_array(typing.cast(IO[bytes], f), allow_pickle=False)
        except (ValueError, OSError, EOFError, RuntimeError, zipfile.BadZipFile) as e:
            self.fail(f"{key} cannot be read ({clip(str(e), 80)})")

    def scalar(self, key: str, kinds: str, what: str) -> Any:
        """A 0-d field of one of the dtype `kinds` ('U' text, 'i'/'u' integers, 'f' floats)."""
        member = self.need(key)
        if member.shape != () or member.dtype.kind not in kinds:
            kind = _KINDS.get(member.dtype.kind, f"dtype {clip(str(member.dtype), 20)}")
            found = kind if member.shape == () else f"an array of shape {shorten(member.shape)} ({kind})"
            self.fail(f"{key} must be {what}, found {found}")
        if member.dtype.kind == "U" and member.dtype.itemsize > 4 * safe_yaml.MAX_BYTES:
            self.fail(f"{key} is text of {member.dtype.itemsize // 4:,} characters, more than bpcli writes")
        return self.read(key).item()

    def integer(self, key: str, low: int, high: int) -> int:
        value = int(self.scalar(key, "iu", "an integer"))
        if not low <= value <= high:
            self.fail(f"{key} is {shorten(value)}, outside {low}..{high:,}")
        return value


def load(path: str | Path) -> Checkpoint:
    """Read and check a checkpoint written by `save`; a run directory means its last.npz."""
    path = Path(path)
    run = path if path.is_dir() else None
    if run is not None:
        path = run / "last.npz"
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        why = (f"; the run saved none: it stopped or diverged before its first epoch ended (bpcli runs {run} says "
               "which)") if run is not None else ""
        raise CheckpointError(f"{path}: checkpoint not found{why}") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({e.strerror or e})") from None
    if magic != b"PK\x03\x04":  # every .npz is a zip archive
        raise CheckpointError(f"{path}: not a checkpoint (.npz); give a run directory or its last.npz or best.npz")
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable bpcli checkpoint ({clip(str(e), 80)})") from None
    with zf:
        return _load(_Archive(path, zf))


def _load(ar: _Archive) -> Checkpoint:
    path = ar.path
    if ar.scalar("format", "U", "text") != FORMAT:
        raise CheckpointError(f"{path}: not a bpcli checkpoint")
    version = int(ar.scalar("version", "iu", "an integer"))
    if version != CONFIG_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {shorten(version)}, this bpcli reads version "
                              f"{CONFIG_VERSION}")
    cfg = _stored_config(ar)
    sizes = cfg.model.layers
    n_params = 2 * (len(sizes) - 1)
    shapes = [s for l in range(2, len(sizes) + 1) for s in ((sizes[l - 1], sizes[l - 2]), (sizes[l - 1],))]
    names = [f"{k}{l}" for l in range(2, len(sizes) + 1) for k in "wb"]
    state_keys = _optimizer_keys(cfg.training.optimizer.name, n_params)
    stored_state = sorted(k for k in ar.members if k.startswith("opt_"))
    for key in stored_state:
        if key[4:] not in state_keys:
            ar.fail(f"{show(key)} is not part of the state of a {cfg.training.optimizer.name} optimizer "
                    f"with {n_params} parameter arrays")
    expected = dict(zip(names, shapes)) | {k: shapes[int(k[5:])] for k in stored_state}
    for key, shape in expected.items():
        member = ar.need(key)
        if member.shape != tuple(shape):
            ar.fail(f"{key} has shape {shorten(member.shape)}, but the stored config's layers {shorten(list(sizes))} "
                    f"need {tuple(shape)}")
        if member.dtype.kind != "f" or member.dtype.itemsize not in (4, 8):
            ar.fail(f"{key} has dtype {clip(str(member.dtype), 40)}, expected float32 or float64")
    dtypes = {str(ar.need(k).dtype.newbyteorder("=")) for k in names}
    if len(dtypes) > 1:
        ar.fail(f"the parameters mix dtypes ({', '.join(sorted(dtypes))}); bpcli stores one")
    # Before reading any data: the arrays as declared must fit in memory (twice: read, then checked).
    need = sum(ar.need(k).nbytes for k in expected)
    resources.require(f"the network in {path} {shorten(list(sizes))}", resources.Estimate({"arrays": 2 * need}),
                      "load it on a machine with more memory")
    arrays: dict[str, Array] = {}
    for key in expected:
        a = ar.read(key)
        if not np.isfinite(a).all():
            raise CheckpointError(f"{path}: {key} has {_count_nonfinite(a)} (NaN or inf): not a "
                                  "good checkpoint; use an earlier one (e.g. best.npz) or train again")
        arrays[key] = a.astype(a.dtype.newbyteorder("="), copy=False)
    m = cfg.model
    net = Network(sizes, {l: arrays[f"w{l}"] for l in range(2, len(sizes) + 1)},
                  {l: arrays[f"b{l}"] for l in range(2, len(sizes) + 1)}, HIDDEN[m.activation], OUTPUT[m.output],
                  COSTS[m.cost])
    # Not bounded by training.epochs: a resumed run may be shortened down to the epochs already done.
    epoch = ar.integer("epoch", 0, MAX_INT)
    step = ar.integer("step", 0, MAX_INT)
    best = float(ar.scalar("best_accuracy", "iuf", "a number"))
    # The best score is a validation accuracy, or the epoch number when there is no validation set.
    if not (math.isfinite(best) and -1 <= best <= max(1, epoch)):
        ar.fail(f"best_accuracy is {shorten(best)}, outside -1..{max(1, epoch)}")
    rng_state = _rng_state(ar, epoch, step, cfg.training.batch_size)
    return Checkpoint(
        config=cfg,
        network=net,
        optimizer_state={k[4:]: arrays[k] for k in stored_state},
        epoch=epoch,
        step=step,
        rng_state=rng_state,
        best_accuracy=best,
    )


def check_resumable(ckpt: Checkpoint, source: str | Path) -> None:
    """Refuse to resume from a checkpoint without a training position (`rng_state` {}: written by a
    tool or test, not by a training run), which `load` accepts for evaluate, explain and gradcheck but
    `Trainer.restore` cannot continue from."""
    if not ckpt.rng_state:
        raise CheckpointError(f"{source}: has no training position (its rng_state is empty), so it cannot be "
                              "resumed; evaluate it, or start a new run")


def _stored_config(ar: _Archive) -> Config:
    text = ar.scalar("config", "U", "text")
    try:
        document = safe_yaml.parse(text, f"{ar.path} (stored config)")
        return config_module.from_dict(document.data, source=f"{ar.path} (stored config)")
    except BpcliError as e:
        raise CheckpointError(f"{ar.path}: stored config is not valid: {e}") from None


def _optimizer_keys(name: str, n_params: int) -> set[str]:
    """The state `optim.Optimizer` keeps: v_i for momentum, m_i and v_i for Adam, i over the params."""
    prefixes = {"momentum": "v", "adam": "mv"}.get(name, "")
    return {f"{p}{i}" for p in prefixes for i in range(n_params)}


def _rng_state(ar: _Archive, epoch: int, step: int, batch_size: int) -> dict[str, Any]:
    """The training position: {} (a checkpoint not written by a training run) or the generator state,
    the position inside the run and the optimizer's update count, each checked."""
    try:
        state = json.loads(ar.scalar("rng_state", "U", "text"))
    except (json.JSONDecodeError, RecursionError):
        ar.fail("rng_state is not valid JSON")
    if not isinstance(state, dict):
        ar.fail(f"rng_state must be a JSON object, got {type(state).__name__}")
    if not state:
        return state
    missing = {"rng", "position", "optimizer_t"} - state.keys()
    if missing:
        ar.fail(f"rng_state lacks {', '.join(sorted(missing))}")
    _generator_state(ar, "rng_state.rng", state["rng"])
    pos = state["position"]
    if not isinstance(pos, dict) or not {"epoch", "batch", "step"} <= pos.keys() or not pos.keys() <= POSITION_FIELDS:
        ar.fail(f"rng_state.position must be an object with the fields {', '.join(sorted(POSITION_FIELDS))}")
    for key in POSITION_INTS:
        if key in pos and not (type(pos[key]) is int and 0 <= pos[key] <= MAX_INT):
            ar.fail(f"rng_state.position.{key} is {shorten(pos[key])}, expected a whole number 0..2^53")
    loss = pos.get("loss_sum", 0.0)
    if type(loss) not in (int, float) or not math.isfinite(loss) or loss < 0:
        ar.fail(f"rng_state.position.loss_sum is {shorten(loss)}, expected a finite number >= 0")
    if (pos["epoch"], pos["step"]) != (epoch, step):
        ar.fail(f"rng_state.position (epoch {pos['epoch']}, step {pos['step']}) disagrees with epoch {epoch}, "
                f"step {step}")
    # Batches done in this epoch are updates done; examples seen in it are at most those batches' rows.
    seen, correct = pos.get("seen", 0), pos.get("correct", 0)
    if pos["batch"] > step or seen > pos["batch"] * batch_size or correct > seen:
        ar.fail(f"rng_state.position (batch {pos['batch']}, seen {seen}, correct {correct}) is impossible after "
                f"{step} updates of {batch_size} examples")
    if pos["batch"] > 0 or pos.get("epoch_rng_state"):
        _generator_state(ar, "rng_state.position.epoch_rng_state", pos.get("epoch_rng_state"))
    t = state["optimizer_t"]
    if not (type(t) is int and 0 <= t <= MAX_INT):
        ar.fail(f"rng_state.optimizer_t is {shorten(t)}, expected a whole number 0..2^53")
    return state


def _generator_state(ar: _Archive, key: str, value: object) -> None:
    """A state the shuffling generator (NumPy's PCG64) accepts, tried on a throwaway generator."""
    try:
        np.random.PCG64().state = value  # type: ignore[assignment]
    except (TypeError, ValueError, KeyError, OverflowError, AttributeError, IndexError):
        ar.fail(f"{key} is not a PCG64 generator state")
