"""How many BLAS threads training should use on this machine: `training.threads: 0` ("auto").

More threads than cores that are really free is the expensive mistake here. OpenBLAS threads spin while
they wait for each other, so a thread that shares its core with another busy process stalls the whole
product (measured on the 2-core machine: an epoch of configs/mnist.yaml took 44 s with 2 threads and
3.3 s with 1 while another process held a core). Fewer threads than free cores only forgoes the gain
of the second thread (10-30% on that machine). So "auto" counts the cores this process may really
use and gives up the ones the load average says are busy:

    threads = max(1, min(physical cores usable, CPU quota, physical cores - busy cores))

- physical cores: hyperthread siblings share one core's arithmetic units, so they add little to
  dense products and stall like a shared core; only the CPUs in this process's affinity count.
- CPU quota: a container limited to 1.5 CPUs (cgroup `cpu.max`, or v1 `cpu.cfs_quota_us`) is
  throttled when 2 threads spin, exactly as if the second core were busy: floor(quota), at least 1.
- busy cores: what other processes used while this one started (/proc/stat's CPU time of all
  processes minus this one's, over the time since `import bpcli`: the imports and the data loading,
  0.4-0.9 s), a core counting as busy when it is more than half occupied. Without that window (shorter
  than 0.1 s; longer than 30 s, as in a notebook that trains long after `import bpcli`; or /proc/stat
  unreadable): the larger of the 1-minute load average and the processes runnable right now. The
  average lags by a minute: right after a run ends it still counts that run, so a second run started at
  once got 1 thread on an idle machine (16.8 s instead of 11.5 s for configs/mnist.yaml); the window
  does not. Two runs started together each see the other loading its data in the window, and take 1
  thread each.

Nothing here may fail: every source that cannot be read falls back to the next best answer.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Iterator

CGROUP = Path("/sys/fs/cgroup")
PROC_STAT = Path("/proc/stat")
MIN_WINDOW = 0.1  # seconds: /proc/stat counts in 10 ms ticks per CPU, 10+ ticks per core in the window
MAX_WINDOW = 30.0  # seconds: in a long-lived process (a notebook) the start says nothing about now


def cpu_seconds(stat: Path = PROC_STAT) -> float | None:
    """CPU time every process has used since boot, summed over CPUs (the non-idle fields of /proc/stat's
    `cpu` line: user, nice, system, irq, softirq, steal), None when unreadable."""
    try:
        fields = stat.read_text().split("\n", 1)[0].split()
        if fields[0] != "cpu":
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


# When this process's start-up window began (`import bpcli` imports this module first, so the window
# spans the whole start: imports, config, data): wall clock, all processes' CPU time, this process's.
_START = (time.monotonic(), cpu_seconds(), time.process_time())


def others_since_start(start: tuple[float, float | None, float] = _START, stat: Path = PROC_STAT) -> float | None:
    """Cores other processes kept busy, on average, since `start` (by default this module's import),
    None when the window is shorter than MIN_WINDOW or longer than MAX_WINDOW, or /proc/stat cannot be
    read."""
    wall, cpu, own = start
    now = cpu_seconds(stat)
    elapsed = time.monotonic() - wall
    if cpu is None or now is None or not MIN_WINDOW <= elapsed <= MAX_WINDOW:
        return None
    return max(0.0, (now - cpu) - (time.process_time() - own)) / elapsed


def usable_cpus() -> set[int]:
    """The logical CPUs this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def cpu_count() -> int:
    """How many logical CPUs this process may run on: the default number of worker threads or processes."""
    return max(1, len(usable_cpus()))


def physical_cores(cpus: set[int], sys_cpu: Path = Path("/sys/devices/system/cpu")) -> int:
    """Distinct (package, core) pairs among `cpus`; len(cpus) when the topology cannot be read."""
    cores = set()
    for cpu in cpus:
        topology = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(),
                       (topology / "core_id").read_text().strip()))
        except OSError:
            return len(cpus)
    return max(1, len(cores))


def cpu_quota(root: Path = CGROUP) -> float | None:
    """The CPUs this cgroup may use per period (cgroup v2 `cpu.max`, else v1), None when unlimited or
    unknown. Only the cgroup filesystem root is read: inside a container that is the container's own."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def busy_cores(loadavg: Path = Path("/proc/loadavg"), recent: float | None = None) -> float:
    """Cores other processes occupy: `recent` (what they used during this process's start,
    `others_since_start`) when known; else the larger of the 1-minute load average and the other
    processes runnable now.

    The runnable count is an instant: any short-lived process (a terminal multiplexer redrawing, a
    shell prompt) counts as a whole busy core in it, and a run in tmux got 1 thread on an idle machine
    that way. The window averages over half a second, so it stands alone when it exists."""
    if recent is not None:
        return recent
    try:
        fields = loadavg.read_text().split()
        running = int(fields[3].split("/")[0]) - 1  # "runnable/total"; the runnable include this process
        return max(float(fields[0]), running)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def auto_threads(cores: int | None = None, quota: float | None = None, busy: float | None = None) -> int:
    """BLAS threads for `training.threads: 0` (see the module doc); the arguments default to this
    machine now and exist for tests. A quota of None means unlimited."""
    cores = physical_cores(usable_cpus()) if cores is None else cores
    quota = cpu_quota() if quota is None else quota
    busy = busy_cores(recent=others_since_start()) if busy is None else busy
    limit = cores if quota is None else max(1, math.floor(quota))
    free = math.floor(cores - busy + 0.5)  # a core half occupied or less still counts as free
    return max(1, min(cores, limit, free))


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Limit BLAS to n threads for the block; 0 ("auto") picks them from the machine now (`auto_threads`).
    threadpoolctl is imported here, not at the top, to keep it out of `import bpcli` (start-up time)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n if n > 0 else auto_threads(), user_api="blas"):
        yield
