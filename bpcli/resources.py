"""How much memory a command will need, checked before anything large is allocated.

A layer size of 10^12 or a gradient check on 10^8 examples used to end in a MemoryError traceback
(or NumPy's "maximum allowed dimension exceeded") after minutes of work. Here the arrays a command
will hold are counted from the sizes alone, in Python integers (so 10^41 is just a big number, never
a NumPy shape), and compared with the memory the machine has available; a command that cannot fit is
refused with one line that says how much it needs, how much there is, and what to make smaller.

The counts follow the code that allocates: `network.Workspace` (z, a, delta per layer for a batch,
dw and db), `train.Trainer.run_epoch` (the gathered x, the epoch's permutation and targets),
`optim.Optimizer` (state and scratch), `checkpoint.save` (the .npz built in memory, then copied),
`train.evaluate` (a workspace for one evaluation batch) and `gradcheck.check` (copies of the
network, two forward passes, the transposed weights and the per-worker chunks). They are estimates:
NumPy temporaries add a little, so the check refuses only what cannot fit, not what merely might not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from bpcli.config import Config
from bpcli.errors import ResourceError, shorten
from bpcli.threads import cpu_count

# The evaluation batch train.evaluate uses when memory allows. 2,500 rows, not more: evaluating MNIST's
# 10,000 test images of configs/mnist.yaml took 0.087 s in batches of 2,500 against 0.095-0.098 s in one
# (and 0.26 s the first time, faulting in 62 MB of fresh buffers), and the smaller buffers keep the end
# of a run from setting its peak memory (issue 19).
EVAL_BATCH = 2_500
EVAL_BUDGET_BYTES = 256 * 2**20  # evaluation buffers (z, a, delta for one batch) stay within this
# Beyond this nothing is attempted even where the available memory cannot be read: no machine has
# 256 TiB, and it keeps every shape far below NumPy's limit of 2^63 bytes.
HARD_LIMIT_BYTES = 2**48
GRADCHECK_CHUNK_BYTES = 4 * 2**20  # gradcheck.CHUNK_BYTES; a worker holds a few such arrays at once
_CHUNK_ARRAYS = 6  # z, a, y and the cost rows of one chunk, with room for NumPy's temporaries


@dataclass
class Estimate:
    """Bytes a command needs at its peak, by part (the parts alive at the same time)."""

    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def largest(self) -> str:
        return max(self.parts, key=lambda k: self.parts[k]) if self.parts else ""


# -- sizes -------------------------------------------------------------------------------------------


def itemsize(dtype: str | object) -> int:
    """Bytes per value of a dtype name ('float32', 'float64', 'complex128') without asking NumPy."""
    name = str(dtype)
    return {"float16": 2, "float32": 4, "float64": 8, "complex64": 8, "complex128": 16}.get(name, 8)


def parameter_count(sizes: Sequence[int]) -> int:
    """n_w + n_b = sum over l = 2..L of n_l n_(l-1) + n_l, in Python integers (exact for any size)."""
    return sum(int(n) * int(p) + int(n) for p, n in zip(sizes[:-1], sizes[1:]))


def network_bytes(sizes: Sequence[int], dtype: str | object = "float32") -> int:
    """The parameters w^l, b^l of a network with these layer sizes."""
    return parameter_count(sizes) * itemsize(dtype)


def _units(sizes: Sequence[int]) -> int:
    """sum over l = 2..L of n_l: the width of one row of z (or a, or delta) over all layers."""
    return sum(int(n) for n in sizes[1:])


def eval_batch_size(sizes: Sequence[int], dtype: str | object = "float32",
                    budget_bytes: int = EVAL_BUDGET_BYTES) -> int:
    """Rows per evaluation batch so that its buffers (z, a and delta for every layer, as a
    `network.Workspace` holds them) stay within `budget_bytes`: EVAL_BATCH for ordinary networks,
    fewer for very wide ones, never less than 1.

    E.g. [784, 512, 256, 10] in float32 keeps 2,500; [784, 200000, 10] gets 111 instead of the
    10,000 x 200,000 buffers (24 GB) that made a network that trains impossible to evaluate.
    """
    per_row = 3 * _units(sizes) * itemsize(dtype)
    return max(1, min(EVAL_BATCH, budget_bytes // max(1, per_row)))


def checkpoint_bytes(cfg: Config) -> int:
    """The size of one checkpoint file: the parameters and the optimizer's state (velocity for momentum,
    two moments for Adam), plus a few KiB of config and position."""
    slots = {"sgd": 0, "momentum": 1, "adam": 2}.get(cfg.training.optimizer.name, 2)
    return network_bytes(cfg.model.layers, cfg.training.dtype) * (1 + slots) + 64 * 1024


def initialization_bytes(sizes: Sequence[int], dtype: str | object) -> int:
    """Peak while `Network.create` runs: the parameters so far, plus the largest weight matrix drawn
    in float64, scaled (a second float64 array) and converted to `dtype`."""
    largest = max((int(n) * int(p) for p, n in zip(sizes[:-1], sizes[1:])), default=0)
    return network_bytes(sizes, dtype) + largest * 16


def training_estimate(cfg: Config, n_train: int, n_eval: int, eval_batch: int | None = None) -> Estimate:
    """Peak bytes of `bpcli train` beyond the dataset itself (already in memory when this is asked).

    The peak is during an epoch's validation pass, when the epoch's own buffers are still alive, or
    while a checkpoint is written (the .npz is built in memory, then copied to bytes), whichever is
    larger. `eval_batch` defaults to `eval_batch_size` (the bound train.evaluate should use).
    """
    sizes, t = cfg.model.layers, cfg.training
    s = itemsize(t.dtype)
    P = parameter_count(sizes) * s
    opt = {"sgd": 0, "momentum": 1, "adam": 2}.get(t.optimizer.name, 2) * P
    scratch = P if t.optimizer.name == "adam" or t.l2 > 0 else 0
    m = min(t.batch_size, max(1, n_train))
    H = _units(sizes)
    eb = min(eval_batch or eval_batch_size(sizes, t.dtype), max(1, n_eval))
    epoch = (3 * m * H * s          # z, a, delta for one batch
             + P                     # dw, db
             + m * int(sizes[0]) * s  # the gathered x of one batch
             + n_train * (16 + int(sizes[-1]) * s))  # the epoch's permutation, labels and targets in order
    evaluation = 3 * eb * H * s + P + n_eval * 8  # a workspace for one batch (with its dw, db), predictions
    during_epoch = P + opt + scratch + epoch + evaluation
    saving = P + opt + scratch + 2 * (P + opt)
    init = initialization_bytes(sizes, t.dtype)
    peak = max(during_epoch, saving, init)
    if peak == during_epoch:
        return Estimate({"parameters": P, "optimizer state": opt + scratch, "gradients": P,
                         "batch buffers": epoch - P, "evaluation buffers": evaluation})
    if peak == saving:
        return Estimate({"parameters": P, "optimizer state": opt + scratch,
                         "the checkpoint built in memory": 2 * (P + opt)})
    return Estimate({"parameters": init})


def evaluation_estimate(sizes: Sequence[int], dtype: str | object, n: int, eval_batch: int | None = None) -> Estimate:
    """Peak bytes of evaluating a network on n examples (the network and its evaluation buffers)."""
    s, P = itemsize(dtype), network_bytes(sizes, dtype)
    eb = min(eval_batch or eval_batch_size(sizes, dtype), max(1, n))
    return Estimate({"parameters": P, "evaluation buffers": 3 * eb * _units(sizes) * s + P + n * 8})


def gradcheck_estimate(sizes: Sequence[int], m: int, workers: int | None = None) -> Estimate:
    """Peak bytes of `bpcli gradcheck` on a batch of m examples, in float64.

    The network (loaded, and its float64 copy), its transposed weights, backprop's gradient, the
    numerical gradient and indices of the largest group; the batch x, y; the forward pass kept for
    restarts plus backprop's own pass (z, a, delta); and each worker's chunk of perturbed rows.
    """
    s, P = 8, parameter_count(sizes) * 8
    largest = max((int(n) * int(p) for p, n in zip(sizes[:-1], sizes[1:])), default=0)
    workers = workers or cpu_count()
    H = _units(sizes)
    return Estimate({
        "parameters": 4 * P,
        "per-group arrays": 4 * largest * s,
        "the batch (x, y)": m * (int(sizes[0]) + int(sizes[-1])) * s,
        "forward and backward passes": 5 * m * H * s,
        "chunks": workers * _CHUNK_ARRAYS * GRADCHECK_CHUNK_BYTES,
    })


# -- what the machine has ----------------------------------------------------------------------------


def available_bytes() -> int | None:
    """Memory this process can still get: MemAvailable, or less if a cgroup (container) limit is
    lower; None where neither can be read (then only HARD_LIMIT_BYTES applies)."""
    candidates = [v for v in (_meminfo_available(), _cgroup_room()) if v is not None]
    if not candidates:
        candidates = [v for v in (_sysconf_available(),) if v is not None]
    return min(candidates) if candidates else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the file says kB and means KiB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """limit - usage of this process's memory cgroup (v2, then v1); None when unlimited or unknown."""
    pairs = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
             ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))
    for limit_file, usage_file in pairs:
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 2**60:  # v1 writes "unlimited" as ~2^63
            return None
        return max(0, int(limit) - usage)
    return None


