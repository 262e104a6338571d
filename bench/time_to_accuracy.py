"""Time to accuracy: the whole `bpcli train CONFIG` against the same recipe written plainly in PyTorch.

    python bench/time_to_accuracy.py                      # configs/mnist.yaml, 3 rounds, a Rich table
    python bench/time_to_accuracy.py --json               # the same, as one JSON object on stdout
    python bench/time_to_accuracy.py --rounds 5 --threads 2 --set training.epochs=4

What a user feels is the time from pressing Enter to a trained network, so each contender is a fresh
process timed from its start by this (lean, stdlib-only) parent, which stamps every line the child
prints as it arrives:

- bpcli: `python -m bpcli train CONFIG --log-format jsonl` with the config's recipe, into a temporary
  run directory: imports, data loading and verification, training, per-epoch validation, checkpoints
  and metrics written after every epoch, the final test pass.
- torch: this file run as `--torch-worker`: the same recipe in plain PyTorch on the CPU: the same IDX
  files read with gzip + NumPy (no checksums), the same seeded train/validation split and [0, 1]
  float32 scaling, the same layer sizes, activation and initialisation scheme (torch's own random
  numbers), softmax + cross-entropy on the batch mean, the same batch size and epochs, momentum SGD
  with L2 exactly as bpcli applies it (v = mu v - eta (g + (lambda/n) w), p += v, biases undecayed;
  `bpcli/optim.py`) and its learning-rate schedule per update (`bpcli.optim.learning_rate`), the same
  running training loss and accuracy, validation after every epoch, test at the end. It writes no
  checkpoints and verifies no checksums: both favour torch.

Which epoch first crosses a threshold depends on the initial weights as much as on the code, so by
default round k trains with seed k (both contenders alike) and the medians are over seeds as well as
over the machine's noise; `--same-seed` keeps the config's seed. `s/epoch` is the pure speed: the
median time between two epoch lines.

Both use the same number of threads (`--threads`; default the config's `training.threads`, with 0
resolved as bpcli resolves it) and alternate inside one run (bpcli, torch, then torch, bpcli, ...), so
the machine's drift hits them alike; each figure is the median over the rounds. Time to X% is the
time from the process start to the arrival of the first epoch line whose validation accuracy is at
least X%. Peak RSS is the child's `ru_maxrss` from wait4 (this parent imports no NumPy, so the
high-water mark Linux carries over from the parent across fork/exec stays far below the child's).
The load average (`os.getloadavg`) before every run is reported with it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.980, 0.983)


# -- the recipe ------------------------------------------------------------------------------------------


def recipe(config: str, overrides: list[str], threads: int | None) -> dict:
    """What both contenders train: the config's model, training and data fields, as plain JSON."""
    from bpcli.config import load

    cfg = load(config, overrides)
    m, t, d = cfg.model, cfg.training, cfg.data
    if threads is None:
        threads = t.threads or resolved_threads()
    return {
        "config": config, "overrides": overrides, "layers": list(m.layers), "activation": m.activation,
        "output": m.output, "cost": m.cost, "init": m.init, "epochs": t.epochs, "batch_size": t.batch_size,
        "learning_rate": t.learning_rate, "optimizer": t.optimizer.name, "momentum": t.optimizer.momentum,
        "l2": t.l2, "schedule": {"name": t.schedule.name, "step_epochs": t.schedule.step_epochs,
                                 "gamma": t.schedule.gamma, "min_learning_rate": t.schedule.min_learning_rate},
        "seed": t.seed, "dtype": t.dtype, "threads": threads, "data": d.path,
        "validation_size": d.validation_size, "limit": d.limit,
    }


def resolved_threads() -> int:
    """The BLAS threads bpcli picks for `training.threads: 0` on this machine now."""
    try:
        from bpcli.train import auto_threads
    except ImportError:  # a bpcli from before "auto": 0 left BLAS at one thread per core
        return os.cpu_count() or 1
    return auto_threads()


