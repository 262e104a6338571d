"""Profile bpcli's training epoch for one benchmark case, line by line.

    py-spy record -r 1000 -f raw -o /tmp/epoch.txt -- python bench/profile_epoch.py "b64 relu"
    python bench/profile_epoch.py --summary /tmp/epoch.txt      # time per source line of the epoch
    python bench/profile_epoch.py "b64 relu" --pyinstrument    # or pyinstrument's call tree

The case is chosen like `bench/epoch.py --case`: any part of "[784, 100, 10] b64 relu". BLAS runs on
`--threads` threads (default 1: py-spy pauses the process for every sample, which upsets OpenBLAS's
thread hand-offs, so profiles of several threads misattribute time).
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from epoch import CASES, ROOT, bpcli_trainer, load_data  # noqa: E402


def summary(path: Path, top: int) -> None:
    """Share of the samples inside `run_epoch` per deepest bpcli/numpy source line (py-spy raw format)."""
    lines: collections.Counter[str] = collections.Counter()
    total = 0
    for row in path.read_text().splitlines():
        stack, _, count = row.rpartition(" ")
        if "run_epoch" not in stack:
            continue
        frames = [f for f in stack.split(";") if "bpcli/" in f or "numpy/" in f]
        lines[frames[-1] if frames else "?"] += int(count)
        total += int(count)
    print(f"{total} samples in Trainer.run_epoch")
    for frame, n in lines.most_common(top):
        print(f"{100 * n / total:5.1f}%  {frame}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("case", nargs="?", default="b64 relu")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pyinstrument", action="store_true", help="profile with pyinstrument and print its tree")
    p.add_argument("--summary", type=Path, help="summarize a py-spy raw profile instead of running")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    if args.summary:
        summary(args.summary, args.top)
        return
    from threadpoolctl import threadpool_limits

    case = next(c for c in CASES if args.case in c.label)
    data = load_data(ROOT / "data" / "mnist")
    with threadpool_limits(args.threads, user_api="blas"):
        if args.pyinstrument:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
        for _ in range(args.epochs):
            bpcli_trainer(case, data).run_epoch()
        if args.pyinstrument:
            profiler.stop()
            print(profiler.output_text(color=False))


if __name__ == "__main__":
    main()
