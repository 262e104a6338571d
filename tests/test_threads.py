"""training.threads 0 ("auto"): BLAS threads from the physical cores, the CPU quota and the busy cores."""

from __future__ import annotations

from pathlib import Path

import pytest
from threadpoolctl import threadpool_info

from bpcli import threads


@pytest.mark.parametrize(
    ("cores", "quota", "busy", "expected"),
    [
        (2, None, 0.0, 2),    # idle 2-core machine: both cores
        (2, None, 0.5, 2),    # a core half occupied still counts as free
        (2, None, 0.6, 1),    # another process keeps a core mostly busy: one thread, never a stall
        (2, None, 1.0, 1),
        (2, None, 5.0, 1),    # overloaded: still one thread
        (8, None, 3.0, 5),
        (8, 1.5, 0.0, 1),     # a container allowed 1.5 CPUs: throttled with 2 spinning threads
        (8, 4.0, 0.0, 4),
        (8, 0.5, 0.0, 1),     # less than one CPU: at least one thread
        (1, None, 0.0, 1),
    ],
)
def test_auto_threads(cores, quota, busy, expected):
    assert threads.auto_threads(cores, quota, busy) == expected


def test_cpu_quota_v2(tmp_path: Path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cpu_quota(tmp_path) is None


def test_cpu_quota_v1(tmp_path: Path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cpu_quota(tmp_path) == 2.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # unlimited
    assert threads.cpu_quota(tmp_path) is None


def test_cpu_quota_unreadable(tmp_path: Path):
    (tmp_path / "cpu.max").write_text("garbage")
    assert threads.cpu_quota(tmp_path) is None
    assert threads.cpu_quota(tmp_path / "missing") is None


def _topology(root: Path, cpu: int, package: int, core: int) -> None:
    t = root / f"cpu{cpu}" / "topology"
    t.mkdir(parents=True)
    (t / "physical_package_id").write_text(f"{package}\n")
    (t / "core_id").write_text(f"{core}\n")


def test_hyperthread_siblings_count_as_one_core(tmp_path: Path):
    for cpu, (package, core) in enumerate([(0, 0), (0, 1), (0, 0), (0, 1), (1, 0), (1, 0)]):
        _topology(tmp_path, cpu, package, core)
    assert threads.physical_cores({0, 1, 2, 3, 4, 5}, tmp_path) == 3
    assert threads.physical_cores({0, 2}, tmp_path) == 1  # affinity: two siblings of one core
    assert threads.physical_cores({0, 7}, tmp_path) == 2  # topology unreadable: the CPUs themselves


def test_busy_cores_sees_processes_the_average_has_not_caught_up_with(tmp_path: Path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.10 0.20 0.30 3/120 4242\n")  # this process and 2 others runnable now
    assert threads.busy_cores(loadavg) == 2
    loadavg.write_text("1.70 0.20 0.30 1/120 4242\n")  # only this one now, but busy for the last minute
    assert threads.busy_cores(loadavg) == 1.7


def test_blas_threads_zero_applies_auto_and_a_number_overrides(monkeypatch):
    asked = []
    monkeypatch.setattr(threads, "auto_threads", lambda: asked.append(1) or 1)
    with threads.blas_threads(0):
        assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
    assert asked == [1]
    with threads.blas_threads(1):
        assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
    assert asked == [1]  # training.threads > 0 is taken as given


def test_resuming_with_the_config_accepts_the_threads_auto_chose():
    """The checkpoint records the count "auto" picked; the config file still says 0, and that is no
    different run (any other count is, since the sums would differ)."""
    from dataclasses import replace

    from bpcli import config, resume

    given = config.load(Path(__file__).resolve().parents[1] / "configs" / "mnist.yaml")
    assert given.training.threads == 0
    saved = replace(given, training=replace(given.training, threads=2))
    assert resume.differences(saved, given) == []
    explicit = replace(given, training=replace(given.training, threads=1))
    assert resume.differences(saved, explicit) == [("training.threads", 2, 1)]


def _stat(path: Path, busy_ticks: int) -> None:
    # /proc/stat's first line: user nice system idle iowait irq softirq steal guest guest_nice (ticks).
    path.write_text(f"cpu  {busy_ticks} 0 0 99999 7 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")


def test_the_start_window_counts_other_processes_cpu_and_not_this_ones(tmp_path: Path, monkeypatch):
    import os
    import time

    stat = tmp_path / "stat"
    hz = os.sysconf("SC_CLK_TCK")
    _stat(stat, 0)
    start = (time.monotonic() - 0.5, threads.cpu_seconds(stat), time.process_time() - 0.4)
    # In the 0.5 s window all processes used 0.9 s of CPU, 0.4 s of it this one: others 0.5 s -> 1 core.
    _stat(stat, round(0.9 * hz))
    monkeypatch.setattr(threads.time, "process_time", lambda: start[2] + 0.4)
    assert threads.others_since_start(start, stat) == pytest.approx(1.0, abs=0.05)
    # Nothing else ran: 0 cores, and the lagging load average no longer counts.
    _stat(stat, round(0.4 * hz))
    assert threads.others_since_start(start, stat) == pytest.approx(0.0, abs=0.05)
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("1.70 0.20 0.30 1/120 4242\n")  # the run that just ended, still in the average
    assert threads.busy_cores(loadavg, recent=0.0) == 0
    loadavg.write_text("1.70 0.20 0.30 3/120 4242\n")  # a passing process in the instant: the window decides
    assert threads.busy_cores(loadavg, recent=0.0) == 0
    assert threads.auto_threads(2, None, threads.busy_cores(loadavg, recent=0.0)) == 2
    loadavg.write_text("1.70 0.20 0.30 1/120 4242\n")
    assert threads.busy_cores(loadavg, recent=None) == 1.7  # no window: the average stands in


def test_no_window_when_it_is_too_short_or_proc_stat_is_unreadable(tmp_path: Path):
    import time

    stat = tmp_path / "stat"
    _stat(stat, 100)
    assert threads.others_since_start((time.monotonic(), threads.cpu_seconds(stat), time.process_time()), stat) is None
    assert threads.cpu_seconds(tmp_path / "missing") is None
    (tmp_path / "garbage").write_text("intr 1 2 3\n")
    assert threads.cpu_seconds(tmp_path / "garbage") is None
    old = (time.monotonic() - 1.0, None, time.process_time())
    assert threads.others_since_start(old, stat) is None
    # A notebook that imported bpcli an hour ago: the start-up window says nothing about now.
    stale = (time.monotonic() - 3600.0, threads.cpu_seconds(stat), time.process_time())
    assert threads.others_since_start(stale, stat) is None
