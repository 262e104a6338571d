"""Start-up: how long from pressing Enter until `bpcli train` runs its first batch, and `bpcli --help`.

    python bench/startup.py                 # medians of 7 runs of each, a table
    python bench/startup.py --json
    python bench/startup.py --importtime    # also the slowest imports of `bpcli train` (python -X importtime)

Each measurement is a fresh process timed by this parent from its start:
- `python -c pass`: the interpreter alone, the floor under everything else.
- `bpcli --help`.
- first batch: `python -m bpcli train CONFIG` with a hook that exits the moment the training loop calls
  the first forward pass: imports, config, data loading and verification, run directory, network
  initialisation. With the decompressed-dataset cache warm (the usual case), and cold (an empty
  XDG_CACHE_HOME: the first run after installing), alternating.
The load average before the runs is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs `bpcli train ...` and exits at the start of the first training batch (the first forward pass
# given a workspace: evaluation comes only after an epoch).
HOOK = """
import os, runpy, sys
from bpcli.network import Network
forward = Network.forward
def first(self, x, *args, **kwargs):
    if kwargs.get("workspace") is not None:
        os.write(1, b"FIRST_BATCH\\n")
        os._exit(0)
    return forward(self, x, *args, **kwargs)
Network.forward = first
sys.argv = ["bpcli", *sys.argv[1:]]
runpy.run_module("bpcli", run_name="__main__")
"""


def timed(cmd: list[str], env: dict[str, str], marker: str | None = None) -> float:
    """Seconds from starting `cmd` to its exit, or to the line `marker` on its stdout."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=env)
    assert proc.stdout is not None
    at = None
    for line in proc.stdout:
        if marker and line.strip() == marker and at is None:
            at = time.perf_counter() - started
    proc.wait()
    if marker and at is None:
        raise SystemExit(f"{' '.join(cmd[:5])}: never reached the first batch (exit {proc.returncode})")
    return at if at is not None else time.perf_counter() - started


def import_times(config: str, top: int) -> list[tuple[float, str]]:
    """The `top` largest cumulative import times (s) of `bpcli train` up to its first batch."""
    with tempfile.TemporaryDirectory(prefix="bpcli-startup-") as run_dir:
        cmd = [sys.executable, "-X", "importtime", "-c", HOOK, "train", config, "--out", run_dir, "--force"]
        err = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT).stderr
    rows = []
    for line in err.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = line.removeprefix("import time:").split("|")
            rows.append((int(cumulative) / 1e6, name.rstrip()))
    # Top-level packages only (the least indented names), where time is spent in total.
    outer = [r for r in rows if not r[1].startswith("   ")]
    return sorted(outer, reverse=True)[:top]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", nargs="?", default=str(ROOT / "configs" / "mnist.yaml"))
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", action="store_true")
    p.add_argument("--importtime", action="store_true")
    args = p.parse_args(argv)

    warm_env = dict(os.environ)
    scratch = Path(tempfile.mkdtemp(prefix="bpcli-startup-"))  # run directories and cold caches
    try:
        return measure(args, warm_env, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def measure(args: argparse.Namespace, warm_env: dict[str, str], scratch: Path) -> int:
    run_dir = str(scratch / "run")
    train = [sys.executable, "-c", HOOK, "train", args.config, "--out", run_dir, "--force", "--log-format", "plain"]
    timed(train, warm_env, "FIRST_BATCH")  # fills the user's cache if it is empty: "warm" means warm
    load = os.getloadavg()
    times: dict[str, list[float]] = {"python -c pass": [], "bpcli --help": [], "first batch (cache warm)": [],
                                     "first batch (cache cold)": []}
    for k in range(args.repeats):
        cold_env = dict(os.environ, XDG_CACHE_HOME=str(scratch / f"cold-cache-{k}"))
        times["python -c pass"].append(timed([sys.executable, "-c", "pass"], warm_env))
        times["bpcli --help"].append(timed([sys.executable, "-m", "bpcli", "--help"], warm_env))
        times["first batch (cache warm)"].append(timed(train, warm_env, "FIRST_BATCH"))
        times["first batch (cache cold)"].append(timed(train, cold_env, "FIRST_BATCH"))
    result = {"medians_s": {k: statistics.median(v) for k, v in times.items()}, "runs_s": times,
              "load_before": load, "load_after": os.getloadavg(), "repeats": args.repeats}
    if args.importtime:
        result["slowest_imports_s"] = import_times(args.config, 12)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"medians of {args.repeats} runs; load average before {load[0]:.2f}, after {result['load_after'][0]:.2f}")
    for k, v in result["medians_s"].items():
        print(f"  {k:26} {v:6.3f} s   (min {min(times[k]):.3f}, max {max(times[k]):.3f})")
    for seconds, name in result.get("slowest_imports_s", []):
        print(f"  import {name.strip():32} {seconds:6.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
