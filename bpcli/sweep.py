"""`bpcli sweep`: a hyperparameter search as an Optuna study whose trials are ordinary bpcli runs.

    runs/<sweep>/            the sweep directory
        sweep.json           the base config, the search space, the study's name and storage
        journal.log          the study: Optuna's JournalStorage on a file (unless --storage names another)
        trial-000/ ...       one run directory per trial, as `bpcli train` writes them
        best.yaml            the best trial's config, for `bpcli train`

This process, the coordinator, creates or joins the study, starts J worker processes
(bpcli/sweep_worker.py) and watches the study in its storage: that is where the workers report, so
the live table shows the trials of every process and machine that shares the storage. The workers
share nothing else. The first Ctrl-C stops each trial between two batches (marked failed, to be run
again by `--resume`); a second stops at once.

Optuna is an optional extra: it is imported by the functions that need it, never at import time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

from bpcli import builtin
from bpcli import config as config_module
from bpcli import sweep_space
from bpcli.config import Config
from bpcli.errors import UsageError, clip, masked
from bpcli.extras import MissingExtra, need
from bpcli.files import open_regular, read_regular, write_atomic
from bpcli.resume import differences
from bpcli.rundir import RunFiles
from bpcli.sweep_space import Space

SWEEP_FILE = "sweep.json"
JOURNAL = "journal.log"
ASK_LOCK = ".ask.lock"  # held while a trial is counted and asked for, so local workers never overshoot
BEST = "best.yaml"
MAX_TRIALS = 1_000_000  # a sweep's budget (sweep.json and --trials)
# Worker exit codes that are not a failure (a worker stops on SIGHUP as on SIGTERM: stop.StopFlag).
STOPPED = (0, 128 + signal.SIGINT, 128 + signal.SIGTERM, 128 + signal.SIGHUP)
ORPHAN_SECONDS = 60.0  # a running trial that never said where it runs is lost after this long
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def need_optuna() -> ModuleType:
    """Optuna, quiet (its log lines would break the table), or one line naming the extra."""
    optuna = need("optuna", "bpcli sweep", extra="sweep")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


# -- the sweep directory and its study -------------------------------------------------------------


@dataclass
class Sweep:
    """One sweep as this process runs it: where, over what, against which storage, for how many trials."""

    root: Path
    base: Config
    space: Space
    storage: str | None  # as given with --storage; None is the journal file in root
    budget: int  # trials to finish, over every process and machine
    notes: list[str] = field(default_factory=list)
    recorded_storage: str | None = None  # as sweep.json has it (password masked)

    @property
    def name(self) -> str:
        return self.space.name

    def record(self) -> dict[str, Any]:
        return {"study": self.name, "storage": masked(self.storage), "budget": self.budget,
                "config": self.base.to_yaml(), "space": self.space.to_json()}

    @classmethod
    def read(cls, root: Path, storage: str | None = None) -> Sweep:
        """The sweep recorded in `root` (its sweep.json); `storage` replaces a recorded one whose password
        was masked."""
        path = Path(root) / SWEEP_FILE
        try:
            record = json.loads(read_regular(path, 1 << 20))
            base = config_module.loads(record["config"], source=str(path))
            space = Space.from_json(record["space"])
            recorded, budget = record["storage"], int(record["budget"])
            if not (recorded is None or isinstance(recorded, str)) or not 0 < budget <= MAX_TRIALS:
                raise ValueError("its storage is no text, or its budget is not a number of trials")
        except FileNotFoundError:
            raise UsageError(f"{root}: not a sweep directory (no {SWEEP_FILE})") from None
        except (OSError, ValueError, KeyError, TypeError, OverflowError, RecursionError) as e:
            raise UsageError(f"{path}: cannot be read ({clip(str(e), 80)}); it is not a sweep bpcli wrote") from None
        if storage is None and recorded is not None and ":***@" in recorded:
            raise UsageError(f"{root}: the sweep's storage has a password, which is not recorded; give it with "
                             "--storage URL")
        return cls(Path(root), base, space, storage or recorded, budget, recorded_storage=recorded)

    def storage_object(self, create: bool = True) -> Any:
        return open_storage(self.storage, self.root, create)

    def study(self, sampler: Any = None, pruner: Any = None, create: bool = True) -> Any:
        """The study; with create=False (`sweep show`, which only reads) a journal or SQLite file that is not
        there is an error, not a new empty file."""
        optuna = need_optuna()
        try:
            return optuna.load_study(study_name=self.name, storage=self.storage_object(create), sampler=sampler,
                                     pruner=pruner)
        except KeyError:
            raise UsageError(f"the storage of {self.root} holds no study named {self.name}") from None


def open_storage(spec: str | None, root: Path, create: bool = True) -> Any:
    """The Optuna storage: a journal file (the default, in the sweep directory; or any path, e.g. on a shared
    file system), a database URL (sqlite:///, postgresql://, mysql://) or redis:// (a journal in Redis).
    Opening a journal or SQLite file creates it, unless `create` is false."""
    optuna = need_optuna()
    from optuna.storages import JournalStorage

    named = f"--storage {masked(spec)}" if spec is not None else f"the study journal {Path(root) / JOURNAL}"
    # The file of a journal or SQLite storage, checked before Optuna opens (and may create) it.
    file = (spec[len("sqlite:///"):].split("?")[0] if spec is not None and spec.startswith("sqlite:///") else None if
            spec is not None and "://" in spec else spec if spec is not None else str(Path(root) / JOURNAL))
    if file is not None and Path(file).expanduser().exists() and not Path(file).expanduser().is_file():
        # A FIFO waited forever; /dev/zero was read without end.
        raise UsageError(f"{named}: not a regular file; a study is a file Optuna writes")
    if file is not None and not create and not Path(file).expanduser().exists():
        raise UsageError(f"{named}: no such file; the sweep's study is not there")
    try:
        if spec is not None and "://" in spec:
            if spec.split("://", 1)[0] == "redis":
                from optuna.storages.journal import JournalRedisBackend

                return JournalStorage(JournalRedisBackend(spec))
            return optuna.storages.RDBStorage(spec)
        try:
            from optuna.storages.journal import JournalFileBackend
        except ImportError:  # Optuna 3.x calls it JournalFileStorage
            from optuna.storages import JournalFileStorage as JournalFileBackend  # type: ignore[no-redef]
        path = Path(spec).expanduser().resolve() if spec is not None else Path(root).resolve() / JOURNAL
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except ImportError as e:
        raise MissingExtra(f"{named}: needs the Python package {e.name or 'for it'}") from None
    except Exception as e:  # noqa: BLE001 - a URL that Optuna or its database driver refuses
        raise UsageError(f"{named}: cannot open it ({clip(f'{type(e).__name__}: {e}', 120)})") from None


def prepare(config_path: Path, overrides: list[str], space_path: Path | None, trials: int | None, out: Path | None,
            storage: str | None, resume: bool) -> Sweep:
    """The sweep `bpcli sweep` runs: its config and space validated, its directory and study created or
    continued, and the trials that a crash or Ctrl-C left unfinished marked to run again."""
    need_optuna()
    from bpcli.runner import absolute_data_path

    base = absolute_data_path(config_module.load(config_path, overrides))
    space_path = space_path or sweep_space.default_path(builtin.resolve(config_path))
    if not Path(space_path).exists():
        copy = f", or copy the built-in one with `bpcli init {Path(space_path).stem}`" if builtin.space(
            Path(space_path).stem) is not None else ""
        raise UsageError(f"{space_path}: no such search space file; give one with --space FILE{copy}")
    space = sweep_space.load(space_path, base)
    root = Path(out) if out is not None else Path("runs") / space.name
    recorded = root / SWEEP_FILE
    if resume and not recorded.is_file():
        raise UsageError(f"--resume: {root} holds no sweep to continue (no {SWEEP_FILE}); start it without --resume")
    if not resume and recorded.is_file() and storage is None:
        raise UsageError(f"{root} already holds the sweep {space.name}; continue it with --resume, or choose another "
                         "directory with --out")
    if not recorded.is_file() and root.is_dir() and any(root.iterdir()):
        raise UsageError(f"{root} exists and is not a sweep directory; choose another with --out")
    if recorded.is_file():
        before = Sweep.read(root, storage)
        journal = Path(root) / JOURNAL
        if before.storage is None and not journal.exists():
            raise UsageError(f"{journal}: the study of the sweep in {root} is gone (sweep.json is there); restore "
                             "it, or start a new sweep with --out (continuing would start the trials over and "
                             "replace best.yaml)")
        if storage is not None and masked(storage) != before.recorded_storage:
            raise UsageError(f"{root} holds a sweep whose study is in {before.recorded_storage or root / JOURNAL}; "
                             "give that --storage, or choose another directory with --out")
        storage = before.storage
    budget = trials if trials is not None else space.trials
    if not 0 < budget <= MAX_TRIALS:  # sweep.json is refused beyond it: a sweep no command could read again
        raise UsageError(f"--trials {budget}: must be in 1..{MAX_TRIALS:,}")
    sweep = Sweep(root, base, space, storage, budget)
    if space.sampler.name == "grid" and budget > space.grid_size():
        sweep.budget = space.grid_size()
        sweep.notes.append(f"the grid has {space.grid_size()} points: the sweep runs {sweep.budget} trials")
    root.mkdir(parents=True, exist_ok=True)
    _open_study(sweep)
    write_atomic(recorded, (json.dumps(sweep.record(), indent=1) + "\n").encode())
    with ask_lock(root):
        sweep.notes.extend(recover(sweep.study()))
    return sweep


def _open_study(sweep: Sweep) -> None:
    """Create the study, or join it after checking that it searches the same space over the same config."""
    optuna = need_optuna()
    study = optuna.create_study(study_name=sweep.name, storage=sweep.storage_object(), load_if_exists=True,
                                direction=sweep.space.direction)
    # As the storage gives it back: JSON (lists where the space has tuples).
    space = {**sweep.space.to_json(), "trials": None}
    definition = json.loads(json.dumps({"config": sweep.base.to_yaml(), "space": space}))
    saved = study.user_attrs.get("bpcli")
    if saved is None:
        study.set_user_attr("bpcli", definition)
        return
    where = f"the study {sweep.name} in {masked(sweep.storage) or sweep.root / JOURNAL}"
    changed = [k for k, _, _ in differences(config_module.loads(saved["config"]), sweep.base)
               if k not in ("name", "data.path")]  # each machine finds the data in its own place
    if changed:
        raise UsageError(f"{where} varies a different config ({', '.join(changed[:6])} differ); run it with the "
                         "config it was started with, or start a new sweep with --out")
    if saved["space"] != definition["space"]:
        fields = [k for k in definition["space"] if saved["space"].get(k) != definition["space"][k]]
        raise UsageError(f"{where} has a different search space ({', '.join(fields)} differ); only --trials may "
                         "change when a sweep continues")


@contextlib.contextmanager
def ask_lock(root: Path) -> Iterator[None]:
    """This machine's processes of a sweep count and ask for trials one at a time."""
    try:
        fd = open_regular(Path(root) / ASK_LOCK, os.O_RDWR | os.O_CREAT)
    except OSError as e:
        raise UsageError(f"{Path(root) / ASK_LOCK}: cannot take the sweep's lock ({e.strerror or e}); remove it, "
                         "or choose another directory with --out") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# -- trials: which count, which are lost, which run again --------------------------------------------


def taken(trials: list[Any]) -> int:
    """Trials that count toward the budget: finished for good (complete, pruned, failed with an error) and
    running. A trial that failed without an error (interrupted, or lost with its process) is run again."""
    from optuna.trial import TrialState

    return sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
               or (t.state == TrialState.FAIL and "error" in t.user_attrs))