def _sysconf_available() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


# -- the checks --------------------------------------------------------------------------------------


def human(n: int) -> str:
    """Bytes for people: 18.6 GiB, 3.0 PiB; beyond EiB a power of ten (10^41 layers give 10^45 bytes)."""
    for unit, size in (("EiB", 2**60), ("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            if n >= 1000 * 2**60:
                return f"10^{len(str(n)) - 1} bytes"
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def require(what: str, estimate: Estimate, fix: str, available: int | None = None) -> None:
    """Raise `ResourceError` if `estimate` exceeds the available memory (or HARD_LIMIT_BYTES).

    what: the subject, e.g. "[784, 50000, 50000, 10] in float32"; fix: what to make smaller.
    """
    need = estimate.total
    if need > HARD_LIMIT_BYTES:
        raise ResourceError(f"{what} needs about {human(need)} of memory, more than any machine has; {fix}")
    available = available_bytes() if available is None else available
    if available is not None and need > available:
        part = f", mostly {estimate.largest}" if len(estimate.parts) > 1 else ""
        raise ResourceError(f"{what} needs about {human(need)} of memory{part}; this machine has "
                            f"{human(available)} available; {fix}")


def check_network(sizes: Sequence[int], dtype: str | object = "float64", what: str = "a network") -> None:
    """Refuse to build a network whose parameters alone cannot fit (with init's float64 temporary)."""
    require(f"{what} {shorten(list(sizes))} in {dtype}", Estimate({"parameters": initialization_bytes(sizes, dtype)}),
            "use smaller model.layers")


def check_training(cfg: Config, n_train: int, n_eval: int) -> None:
    """Refuse a training run that cannot fit. n_train: training examples; n_eval: the larger of the
    validation and test sets. Call after the data is loaded (it is then part of what is not available)
    and before the network is built."""
    est = training_estimate(cfg, n_train, n_eval)
    big_batch = est.parts.get("batch buffers", 0) > est.parts.get("parameters", 0)
    fix = "lower training.batch_size" if big_batch else "use smaller model.layers"
    require(f"training {shorten(list(cfg.model.layers))} in {cfg.training.dtype}", est, fix)


def check_evaluation(sizes: Sequence[int], dtype: str | object, n: int) -> None:
    """Refuse an evaluation (of n examples) that cannot fit."""
    require(f"evaluating {shorten(list(sizes))} in {dtype}", evaluation_estimate(sizes, dtype, n),
            "use a machine with more memory or a checkpoint of a smaller network")


def check_gradcheck(sizes: Sequence[int], m: int) -> None:
    """Refuse a gradient check of m examples that cannot fit."""
    est = gradcheck_estimate(sizes, m)
    per_batch = est.parts["the batch (x, y)"] + est.parts["forward and backward passes"]
    fix = "use a smaller --batch" if per_batch > est.parts["parameters"] else "use smaller model.layers"
    require(f"gradcheck of {shorten(list(sizes))} on {m:,} example{'s' * (m != 1)}", est, fix)
