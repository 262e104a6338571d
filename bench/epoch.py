"""One training epoch of 60,000 MNIST images: bpcli against PyTorch on the CPU and the matrix-product floor.

    python bench/epoch.py                 # all cases, medians of --repeats runs, a Rich table
    python bench/epoch.py --json          # the same, as one JSON object on stdout
    python bench/epoch.py --quick         # smoke run: 1 repeat on 6,000 images (not a measurement)

For each case three contenders run, alternating inside one run (bpcli, torch, floor, bpcli, torch,
floor, ...) so that the machine's drift hits them alike; each time is the median of the repeats.

- bpcli: `Trainer.run_epoch()`, the code path `bpcli train` uses (shuffle, gather, forward, backward,
  SGD update, running loss and accuracy), float32, a fresh Trainer per repeat (built untimed).
- torch: the same network (same initial weights), batch size, plain SGD with the same learning rate and
  softmax + cross-entropy (`F.cross_entropy` on logits, mean reduction), float32, on the CPU. Its
  batches are shuffled and sliced before the clock starts (pre-sliced tensors, no DataLoader), and it
  keeps no running loss or accuracy: both favour torch.
- bpcli without its per-layer statistics (`Trainer(..., monitor=False)`): the "monitor" column is what
  the statistics cost, bpcli / this - 1.
- floor: only the matrix products every backprop epoch must do, per layer and batch: the forward
  product, the weight-gradient product and (for all but the first layer) the delta product, in NumPy
  with preallocated outputs, same shapes, dtype and memory layout as bpcli's (feature-major buffers,
  which make these products faster than row-major ones).

Both libraries use the same number of threads: what NumPy's BLAS uses (threadpoolctl), and
torch.set_num_threads to match (`--threads` sets both).

Peak memory: `peak_rss_mb` is the peak resident set size of a fresh subprocess that imports only bpcli,
loads MNIST and runs one bpcli epoch of the case (VmHWM): what training that case needs, dataset and
interpreter included. A subprocess per case, because a process's peak RSS never goes down, and
without torch, whose import alone costs a few hundred MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

LEARNING_RATE = 0.1
QUICK_IMAGES = 6_000


@dataclass(frozen=True)
class Case:
    layers: tuple[int, ...]
    batch_size: int
    activation: str

    @property
    def label(self) -> str:
        return f"{list(self.layers)} b{self.batch_size} {self.activation}"

    @property
    def init(self) -> str:
        return "he" if self.activation == "relu" else "scaled_normal"


CASES = [
    Case(layers, batch_size, activation)
    for activation in ("sigmoid", "relu")
    for layers, batch_size in (((784, 30, 10), 10), ((784, 100, 10), 64), ((784, 512, 512, 10), 128))
] + [Case((784, 512, 256, 10), 256, "relu")]  # configs/mnist.yaml's network and batch (its optimizer aside)


# -- data and threads ----------------------------------------------------------------------------------


def load_data(path: Path, limit: int = 0):
    """All 60,000 training images (the first `limit` if > 0) as bpcli's float32 Dataset."""
    from bpcli.data import load_mnist

    return load_mnist(path, validation_size=0, dtype="float32", limit=limit)


def blas_info() -> dict:
    """NumPy's BLAS as threadpoolctl sees it: library, kernel (architecture) and threads."""
    from threadpoolctl import threadpool_info

    for pool in threadpool_info():
        if pool.get("user_api") == "blas" and "numpy" in pool.get("filepath", ""):
            return pool
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    return pools[0] if pools else {}


# -- the contenders --------------------------------------------------------------------------------------


def bpcli_config(case: Case):
    from bpcli.config import Config, DataConfig, ModelConfig, OptimizerConfig, TrainingConfig

    return Config(
        model=ModelConfig(layers=case.layers, activation=case.activation, output="softmax",
                          cost="cross_entropy", init=case.init),
        training=TrainingConfig(epochs=1, batch_size=case.batch_size, learning_rate=LEARNING_RATE,
                                optimizer=OptimizerConfig(name="sgd"), seed=0, dtype="float32"),
        data=DataConfig(validation_size=0),
        name="bench",
    )


def bpcli_trainer(case: Case, data, monitor: bool = True):
    from bpcli.train import Trainer

    return Trainer(bpcli_config(case), data, monitor=monitor)


def bpcli_epoch(case: Case, data, monitor: bool = True) -> float:
    """Seconds for one `Trainer.run_epoch()` (the Trainer is built before the clock starts); with
    `monitor=False` without the per-layer statistics, to measure what they cost."""
    trainer = bpcli_trainer(case, data, monitor)
    started = time.perf_counter()
    trainer.run_epoch()
    return time.perf_counter() - started