# -- running one contender ---------------------------------------------------------------------------------


def run(cmd: list[str], env: dict[str, str]) -> dict:
    """Run `cmd`, stamping each JSON line of its stdout with the seconds since the start; wall time,
    the epoch lines, the summary and the child's peak RSS (MB)."""
    load = os.getloadavg()[0]
    started = time.perf_counter()
    # stderr to a file: a pipe nobody reads until the end could fill up and stall the child.
    err = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT, env=env)
    epochs, summary = [], None
    assert proc.stdout is not None
    for line in proc.stdout:
        at = time.perf_counter() - started
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if obj.get("event") == "epoch":
            epochs.append({"at": at, "epoch": obj["epoch"], "val_accuracy": obj["val_accuracy"]})
        elif obj.get("event") == "summary":
            summary = obj
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err.seek(0)
    stderr = err.read()
    err.close()
    if proc.returncode != 0 or summary is None:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode}):\n{stderr[-2000:]}")
    stamps = [e["at"] for e in epochs]
    out = {"wall_s": wall, "test_accuracy": summary["test_accuracy"], "peak_rss_mb": usage.ru_maxrss / 1024,
           "load": load, "epochs": epochs,
           # Seconds per epoch (training, validation, and for bpcli its checkpoints), between epoch lines.
           "epoch_s": statistics.median(b - a for a, b in zip(stamps, stamps[1:])) if len(stamps) > 1 else None}
    for x in THRESHOLDS:  # time to X%: the first epoch line at or above X
        reached = next((e["at"] for e in epochs if e["val_accuracy"] is not None and e["val_accuracy"] >= x), None)
        out[f"to_{x * 100:.1f}_s"] = reached
    return out


def bpcli_cmd(r: dict, run_dir: Path) -> list[str]:
    sets = [*r["overrides"], f"training.threads={r['threads']}", f"training.seed={r['seed']}"]
    return [sys.executable, "-m", "bpcli", "train", r["config"], "--log-format", "jsonl", "--out", str(run_dir),
            "--force", *(a for s in sets for a in ("--set", s))]


def torch_cmd(r: dict) -> list[str]:
    return [sys.executable, __file__, "--torch-worker", json.dumps(r)]


# -- the PyTorch side (run in its own process) ---------------------------------------------------------------


