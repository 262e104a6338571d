"""Full entry-by-entry gradient check on 10 real MNIST examples: how long it takes.

    python bench/gradcheck.py                    # both networks, central differences, a Rich table
    python bench/gradcheck.py --json             # the same, as one JSON object on stdout
    python bench/gradcheck.py --method complex   # the complex step instead
    python bench/gradcheck.py --workers 1        # one thread (default: every CPU available)

Each case is `gradcheck.check(net, x, y, method)` on every parameter of a freshly initialized sigmoid /
softmax / cross-entropy network (float64) and the first 10 test images: the reference path of `bpcli
gradcheck CONFIG --batch 10` after loading (the default run adds the training path, which shares these
numerical derivatives). The time covers the backprop gradient, every numerical derivative and
the comparison; not loading MNIST. Targets on the 2-core development machine: [784, 100, 10] (79,510
parameters) under 5 s and [784, 512, 512, 10] (669,706 parameters) under 60 s. Wall time depends on
what else the machine runs, so CPU time is reported too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bpcli import gradcheck  # noqa: E402
from bpcli.data import load_mnist  # noqa: E402
from bpcli.threads import cpu_count  # noqa: E402
from bpcli.network import Network  # noqa: E402

CASES: list[tuple[tuple[int, ...], float]] = [((784, 100, 10), 5.0), ((784, 512, 512, 10), 60.0)]


def mnist_batch(m: int) -> tuple[np.ndarray, np.ndarray]:
    for directory in (ROOT / "data" / "mnist", ROOT.parent / "shared" / "data" / "mnist"):
        if (directory / "t10k-images-idx3-ubyte.gz").is_file():
            ds = load_mnist(directory, validation_size=1000, dtype="float64")
            return ds.test.x[:m], ds.test.y[:m]
    raise SystemExit("MNIST not found in data/mnist")


def run(sizes: tuple[int, ...], x: np.ndarray, y: np.ndarray, method: str, workers: int | None) -> dict[str, object]:
    net = Network.create(sizes, "sigmoid", "softmax", "cross_entropy", rng=np.random.default_rng(0))
    wall, cpu = time.perf_counter(), time.process_time()
    result = gradcheck.check(net, x, y, method=method, workers=workers)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    params = net.n_w + net.n_b
    return {
        "sizes": list(sizes),
        "parameters": params,
        "checked": result.checked,
        "examples": len(x),
        "method": method,
        "seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "parameters_per_second": round(params / wall),
        "passed": result.passed,
        "max_rel_error": max(g.max_rel_error for g in result.groups),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--method", default="central", choices=["central", "complex"])
    parser.add_argument("--examples", type=int, default=10)
    parser.add_argument("--workers", type=int, default=None, help="threads (default: CPUs available)")
    parser.add_argument("--small-only", action="store_true", help="only [784, 100, 10]")
    args = parser.parse_args()

    x, y = mnist_batch(args.examples)
    cases = CASES[:1] if args.small_only else CASES
    rows = []
    for sizes, target in cases:
        row = run(sizes, x, y, args.method, args.workers)
        row["target_seconds"] = target
        rows.append(row)
    if args.json:
        print(json.dumps({"workers": args.workers or cpu_count(), "cases": rows}, indent=2))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    threads = args.workers or cpu_count()
    table = Table(title=f"every entry, --method {args.method}, {args.examples} MNIST examples, {threads} threads",
                  title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("network", "parameters", "seconds", "CPU s", "param/s", "target", "max rel"):
        table.add_column(name, justify="right", no_wrap=True)
    for r in rows:
        met = r["seconds"] < r["target_seconds"]  # type: ignore[operator]
        table.add_row(
            "-".join(map(str, r["sizes"])), f"{r['parameters']:,}", f"{r['seconds']:.2f}", f"{r['cpu_seconds']:.2f}",
            f"{r['parameters_per_second']:,}", f"<{r['target_seconds']:.0f} s " + ("[green]met[/]" if met else "[red]missed[/]"),
            f"{r['max_rel_error']:.1e}" + ("" if r["passed"] else " [red]FAIL[/]"),
        )
    Console().print(table)


if __name__ == "__main__":
    main()