class TorchEpoch:
    """The same network, initial weights, batches and update rule in PyTorch."""

    def __init__(self, case: Case, data, seed: int = 0) -> None:
        import torch

        self.torch = torch
        self.case = case
        net = bpcli_trainer(case, data).net
        modules: list = []
        for l in net.layers:
            linear = torch.nn.Linear(net.sizes[l - 2], net.sizes[l - 1])
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(net.w[l]))  # (n_l, n_{l-1}), as torch stores it
                linear.bias.copy_(torch.from_numpy(net.b[l]))
            modules.append(linear)
            if l < net.L:
                modules.append(torch.nn.Sigmoid() if case.activation == "sigmoid" else torch.nn.ReLU())
        self.model = torch.nn.Sequential(*modules)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LEARNING_RATE)
        # Pre-sliced batches of a shuffled epoch, made before the clock starts.
        x = torch.from_numpy(data.train.x)
        labels = torch.from_numpy(data.train.labels)
        order = torch.from_numpy(np.random.default_rng(seed).permutation(len(labels)))
        m = case.batch_size
        self.batches = [(x[idx].contiguous(), labels[idx].contiguous()) for idx in order.split(m)]

    def run(self, batches: int | None = None) -> float:
        F = self.torch.nn.functional
        model, optimizer = self.model, self.optimizer
        started = time.perf_counter()
        for xb, yb in self.batches[:batches]:
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - started