def recover(study: Any) -> list[str]:
    """Mark failed the running trials whose process is gone (on this machine: nothing holds their run
    directory's lock), and queue a rerun, with the same parameters, of each trial that failed without an
    error and has none yet. Returns notes for the user."""
    from optuna.trial import TrialState

    notes = []
    host, now = socket.gethostname(), datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        if "run_dir" in attrs:
            gone = attrs.get("host") == host and RunFiles(Path(attrs["run_dir"])).in_use() is None
        else:
            gone = t.datetime_start is not None and (now - t.datetime_start).total_seconds() > ORPHAN_SECONDS
        if gone:
            study.tell(t.number, state=TrialState.FAIL)
            notes.append(f"trial {t.number} was left running by a process that is gone: marked failed")
    trials = study.get_trials(deepcopy=False)
    again = {t.user_attrs.get("retry_of") for t in trials}
    for t in trials:
        # A trial stopped before the sampler picked its values trained nothing: a new trial takes its place.
        if t.state == TrialState.FAIL and "error" not in t.user_attrs and t.number not in again and t.params:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            notes.append(f"trial {t.number} did not finish: it runs again with the same parameters")
    return notes


def remaining(sweep: Sweep) -> int:
    return max(0, sweep.budget - taken(sweep.study().get_trials(deepcopy=False)))