def read_idx(directory: Path, stem: str):
    """One MNIST IDX file, gzip'd or raw, as a NumPy array (the plain way: no checks)."""
    import gzip

    import numpy as np

    gz = directory / f"{stem}.gz"
    blob = gzip.decompress(gz.read_bytes()) if gz.is_file() else (directory / stem).read_bytes()
    dims = blob[3]
    shape = tuple(int.from_bytes(blob[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(blob, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def learning_rate(s: dict, eta: float, step: int, steps_per_epoch: int, epochs: int) -> float:
    """bpcli.optim.learning_rate, written out."""
    if s["name"] == "constant":
        return eta
    if s["name"] == "step":
        return eta * s["gamma"] ** ((step // steps_per_epoch) // s["step_epochs"])
    total = max(1, steps_per_epoch * epochs)
    progress = min(step, total) / total
    return s["min_learning_rate"] + (eta - s["min_learning_rate"]) * 0.5 * (1 + math.cos(math.pi * progress))


def torch_worker(r: dict) -> None:
    import numpy as np
    import torch
    import torch.nn.functional as F

    if r["optimizer"] not in ("sgd", "momentum") or r["output"] != "softmax" or r["cost"] != "cross_entropy":
        raise SystemExit("the torch side knows sgd/momentum with softmax + cross_entropy only")
    torch.set_num_threads(r["threads"])
    torch.manual_seed(r["seed"])
    dtype = {"float32": torch.float32, "float64": torch.float64}[r["dtype"]]
    # Data: the same files, the same seeded split as bpcli.data.load_dataset, pixels scaled to [0, 1].
    d = Path(r["data"])
    images, labels = read_idx(d, "train-images-idx3-ubyte"), read_idx(d, "train-labels-idx1-ubyte")
    order = np.random.default_rng(r["seed"]).permutation(len(labels))
    val_idx, train_idx = np.sort(order[: r["validation_size"]]), np.sort(order[r["validation_size"]:])
    if r["limit"]:
        train_idx = train_idx[: r["limit"]]

    def tensors(img, lab):
        x = torch.from_numpy(img.reshape(len(img), -1)).to(dtype).mul_(1.0 / 255.0)
        return x, torch.from_numpy(lab.astype(np.int64))

    x, y = tensors(images[train_idx], labels[train_idx])
    x_val, y_val = tensors(images[val_idx], labels[val_idx])
    x_test, y_test = tensors(read_idx(d, "t10k-images-idx3-ubyte"), read_idx(d, "t10k-labels-idx1-ubyte"))

    # The network: bpcli's init schemes (weights ~ N(0, std^2), biases 0; "normal": N(0, 1) biases).
    sizes, act = r["layers"], {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[r["activation"]]
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        std = {"normal": 1.0, "scaled_normal": n_in ** -0.5, "xavier": (2 / (n_in + n_out)) ** 0.5,
               "he": (2 / n_in) ** 0.5}[r["init"]]
        w = (torch.randn(n_out, n_in, dtype=dtype) * std).requires_grad_()
        b = (torch.randn(n_out, dtype=dtype) if r["init"] == "normal" else torch.zeros(n_out, dtype=dtype))
        params += [w, b.requires_grad_()]

    def logits(a):
        for i in range(0, len(params), 2):
            z = F.linear(a, params[i], params[i + 1])
            a = act(z) if i + 2 < len(params) else z
        return a

    def accuracy(xs, ys) -> float:
        with torch.no_grad():
            return float((logits(xs).argmax(1) == ys).double().mean())

    n, m, mu = len(y), r["batch_size"], r["momentum"] if r["optimizer"] == "momentum" else 0.0
    decay = r["l2"] / n  # lambda / n, on the weights only, as bpcli's Optimizer
    velocity = [torch.zeros_like(p) for p in params]
    steps_per_epoch, step = math.ceil(n / m), 0
    for epoch in range(1, r["epochs"] + 1):
        perm = torch.randperm(n)
        loss_sum, correct = 0.0, 0
        for i in range(0, n, m):
            idx = perm[i: i + m]
            xb, yb = x[idx], y[idx]
            out = logits(xb)
            loss = F.cross_entropy(out, yb)
            for p in params:
                p.grad = None
            loss.backward()
            loss_sum += float(loss) * len(idx)
            correct += int((out.argmax(1) == yb).sum())
            eta = learning_rate(r["schedule"], r["learning_rate"], step, steps_per_epoch, r["epochs"])
            with torch.no_grad():
                for k, (p, v) in enumerate(zip(params, velocity)):
                    g = p.grad
                    if decay and k % 2 == 0:
                        g.add_(p, alpha=decay)       # g + (lambda / n) w
                    if mu:
                        v.mul_(mu).add_(g, alpha=-eta)  # v = mu v - eta g
                        p.add_(v)
                    else:
                        p.add_(g, alpha=-eta)
            step += 1
        print(json.dumps({"event": "epoch", "epoch": epoch, "train_loss": loss_sum / n, "train_accuracy": correct / n,
                          "val_accuracy": accuracy(x_val, y_val) if len(y_val) else None}), flush=True)
    print(json.dumps({"event": "summary", "test_accuracy": accuracy(x_test, y_test)}), flush=True)


# -- the run ---------------------------------------------------------------------------------------------------


def median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r[key] is not None]
    # A threshold some runs never reached has no meaningful median unless most reached it.
    return statistics.median(values) if len(values) * 2 > len(runs) else None


def summarize(runs: dict[str, list[dict]]) -> dict:
    keys = ["wall_s", "epoch_s", *(f"to_{x * 100:.1f}_s" for x in THRESHOLDS), "test_accuracy", "peak_rss_mb"]
    med = {name: {k: median(rs, k) for k in keys} for name, rs in runs.items()}
    ratios = {k: med["bpcli"][k] / med["torch"][k] if med["bpcli"][k] and med["torch"][k] else None
              for k in keys if k != "test_accuracy"}
    return {"medians": med, "ratio_bpcli_torch": ratios}


def table(result: dict):
    from rich.table import Table

    r = result["recipe"]
    t = Table(title=f"{r['config']}: {r['epochs']} epochs, batch {r['batch_size']}, {r['threads']} thread(s), "
                    f"medians of {result['rounds']} rounds")
    for name in ("", "wall s", "s/epoch", "to 98.0% s", "to 98.3% s", "test %", "peak RSS MB"):
        t.add_column(name, justify="left" if not name else "right")

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    keys = ("wall_s", "epoch_s", "to_98.0_s", "to_98.3_s")
    for name in ("bpcli", "torch"):
        m = result["medians"][name]
        t.add_row(name, *(fmt(m[k], ".2f" if k == "epoch_s" else ".1f") for k in keys), fmt(m["test_accuracy"] and 100 * m["test_accuracy"], ".2f"),
                  fmt(m["peak_rss_mb"], ".0f"))
    q = result["ratio_bpcli_torch"]
    t.add_row("bpcli/torch", *(fmt(q[k], ".2f") for k in keys), "", fmt(q["peak_rss_mb"], ".2f"))
    return t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", default=str(ROOT / "configs" / "mnist.yaml"))
    p.add_argument("--rounds", type=int, default=3, help="runs of each contender, alternating (median reported)")
    p.add_argument("--threads", type=int, default=None, help="threads for both (default: the config's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for both contenders (repeatable)")
    p.add_argument("--same-seed", action="store_true",
                   help="every round with the config's seed (default: round k uses seed k, for both contenders)")
    p.add_argument("--only", choices=("bpcli", "torch"), help="run one contender only (no ratios)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.add_argument("--torch-worker", help=argparse.SUPPRESS)
    p.add_argument("--recipe-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.recipe_worker:
        print(json.dumps(recipe(*json.loads(args.recipe_worker))))
        return 0
    if args.torch_worker:
        torch_worker(json.loads(args.torch_worker))
        return 0

    # The recipe comes from a child process too: bpcli.config imports NumPy, which this parent avoids.
    cmd = [sys.executable, __file__, "--recipe-worker", json.dumps([args.config, args.overrides, args.threads])]
    r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    names = [args.only] if args.only else ["bpcli", "torch"]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    scratch = Path(tempfile.mkdtemp(prefix="bpcli-tta-"))
    try:
        for k in range(args.rounds):
            for name in names if k % 2 == 0 else names[::-1]:
                rk = r if args.same_seed else dict(r, seed=k)
                cmd = bpcli_cmd(rk, scratch / f"run{k}") if name == "bpcli" else torch_cmd(rk)
                out = run(cmd, env)
                runs[name].append(out)
                print(f"round {k + 1} {name}: {out['wall_s']:.1f} s, test {100 * out['test_accuracy']:.2f}%, "
                      f"to 98.0% {out['to_98.0_s']}, peak {out['peak_rss_mb']:.0f} MB, load {out['load']:.2f}",
                      file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for missing in {"bpcli", "torch"} - set(names):
        runs[missing] = [{k: None for k in runs[names[0]][0]}]
    result = {"recipe": r, "rounds": args.rounds, "loads": {n: [x["load"] for x in rs] for n, rs in runs.items()},
              **summarize(runs), "runs": runs}
    if args.json:
        print(json.dumps(result))
    else:
        from rich.console import Console

        console = Console()
        console.width = max(console.width, 100)  # the table's width, also when stdout is not a terminal
        console.print(table(result))
        console.print(f"load averages before each run: {result['loads']}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