class FloorEpoch:
    """Only the matrix products of an epoch's backprop: per layer and batch, z = a @ w.T,
    dw = delta.T @ a and (for l > 2) delta @ w, into preallocated outputs."""

    def __init__(self, case: Case, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        sizes, m = case.layers, case.batch_size
        f32 = np.float32
        self.w = [rng.standard_normal((sizes[i + 1], sizes[i])).astype(f32) for i in range(len(sizes) - 1)]
        # The layout bpcli's training loop uses (the fastest for these products, measured): the input
        # batch in rows, as gathered from the data, and every (m, n_l) array after it feature-major
        # (`bpcli.network.Workspace`), so that the floor is never slower than the products bpcli runs.
        def feature_major(n_l: int) -> np.ndarray:
            return np.empty((n_l, m), f32).T

        self.a = [rng.random((m, sizes[0])).astype(f32)] + [feature_major(n_l) for n_l in sizes[1:]]
        for a in self.a[1:]:
            a[...] = rng.random(a.shape)
        self.delta = [feature_major(n_l) for n_l in sizes]
        for d in self.delta:
            d[...] = rng.standard_normal(d.shape)
        self.z = [feature_major(n_l) for n_l in sizes]
        self.dw = [np.empty_like(w) for w in self.w]
        self.back = [feature_major(n_l) for n_l in sizes]
        # The same batch sizes as the epoch: full batches and a short last one.
        self.sizes = [min(m, n - i) for i in range(0, n, m)]

    def run(self, batches: int | None = None) -> float:
        w, a, delta, z, dw, back = self.w, self.a, self.delta, self.z, self.dw, self.back
        layers = range(len(w))
        started = time.perf_counter()
        for k in self.sizes[:batches]:
            for i in layers:
                np.matmul(a[i][:k], w[i].T, out=z[i + 1][:k])
            for i in reversed(layers):
                np.matmul(delta[i + 1][:k].T, a[i][:k], out=dw[i])
                if i > 0:
                    np.matmul(delta[i + 1][:k], w[i], out=back[i][:k])
        return time.perf_counter() - started


def peak_rss_mb(case: Case, data_path: Path, limit: int) -> float:
    """Peak RSS of a fresh process that loads MNIST and runs one bpcli epoch of `case` (see module doc)."""
    spec = json.dumps({"layers": list(case.layers), "batch_size": case.batch_size,
                       "activation": case.activation, "data": str(data_path), "limit": limit})
    out = subprocess.run([sys.executable, __file__, "--memory-worker", spec], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    return float(json.loads(out.stdout)["peak_rss_mb"])


def memory_worker(spec: str) -> None:
    s = json.loads(spec)
    case = Case(tuple(s["layers"]), s["batch_size"], s["activation"])
    bpcli_epoch(case, load_data(Path(s["data"]), s["limit"]))
    print(json.dumps({"peak_rss_mb": peak_rss_of_this_process()}))


def peak_rss_of_this_process() -> float:
    """MB. VmHWM, the high-water mark of this process's own memory map; ru_maxrss would not do in a
    subprocess, as Linux carries the parent's RSS at fork into the child's ru_maxrss across exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


# -- the run -------------------------------------------------------------------------------------------------


def measure(case: Case, data, repeats: int, with_torch: bool, warmup: bool) -> dict:
    """Median seconds per epoch of each contender, alternating bpcli, torch, floor, bpcli, ..."""
    floor = FloorEpoch(case, len(data.train))
    if warmup:  # page in code, buffers and thread pools: a few batches each, untimed
        trainer = bpcli_trainer(case, data)
        trainer.steps_per_epoch = 20  # the loop runs batches 0..steps_per_epoch-1
        trainer.run_epoch()
        floor.run(20)
        if with_torch:
            TorchEpoch(case, data).run(20)
    times: dict[str, list[float]] = {"bpcli": [], "bare": [], "torch": [], "floor": []}
    for r in range(repeats):
        times["bpcli"].append(bpcli_epoch(case, data))
        times["bare"].append(bpcli_epoch(case, data, monitor=False))
        if with_torch:
            epoch = TorchEpoch(case, data, seed=r)  # built (and its batches sliced) before its clock starts
            times["torch"].append(epoch.run())
            del epoch
        times["floor"].append(floor.run())
    med = {k: statistics.median(v) if v else None for k, v in times.items()}
    return {
        "layers": list(case.layers),
        "batch_size": case.batch_size,
        "activation": case.activation,
        "bpcli_s": med["bpcli"],
        "bpcli_no_monitor_s": med["bare"],
        "monitor_overhead": med["bpcli"] / med["bare"] - 1,
        "torch_s": med["torch"],
        "floor_s": med["floor"],
        "ratio_torch": med["bpcli"] / med["torch"] if med["torch"] else None,
        "ratio_floor": med["bpcli"] / med["floor"],
    }


def table(results: list[dict], title: str):
    from rich.table import Table

    t = Table(title=title)
    for name in ("case", "bpcli s", "torch s", "floor s", "bpcli/torch", "bpcli/floor", "monitor", "peak RSS MB"):
        t.add_column(name, justify="left" if name == "case" else "right")
    for r in results:
        t.add_row(
            f"{r['layers']} b{r['batch_size']} {r['activation']}",
            f"{r['bpcli_s']:.3f}",
            f"{r['torch_s']:.3f}" if r["torch_s"] is not None else "-",
            f"{r['floor_s']:.3f}",
            f"{r['ratio_torch']:.2f}" if r["ratio_torch"] is not None else "-",
            f"{r['ratio_floor']:.2f}",
            f"{100 * r['monitor_overhead']:+.1f}%",
            f"{r['peak_rss_mb']:.0f}",
        )
    return t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7, help="timed epochs per contender and case (median reported)")
    p.add_argument("--quick", action="store_true", help=f"smoke run: 1 repeat on {QUICK_IMAGES:,} images, no warm-up")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.add_argument("--data", type=Path, default=ROOT / "data" / "mnist", help="MNIST directory")
    p.add_argument("--threads", type=int, default=None, help="BLAS and torch threads (default: NumPy's BLAS setting)")
    p.add_argument("--case", action="append", default=[], help="only cases whose label contains this (repeatable)")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    p.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_worker:
        memory_worker(args.memory_worker)
        return 0

    from threadpoolctl import threadpool_limits

    from rich.console import Console

    console = Console(stderr=args.json)
    console.width = max(console.width, 112)  # the table's width, also when stdout is not a terminal
    limit = QUICK_IMAGES if args.quick else 0
    repeats = 1 if args.quick else args.repeats
    cases = [c for c in CASES if not args.case or any(s in c.label for s in args.case)]
    try:
        import torch
    except ImportError:
        torch = None
    with_torch = torch is not None and not args.no_torch

    blas = blas_info()
    threads = args.threads or blas.get("num_threads") or os.cpu_count()
    with threadpool_limits(limits=threads, user_api="blas"):
        if torch is not None:
            torch.set_num_threads(threads)
        data = load_data(args.data, limit)
        openblas_env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP_", "MKL_"))}
        console.print(
            f"NumPy {np.__version__}, {blas.get('internal_api', '?')} {blas.get('version', '?')} "
            f"({blas.get('architecture', '?')} kernel), {threads} BLAS threads"
            + (f"; torch {torch.__version__}, {torch.get_num_threads()} threads" if torch is not None else "; torch not installed")
            + f"; {len(data.train):,} images, {repeats} repeats" + (f"; env {openblas_env}" if openblas_env else ""),
            highlight=False,
        )
        results = []
        for case in cases:
            result = measure(case, data, repeats, with_torch, warmup=not args.quick)
            result["peak_rss_mb"] = peak_rss_mb(case, args.data, limit)
            results.append(result)
            if not args.json:
                console.print(f"  {case.label}: bpcli {result['bpcli_s']:.3f} s, floor {result['floor_s']:.3f} s"
                              + (f", torch {result['torch_s']:.3f} s" if result["torch_s"] else ""), highlight=False)
    if args.json:
        print(json.dumps({"cases": results}))
    else:
        console.print(table(results, f"one epoch of {len(data.train):,} MNIST images, float32, medians of {repeats}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