# -- running: worker processes, watched through the storage ----------------------------------------


@dataclass
class Outcome:
    interrupted: bool = False  # stopped by a signal before the budget was taken
    lost: list[str] = field(default_factory=list)  # workers killed by a signal (their trials run again)
    failures: list[str] = field(default_factory=list)  # workers that ended in an error, with their last word


def run(sweep: Sweep, jobs: int, on_update: Callable[[Any], None], stop: Callable[[], bool],
        poll: float = 0.5) -> Outcome:
    """Run the sweep's remaining trials in `jobs` worker processes; on_update(study) is called about every
    `poll` seconds. stop() true forwards a stop to the workers (SIGTERM: each trial stops between two
    batches); KeyboardInterrupt (a second Ctrl-C) stops them at once (SIGINT). A worker that dies (killed,
    out of memory) leaves a running trial: it is marked failed, queued to run again, and the worker
    replaced, up to `jobs` times."""
    study = sweep.study()
    jobs = max(1, min(jobs, remaining(sweep)))
    outcome = Outcome()
    workers = [_start(sweep, k) for k in range(jobs)] if remaining(sweep) else []
    ended: set[int] = set()
    told = False
    try:
        while True:
            if stop() and not told:
                told = True
                _signal(workers, signal.SIGTERM)
            for k, w in enumerate(list(workers)):
                if k in ended or w.poll() is None:
                    continue
                ended.add(k)
                if _ended(sweep, k, w, outcome):
                    with ask_lock(sweep.root):
                        recover(study)
                    if not told and len(workers) < 2 * jobs and remaining(sweep) > 0:
                        workers.append(_start(sweep, len(workers)))
            on_update(study)
            if all(w.poll() is not None for w in workers) and len(ended) == len(workers):
                break
            time.sleep(poll)
    except KeyboardInterrupt:
        told = True
        _signal(workers, signal.SIGINT)
        deadline = time.monotonic() + 10
        for w in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.wait(max(0.1, deadline - time.monotonic()))
            if w.poll() is None:
                w.kill()
                w.wait()
    outcome.interrupted = told
    on_update(study)
    return outcome


