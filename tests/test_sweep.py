"""`bpcli sweep` (issue 16): an Optuna study whose trials are ordinary runs, in real worker processes that
share one real journal file; Ctrl-C and --resume; a killed worker; the best config trained again; and
search spaces refused with one line each.

The sweeps are small (configs/tiny.yaml on a few hundred to a few thousand examples, 2-6 epochs), so
each test takes a few seconds with its process start-ups included.
"""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import CONFIGS, ROOT

optuna = pytest.importorskip("optuna")

from bpcli import config, sweep_space  # noqa: E402
from bpcli.errors import ConfigError  # noqa: E402
from bpcli.sweep import open_storage  # noqa: E402

TINY = str(CONFIGS / "tiny.yaml")
SMALL = ["--set", "data.limit=1000", "--set", "data.validation_size=200", "--set", "training.epochs=3"]
pytestmark = pytest.mark.slow


def bpcli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "bpcli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160"}
    return subprocess.Popen([sys.executable, "-m", "bpcli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def study_of(root: Path) -> Any:
    name = json.loads((root / "sweep.json").read_text())["study"]
    return optuna.load_study(study_name=name, storage=open_storage(None, root))


def write_space(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def by_state(study: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for t in study.get_trials(deepcopy=False):
        out.setdefault(t.state.name, []).append(t)
    return out


def metrics_rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# -- two workers, one storage ------------------------------------------------------------------------------

PARALLEL_SPACE = """\
trials: 8
sampler: {name: random, seed: 3}
pruner: {name: median, startup_trials: 2}
params:
  training.learning_rate: {loguniform: [0.001, 2.0]}
  training.batch_size: {choice: [16, 32]}
  model.layers: {choice: [[784, 16, 10], [784, 24, 10]]}
"""


@pytest.fixture(scope="module")
def parallel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str], float]:
    cwd = tmp_path_factory.mktemp("parallel")
    space = write_space(cwd / "space.yaml", PARALLEL_SPACE)
    started = time.perf_counter()
    done = bpcli("sweep", TINY, "--space", str(space), "--jobs", "2", "--json", *SMALL, cwd=cwd)
    return cwd / "runs" / "space", done, time.perf_counter() - started


def test_two_workers_share_one_study_and_no_trial_runs_twice(parallel: Any) -> None:
    root, done, seconds = parallel
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    study = study_of(root)
    trials = study.get_trials(deepcopy=False)
    assert [t.number for t in trials] == list(range(8))
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    # Two processes did the work, neither of them this one's parent (the coordinator).
    assert len({t.user_attrs["pid"] for t in trials}) == 2
    for t in trials:
        run_dir = root / f"trial-{t.number:03d}"
        assert Path(t.user_attrs["run_dir"]) == run_dir.resolve()
        saved = config.load(run_dir / "config.yaml")
        assert saved.name == f"space-trial-{t.number:03d}"
        assert saved.training.learning_rate == t.params["training.learning_rate"]
        assert saved.training.batch_size == t.params["training.batch_size"]
        assert list(saved.model.layers) == json.loads(t.params["model.layers"])
        assert saved.training.threads == 1
        # Run once: one metrics row per epoch it reported, epochs 1..k, in a directory no other trial used.
        assert [r["epoch"] for r in metrics_rows(run_dir)] == sorted(t.intermediate_values)
        assert [r["val_accuracy"] for r in metrics_rows(run_dir)] == [t.intermediate_values[e] for e in
                                                                      sorted(t.intermediate_values)]
    assert sorted(p.name for p in root.glob("trial-*")) == [f"trial-{n:03d}" for n in range(8)]
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 8
    assert result["status"] == "finished" and len(result["ranked"]) == 8
    assert seconds < 30


def test_pruned_trials_stop_early_and_complete_ones_do_not(parallel: Any) -> None:
    root, done, _ = parallel
    listed = json.loads(bpcli("runs", str(root), "--json", cwd=root.parents[1]).stdout)
    states = {Path(r["path"]).name: r["state"] for r in listed}
    for t in study_of(root).get_trials(deepcopy=False):
        rows = metrics_rows(root / f"trial-{t.number:03d}")
        if t.state.name == "PRUNED":
            # The median pruner may also stop a trial after its last epoch (below the median there too);
            # which trials finish first depends on the two jobs' timing, so this test allows it, and
            # test_pruning_stops_hopeless_trials_after_their_first_epoch pins down early pruning.
            assert len(rows) <= 3 and len(rows) == len(t.intermediate_values)
            assert (root / f"trial-{t.number:03d}" / "last.npz").is_file()
            # `bpcli runs` says the trial was stopped on purpose, not interrupted with a resume command.
            assert states[f"trial-{t.number:03d}"] == "pruned"
        else:
            assert len(rows) == 3 and t.value == max(r["val_accuracy"] for r in rows)
            assert states[f"trial-{t.number:03d}"] == "finished"


def test_the_best_config_trains_to_the_reported_value_bitwise(parallel: Any, tmp_path: Path) -> None:
    root, done, _ = parallel
    best = study_of(root).best_trial
    result = json.loads(done.stdout)
    assert result["best"]["number"] == best.number and result["best"]["value"] == best.value
    assert result["best_config"] == str(Path("runs/space/best.yaml"))
    again = bpcli("train", str(root / "best.yaml"), "--json", "--out", str(tmp_path / "again"), cwd=root.parents[1])
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["best_val_accuracy"] == best.value
    with np.load(root / f"trial-{best.number:03d}" / "best.npz") as a, np.load(tmp_path / "again" / "best.npz") as b:
        for key in a.files:
            if key.startswith(("w", "b")) and a[key].dtype.kind == "f":
                assert np.array_equal(a[key], b[key]), key


def test_show_prints_the_trials_best_first_and_importances(parallel: Any) -> None:
    root, _, _ = parallel
    shown = bpcli("sweep", "show", str(root), cwd=root.parents[1])
    assert shown.returncode == 0, shown.stderr
    assert "best validation accuracy first" in shown.stdout and "parameter importances" in shown.stdout
    assert "learning_rate" in shown.stdout and f"best config: {root / 'best.yaml'}" in shown.stdout
    ranked = json.loads(bpcli("sweep", "show", str(root), "--json", cwd=root.parents[1]).stdout)["ranked"]
    complete = [r["value"] for r in ranked if r["state"] == "complete"]
    assert complete == sorted(complete, reverse=True) and ranked[0]["state"] == "complete"


def test_show_only_reads_a_storage_that_is_not_there_is_one_line_and_no_new_file(parallel: Any,
                                                                                   tmp_path: Path) -> None:
    root, _, _ = parallel
    lone = tmp_path / "lone"
    lone.mkdir()
    record = json.loads((root / "sweep.json").read_text())
    for storage, needle in ((None, f"the study journal {lone / 'journal.log'}: no such file"),
                            (f"sqlite:///{tmp_path / 'gone' / 'x.db'}", "sqlite:///")):
        (lone / "sweep.json").write_text(json.dumps({**record, "storage": storage}))
        shown = bpcli("sweep", "show", str(lone), cwd=tmp_path)
        assert shown.returncode == 2 and shown.stderr.count("\n") == 1 and needle in shown.stderr, shown.stderr
        assert sorted(p.name for p in lone.iterdir()) == ["sweep.json"] and not (tmp_path / "gone").exists()


def test_a_finished_sweep_is_not_run_again(parallel: Any) -> None:
    root, _, _ = parallel
    space = root.parents[1] / "space.yaml"
    again = bpcli("sweep", TINY, "--space", str(space), *SMALL, cwd=root.parents[1])
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "already holds the sweep space; continue it with --resume" in again.stderr
    resumed = bpcli("sweep", TINY, "--space", str(space), "--resume", *SMALL, cwd=root.parents[1])
    assert resumed.returncode == 0 and "already finished its 8 trials" in resumed.stdout
    assert len(study_of(root).get_trials(deepcopy=False)) == 8


def test_pruning_stops_hopeless_trials_after_their_first_epoch(tmp_path: Path) -> None:
    """One job and a grid: the order is fixed, so which trials are pruned is too. Without --space, the
    space is NAME-sweep.yaml beside the config NAME.yaml."""
    (tmp_path / "lr.yaml").write_text((CONFIGS / "tiny.yaml").read_text())
    write_space(tmp_path / "lr-sweep.yaml", "sampler: grid\npruner: {name: median, startup_trials: 1}\nparams:\n"
                                            "  training.learning_rate: {choice: [0.5, 1.0, 0.002, 0.001, 0.0005]}\n")
    done = bpcli("sweep", "lr.yaml", "--jobs", "1", "--json", *SMALL, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    pruned = by_state(study_of(tmp_path / "runs" / "lr-sweep")).get("PRUNED", [])
    assert pruned and all(len(t.intermediate_values) == 1 for t in pruned)
    assert all(t.params["training.learning_rate"] <= 0.002 for t in pruned)


def test_two_machines_work_on_one_study_through_a_shared_storage(tmp_path: Path) -> None:
    """The README's recipe: the same command on two "machines" (two sweep processes, each with its own
    directory for its run directories) against one journal file on a shared file system."""
    # Trials that are not pruned and train on more examples (about 0.4 s each, against 0.03-0.1 s for a
    # pruned one of SMALL): with SMALL's, one machine took all 6 trials, about 1 s in all, before the other
    # had started (seen once in CI), and "both machines worked" would test the start-up order, not sharing.
    space = write_space(tmp_path / "space.yaml", PARALLEL_SPACE.replace("trials: 8", "trials: 6")
                        .replace("{name: median, startup_trials: 2}", "none"))
    shared = tmp_path / "shared" / "journal.log"
    longer = ["--set", "data.limit=12000", "--set", "data.validation_size=500", "--set", "training.epochs=3"]
    machines = [start("sweep", TINY, "--space", str(space), "--jobs", "1", "--storage", str(shared), "--out",
                      str(tmp_path / name), "--json", *longer, cwd=tmp_path) for name in ("a", "b")]
    for m in machines:
        out, err = m.communicate(timeout=120)
        assert m.returncode == 0, err
    study = optuna.load_study(study_name="space", storage=open_storage(str(shared), tmp_path))
    trials = study.get_trials(deepcopy=False)
    # The budget of 6 is checked by each machine before it asks for a trial, so two machines asking at
    # the same moment may run one extra (README says so): 6 or 7, numbered without gaps.
    n = len(trials)
    assert 6 <= n <= 7 and sorted(t.number for t in trials) == list(range(n))
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    dirs = {p.name: host for host in ("a", "b") for p in (tmp_path / host).glob("trial-*")}
    assert sorted(dirs) == [f"trial-{k:03d}" for k in range(n)]  # each trial ran once, on one machine
    assert len({tuple(sorted(t.params.items())) for t in trials}) == n  # and drew its own values
    assert set(dirs.values()) == {"a", "b"}
    shown = bpcli("sweep", "show", str(tmp_path / "b"), "--json", cwd=tmp_path)
    assert len(json.loads(shown.stdout)["ranked"]) == n  # either machine sees every trial


def test_a_sqlite_storage_and_a_storage_that_cannot_be_opened(tmp_path: Path) -> None:
    space = write_space(tmp_path / "space.yaml", PARALLEL_SPACE.replace("trials: 8", "trials: 2"))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    done = bpcli("sweep", TINY, "--space", str(space), "--jobs", "2", "--storage", url, "--json", *SMALL, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["ranked"]) == 2
    assert json.loads((tmp_path / "runs" / "space" / "sweep.json").read_text())["storage"] == url
    bad = bpcli("sweep", TINY, "--space", str(space), "--storage", "postgresql://u:secret@127.0.0.1:9/x",
                "--out", str(tmp_path / "other"), *SMALL, cwd=tmp_path)
    assert bad.returncode in (2,) and bad.stderr.count("\n") == 1, bad.stderr
    assert "--storage postgresql://u:***@127.0.0.1:9/x: " in bad.stderr and "secret" not in bad.stderr


# -- Ctrl-C, --resume, a killed worker -------------------------------------------------------------------------

# Trials long enough (15 epochs) that one caught running after 1-3 epochs is still running when the
# Ctrl-C or the kill arrives, even on a loaded machine (6 epochs let it finish first about 1 time in 3).
LONG = ["--set", "data.limit=20000", "--set", "data.validation_size=500", "--set", "training.epochs=15"]
LONG_SPACE = """\
trials: 4
sampler: {name: random, seed: 7}
pruner: none
params:
  training.learning_rate: {loguniform: [0.05, 1.0]}
"""


def wait_for_running_trial(root: Path, process: subprocess.Popen[str], finished: int = 0) -> Any:
    """A trial running with at least one epoch reported and more to go, once `finished` trials are complete."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if (root / "journal.log").is_file() and (root / "sweep.json").is_file():
            states = by_state(study_of(root))
            running = [t for t in states.get("RUNNING", []) if 1 <= len(t.intermediate_values) <= 3]
            if running and len(states.get("COMPLETE", [])) >= finished:
                return running[0]
        time.sleep(0.02)
    raise AssertionError("no trial was caught running")


def test_ctrl_c_then_resume_completes_the_study_without_repeating_finished_trials(tmp_path: Path) -> None:
    space = write_space(tmp_path / "long.yaml", LONG_SPACE)
    root = tmp_path / "runs" / "long"
    process = start("sweep", TINY, "--space", str(space), "--jobs", "2", *LONG, cwd=tmp_path)
    wait_for_running_trial(root, process, finished=1)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "--resume" in out and "Traceback" not in out + err
    before = by_state(study_of(root))
    interrupted = before["FAIL"]
    assert interrupted and all(t.user_attrs.get("interrupted") for t in interrupted)
    for t in interrupted:  # stopped between two batches, the position saved as in any interrupted run
        assert (root / f"trial-{t.number:03d}" / "last.npz").is_file()
    finished = {t.number for t in before["COMPLETE"]}
    assert finished
    assert f"{len(finished)} of 4 trials done ({len(finished)} complete); {len(interrupted)} interrupted, to run " \
           "again" in out
    listed = {r["name"]: r for r in json.loads(bpcli("runs", str(root), "--json", cwd=tmp_path).stdout)}
    for t in interrupted:  # `bpcli runs` sends them back to the sweep, not to `train --resume`
        run = listed[f"trial-{t.number:03d}"]
        assert run["state"] == "interrupted" and run["resume_command"] is None and run["sweep"] == str(root)

    resumed = bpcli("sweep", TINY, "--space", str(space), "--jobs", "2", "--resume", "--json", *LONG, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    after = study_of(root).get_trials(deepcopy=False)
    complete = [t for t in after if t.state.name == "COMPLETE"]
    assert len(complete) == 4  # the budget, counted over both sessions
    assert {t.number for t in complete} >= finished
    retries = {t.user_attrs["retry_of"]: t for t in after if "retry_of" in t.user_attrs}
    assert set(retries) == {t.number for t in interrupted}  # each interrupted trial ran again, and only those
    for t in interrupted:
        assert retries[t.number].params == t.params and retries[t.number].state.name == "COMPLETE"
    assert sorted(p.name for p in root.glob("trial-*")) == [f"trial-{t.number:03d}" for t in after]


def test_piped_every_trial_has_a_start_line_with_all_its_values_then_an_end_line(tmp_path: Path) -> None:
    space = write_space(tmp_path / "s.yaml", PARALLEL_SPACE.replace("trials: 8", "trials: 4"))
    done = bpcli("sweep", TINY, "--space", str(space), "--jobs", "2", *SMALL, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for n in range(4):
        starts = [i for i, line in enumerate(lines) if line.startswith(f"trial {n} started: ")]
        ends = [i for i, line in enumerate(lines) if re.match(rf"trial {n} (complete|pruned): ", line)]
        assert len(starts) == len(ends) == 1 and starts[0] < ends[0], done.stdout
        assert all(f"{name}=" in lines[starts[0]] for name in ("learning_rate", "batch_size", "layers"))


def test_the_plain_log_waits_for_all_values_and_gives_a_quick_trial_both_lines() -> None:
    """The study is read every half second: trial 0 is read with 1 of its 2 values picked, trial 1 only
    once it has ended."""
    from bpcli.render.sweep import PlainSweep
    from bpcli.sweep_results import Results, TrialRow

    printed: list[str] = []
    view = PlainSweep(printed.append, "s", n_params=2)

    def read(*rows: TrialRow) -> None:
        view.update(Results("s", Path("."), "val_accuracy", "maximize", 2, list(rows)))

    half = TrialRow(0, "running", {"training.learning_rate": 0.1}, 0, None, None)
    whole = TrialRow(0, "running", {"training.learning_rate": 0.1, "model.layers": [784, 16, 10]}, 1, 0.9, 1.0)
    read(half)
    assert printed == []
    quick = TrialRow(1, "pruned", {"training.learning_rate": 2.0, "model.layers": [784, 16, 10]}, 1, 0.5, 0.4)
    read(whole, quick)
    read(TrialRow(0, "complete", whole.params, 3, 0.95, 2.0), quick)
    assert printed == ["trial 0 started: learning_rate=0.1, layers=784-16-10",
                       "trial 1 started: learning_rate=2, layers=784-16-10", "trial 1 pruned: 50.00% after 1 epoch",
                       "trial 0 complete: 95.00% after 3 epochs"]


def test_a_grid_too_large_to_hold_is_refused_before_it_is_built(tmp_path: Path) -> None:
    """An int range of 10^12 under the grid sampler grew memory without bound."""
    with pytest.raises(ConfigError, match=r"the grid has 1,000,000,000,001 points, more than the 100,000"):
        sweep_space.loads("sampler: grid\nparams:\n  training.seed: {int: [0, 1000000000000]}\n", "g.yaml",
                          config.load(TINY))


def test_a_damaged_sweep_directory_is_one_line_never_a_hang_or_a_fresh_start(parallel: Any, tmp_path: Path) -> None:
    """A FIFO for sweep.json waited forever; a journal.log deleted made --resume start the trials over
    and replace best.yaml; a hand-edited storage or budget of the wrong type was an internal error."""
    import shutil

    root, _, _ = parallel
    space = root.parents[1] / "space.yaml"
    copy = tmp_path / "sw"
    shutil.copytree(root, copy)
    (copy / "journal.log").unlink()
    (copy / "journal.log").symlink_to(os.devnull)  # read without end once: a device is no study
    device = bpcli("sweep", "show", str(copy), cwd=tmp_path, timeout=20)
    assert device.returncode == 2 and "journal.log: not a regular file" in device.stderr, device.stderr
    (copy / "journal.log").unlink()
    gone = bpcli("sweep", TINY, "--space", str(space), "--out", str(copy), "--resume", *SMALL, cwd=tmp_path)
    assert gone.returncode == 2 and "the study of the sweep in" in gone.stderr and "is gone" in gone.stderr
    record = json.loads((root / "sweep.json").read_text())
    for bad in ({"storage": 12}, {"budget": float("inf")}):
        (copy / "sweep.json").write_text(json.dumps({**record, **bad}))
        shown = bpcli("sweep", "show", str(copy), cwd=tmp_path, timeout=20)
        assert shown.returncode == 2 and "it is not a sweep bpcli wrote" in shown.stderr, shown.stderr
    (copy / "sweep.json").unlink()
    os.mkfifo(copy / "sweep.json")
    fifo = bpcli("sweep", "show", str(copy), cwd=tmp_path, timeout=20)
    assert fifo.returncode == 2 and fifo.stderr.count("\n") == 1, fifo.stderr


def test_a_budget_beyond_what_sweep_json_accepts_is_refused_up_front(tmp_path: Path) -> None:
    """--trials 2000000 made a sweep.json that every later command (its own workers too) refused."""
    space = write_space(tmp_path / "s.yaml", PARALLEL_SPACE)
    done = bpcli("sweep", TINY, "--space", str(space), "--trials", "2000000", *SMALL, cwd=tmp_path)
    assert done.returncode == 2 and "--trials 2000000: must be in 1..1,000,000" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_a_copied_config_finds_its_copied_search_space(tmp_path: Path) -> None:
    """Outside a clone `bpcli init mnist configs/` left `bpcli sweep configs/mnist.yaml` without a space,
    and the built-in space could not be copied."""
    (tmp_path / "configs").mkdir()
    assert bpcli("init", "mnist", "configs/", cwd=tmp_path).returncode == 0
    missing = bpcli("sweep", "configs/mnist.yaml", cwd=tmp_path)
    assert missing.returncode == 2 and "copy the built-in one with `bpcli init mnist-sweep`" in missing.stderr
    copied = bpcli("init", "mnist-sweep", "configs/", cwd=tmp_path)
    assert copied.returncode == 0 and "bpcli sweep configs/mnist.yaml uses it" in copied.stdout
    assert (tmp_path / "configs" / "mnist-sweep.yaml").read_text() == (CONFIGS / "mnist-sweep.yaml").read_text()
    assert "search spaces: mnist-sweep" in bpcli("configs", cwd=tmp_path).stdout


def test_trials_of_a_continued_seeded_sweep_draw_new_values(tmp_path: Path) -> None:
    """Trial n draws with seed + n. Workers seeded seed + k started their streams over on --resume (and on
    a second machine), so trial 2 repeated trial 0's values exactly, and trial 3 trial 1's."""
    space = write_space(tmp_path / "s.yaml", PARALLEL_SPACE.replace("trials: 8", "trials: 2"))
    for more in (["--json"], ["--resume", "--trials", "4"]):
        done = bpcli("sweep", TINY, "--space", str(space), "--jobs", "1", *more, *SMALL, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    # The second session's log has its own trials only (it logged trials 0 and 1 again, as if they ran).
    logged = {line.split()[1] for line in done.stdout.splitlines() if line.startswith("trial ") and " started: " in line}
    assert logged == {"2", "3"}, done.stdout
    trials = study_of(tmp_path / "runs" / "s").get_trials(deepcopy=False)
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.params["training.learning_rate"] != u.params["training.learning_rate"]
               for t in trials[2:] for u in trials[:2])


def test_a_killed_worker_is_replaced_and_its_trial_runs_again(tmp_path: Path) -> None:
    space = write_space(tmp_path / "long.yaml", LONG_SPACE)
    root = tmp_path / "runs" / "long"
    process = start("sweep", TINY, "--space", str(space), "--jobs", "2", "--json", *LONG, cwd=tmp_path)
    victim = wait_for_running_trial(root, process)
    os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    out, err = process.communicate(timeout=90)
    assert process.returncode == 0, err
    result = json.loads(out)
    assert result["lost"] == [result["lost"][0]] and "killed by SIGKILL" in result["lost"][0]
    trials = study_of(root).get_trials(deepcopy=False)
    lost = next(t for t in trials if t.number == victim.number)
    assert lost.state.name == "FAIL" and "interrupted" not in lost.user_attrs
    rerun = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(rerun) == 1 and rerun[0].state.name == "COMPLETE" and rerun[0].params == victim.params
    assert sum(t.state.name == "COMPLETE" for t in trials) == 4


# -- bad search spaces, and bpcli without Optuna ---------------------------------------------------------------

BAD = [
    ("params:\n  training.lerning_rate: {uniform: [0.1, 1]}\n",
     "space.yaml:2: params.training.lerning_rate: not a config key; did you mean 'training.learning_rate'?"),
    ("params:\n  training.learning_rate: {uniform: [1, 0.1]}\n",
     "space.yaml:2: params.training.learning_rate.uniform: an empty range: lo (1.0) must be below hi (0.1)"),
    ("params:\n  training.learning_rate: {uniform: [0.1, 0.1]}\n", "an empty range"),
    ("params:\n  training.batch_size: {choice: []}\n",
     "space.yaml:2: params.training.batch_size.choice: expected a non-empty list of values, got an empty list"),
    ("params:\n  training.learning_rate: {loguniform: [0, 0.1]}\n", "lo must be > 0 on a log scale"),
    ("params:\n  training.learning_rate: {unifrom: [0.1, 1]}\n",
     "space.yaml:2: params.training.learning_rate.unifrom: unknown kind; did you mean 'uniform'?"),
    ("params:\n  training.learning_rate: {uniform: [-1, 0.5]}\n",
     "params.training.learning_rate.uniform: lo -1.0 is refused by the config: must be >= 1e-10 (smaller steps change no float32 weight), got -1.0"),
    ("params:\n  training.optimizer.momentum: {uniform: [0.5, 1.0]}\n",
     "hi 1.0 is refused by the config: must be in [0, 1), got 1.0"),
    ("params:\n  training.batch_size: {uniform: [16, 64]}\n", "lo 16.0 is refused by the config: expected an integer"),
    ("params:\n  model.activation: {choice: [relu, rleu]}\n",
     "value 'rleu' is refused by the config: 'rleu' is not one of sigmoid | tanh | relu; did you mean 'relu'?"),
    ("params:\n  training.threads: {int: [1, 2]}\n", "params.training.threads: cannot be varied"),
    ("params:\n  data.validation_size: {choice: [0, 100]}\n", "leaves no validation set"),
    ("trials: 4\nsamplr: tpe\nparams:\n  training.l2: {uniform: [0, 1]}\n",
     "space.yaml:2: samplr: unknown field; did you mean 'sampler'?"),
    ("sampler: grid\nparams:\n  training.l2: {uniform: [0, 1]}\n",
     "space.yaml:3: params.training.l2: the grid sampler needs choice or int for every key, not uniform"),
    ("objective: accuracy\nparams:\n  training.l2: {uniform: [0, 1]}\n",
     "space.yaml:1: objective: 'accuracy' is not one of val_accuracy | val_loss"),
    ("pruner: {name: medain}\nparams:\n  training.l2: {uniform: [0, 1]}\n",
     "space.yaml:1: pruner.name: 'medain' is not one of median | none"),
    ("trials: 0\nparams:\n  training.l2: {uniform: [0, 1]}\n", "space.yaml:1: trials: expected a whole number"),
    ("trials: 3\n", "space.yaml: params: expected a mapping of the config keys to vary"),
    ("params:\n  training.epochs: {int: [1.5, 3]}\n", "lo must be a whole number, got 1.5"),
    ("params:\n  training.l2: 0.5\n", "params.training.l2: expected one of choice, uniform, loguniform, int"),
    ("params:\n  training.optimizer: {uniform: [0, 1]}\n", "this key is a section"),
    ("params: [1, 2\n", "space.yaml:2: not valid YAML"),
    ("params:\n  training.l2: {uniform: [0, 1]}\n  training.l2: {uniform: [0, 2]}\n", "duplicate key 'training.l2'"),
]


@pytest.mark.parametrize("text, needle", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_a_bad_search_space_is_one_line_naming_the_field_and_line(tmp_path: Path, text: str, needle: str) -> None:
    base = config.load(TINY)
    with pytest.raises(ConfigError) as error:
        sweep_space.loads(text, "space.yaml", base)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_a_bad_search_space_through_the_cli_exits_2_with_one_line(tmp_path: Path) -> None:
    space = write_space(tmp_path / "space.yaml", BAD[0][0])
    done = bpcli("sweep", TINY, "--space", str(space), cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == f"error: {tmp_path / 'space.yaml'}:2: params.training.lerning_rate: not a config " \
                                  "key; did you mean 'training.learning_rate'?"
    assert not (tmp_path / "runs").exists()


def test_a_space_over_a_section_sets_only_the_fields_it_names() -> None:
    base = config.load(CONFIGS / "mnist.yaml")
    space = sweep_space.loads("params:\n  training.optimizer: {choice: [{name: adam}, {name: sgd}]}\n", "s.yaml", base)
    (param,) = space.params
    items = sweep_space.overrides(space.params, {"training.optimizer": param.options()[0]})
    cfg = sweep_space.trial_config(base, items, "t")
    assert cfg.training.optimizer.name == "adam" and cfg.training.optimizer.momentum == base.training.optimizer.momentum
    # YAML 1.1 reads 1e-3 as text; a float field takes it as the number it is, as the config does.
    space = sweep_space.loads("params:\n  training.learning_rate: {choice: [1e-3, 0.1]}\n", "s.yaml", base)
    assert space.params[0].values == (0.001, 0.1)


def test_the_mnist_space_suits_its_config_and_is_not_listed_as_a_config() -> None:
    from bpcli import builtin

    space = sweep_space.load(CONFIGS / "mnist-sweep.yaml", config.load(CONFIGS / "mnist.yaml"))
    assert space.name == "mnist-sweep" and space.objective == "val_accuracy"
    assert "mnist-sweep" not in builtin.names() and "mnist" in builtin.names()
    assert sweep_space.default_path(CONFIGS / "mnist.yaml") == CONFIGS / "mnist-sweep.yaml"


def test_without_optuna_sweep_says_which_extra_and_train_still_works(tmp_path: Path) -> None:
    block = "import sys; sys.modules['optuna'] = None; from bpcli.cli import main; sys.argv[0] = 'bpcli'; main()"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    space = write_space(tmp_path / "s.yaml", PARALLEL_SPACE)
    done = subprocess.run([sys.executable, "-c", block, "sweep", TINY, "--space", str(space)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "bpcli sweep needs optuna: pip install 'bpcli[sweep]'" in done.stderr
    trained = subprocess.run([sys.executable, "-c", block, "train", TINY, "--quiet", "--out", str(tmp_path / "r"),
                              *SMALL], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert trained.returncode == 0, trained.stderr
    imported = subprocess.run([sys.executable, "-c", "import bpcli.cli, sys; print('optuna' in sys.modules)"],
                              env=env, capture_output=True, text=True, timeout=60)
    assert imported.stdout.strip() == "False"


# -- in a real terminal --------------------------------------------------------------------------------------


def test_in_a_terminal_the_table_is_live_and_ctrl_c_reaches_only_the_sweep(tmp_path: Path) -> None:
    """The table shows the running trials as they go; Ctrl-C typed at the terminal goes to the sweep
    process alone (the workers have their own process group), which stops the trials between batches."""
    pytest.importorskip("pexpect")
    pytest.importorskip("pyte")
    from test_terminal import Terminal, _bpcli

    space = write_space(tmp_path / "long.yaml", LONG_SPACE)
    term = Terminal([*_bpcli(), "sweep", TINY, "--space", str(space), "--jobs", "2", *LONG], 100, tmp_path, rows=30)
    lines = term.wait_for(lambda ls: sum("running" in line for line in ls) >= 2 and any(
        line.split()[:1] == ["0"] and "running" in line and line.split()[2] != "0" for line in ls))
    assert any(line.split()[:4] == ["trial", "learning_rate", "epochs", "val"] for line in lines)
    term.child.sendintr()  # ^C, as the terminal sends it: SIGINT to the foreground process group
    code = term.finish()
    screen = "\n".join(term.lines())
    assert code == 130 and "Traceback" not in term.raw
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", term.raw)  # the command is one line, however long
    command = re.search(r"continue with:\s*(bpcli sweep [^\r\n]+)", plain)
    assert command and command.group(1).strip().endswith("--resume"), plain
    failed = by_state(study_of(tmp_path / "runs" / "long"))["FAIL"]
    assert failed and all(t.user_attrs.get("interrupted") for t in failed)