def _ended(sweep: Sweep, k: int, worker: subprocess.Popen[bytes], outcome: Outcome) -> bool:
    """Record how worker k ended; true when it left a trial behind (killed, or failed)."""
    log = sweep.root / f".worker-{k}.log"
    code = worker.returncode
    if code in STOPPED:
        if log.is_file() and log.stat().st_size == 0:
            log.unlink()
        return False
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        outcome.lost.append(f"worker {k + 1} was killed by {name}; its trial runs again")
        return True
    last = next(iter(reversed(log.read_text(errors="replace").splitlines())), "") if log.is_file() else ""
    outcome.failures.append(f"worker {k + 1} exited with code {code}" + (f": {clip(last)}" if last else "") +
                            f" (its output: {log})")
    return True


def _start(sweep: Sweep, k: int) -> subprocess.Popen[bytes]:
    """Worker k: its own process group (this process forwards Ctrl-C to it), one BLAS thread, its
    diagnostics in .worker-K.log (compute never prints; only a crash writes there)."""
    import bpcli

    env = {**os.environ, **dict.fromkeys(BLAS_VARIABLES, "1")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(bpcli.__file__).resolve().parents[1]),
                                                      env.get("PYTHONPATH")]))
    args = json.dumps({"dir": str(sweep.root.resolve()), "storage": sweep.storage, "budget": sweep.budget,
                       "seed": sweep.space.sampler.seed, "parent": os.getpid()})
    with open(sweep.root / f".worker-{k}.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "bpcli.sweep_worker", args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=log, env=env, start_new_session=True)


def _signal(workers: list[subprocess.Popen[bytes]], signum: int) -> None:
    for w in workers:
        if w.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                w.send_signal(signum)


# -- trials' names, directories and configs ---------------------------------------------------------


def trial_name(sweep_name: str, number: int) -> str:
    return f"{sweep_name}-trial-{number:03d}"


def trial_dir(root: Path, number: int) -> Path:
    return Path(root) / f"trial-{number:03d}"


def config_for(sweep: Sweep, number: int, params: dict[str, Any]) -> Config:
    """The config trial `number` trains with ({key: sampler value}); the same for its run and for best.yaml."""
    items = sweep_space.overrides(sweep.space.params, params)
    return sweep_space.trial_config(sweep.base, items, trial_name(sweep.name, number),
                                    source=f"{sweep.name} trial {number}")
