"""One worker process of `bpcli sweep`: ask the study for a trial, train it as an ordinary bpcli run in
its own run directory, report the objective after every epoch so that the pruner can stop it early,
tell the study how it ended; again, until the sweep's budget of trials is taken.

Started by bpcli/sweep.py as `python -m bpcli.sweep_worker ARGS` in a process group of its own, with
one BLAS thread. A trial is `train.fit` on `train.Trainer`, set up by the same runner functions as
`bpcli train` (its data, its memory check, config.yaml and dataset.json), so the best trial's config
trains to the same numbers with `bpcli train`.

How a trial ends, in the study: complete (its value: the best validation accuracy, or the lowest
validation loss, of its epochs); pruned (after the epoch at which the pruner stopped it); failed with
an error (divergence, a config the data refuses: not run again); failed without one (SIGTERM from the
coordinator's first Ctrl-C stops it between two batches, a SIGINT after that at once, as
stop.StopFlag has it; a coordinator that is gone stops it too): `--resume` runs it again.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, Callable

from bpcli import resources
from bpcli.config import Config
from bpcli.data import Dataset
from bpcli.errors import BpcliError, clip
from bpcli.rundir import RESULT, EpochMetrics, RunFiles
from bpcli.runner import load_data, result_record, write_result, write_run_files
from bpcli.stop import StopFlag
from bpcli.sweep import Sweep, ask_lock, config_for, need_optuna, taken, trial_dir
from bpcli.sweep_space import Param, Space
from bpcli.train import Interrupted, Trainer, fit


class Pruned(Exception):
    """Raised from the end of an epoch when the pruner says the trial is hopeless."""


def make_sampler(space: Space, seed: int | None) -> Any:
    """The space's sampler. With a seed, trial n draws with a sampler seeded seed + n (see `per_trial`)."""
    optuna = need_optuna()
    s = space.sampler

    def make(seed: int | None) -> Any:
        if s.name == "grid":

            class Grid(optuna.samplers.GridSampler):  # type: ignore[misc]
                def after_trial(self, *args: Any) -> None:
                    """Nothing: the budget (at most the grid's size) ends the sweep. Optuna's grid calls
                    study.stop() here, which works only inside study.optimize, not with ask and tell."""

            return Grid({p.key: p.grid() for p in space.params}, seed=seed)
        if s.name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(n_startup_trials=s.startup_trials, seed=seed)

    return make(None) if seed is None else per_trial(make, seed)


def per_trial(make: Callable[[int], Any], seed: int) -> Any:
    """A sampler that seeds a new one, make(seed + n), for trial n, before it draws anything.

    Trial numbers are unique in a study, across its processes and machines (the storage hands them out),
    so no two trials share a random stream. Seeding each worker process instead (seed + k for worker k)
    gave the workers of `--resume` and of a second machine the streams of the first session's: their
    trials repeated earlier trials' values exactly. One job still repeats a seeded sweep exactly."""
    optuna = need_optuna()

    class PerTrial(optuna.samplers.BaseSampler):  # type: ignore[misc]
        def __init__(self) -> None:
            self.inner = make(seed)

        def before_trial(self, study: Any, trial: Any) -> None:  # called by study.ask() with the number set
            self.inner = make(seed + trial.number)
            self.inner.before_trial(study, trial)

        def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
            return self.inner.infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
            return self.inner.sample_relative(study, trial, search_space)

        def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
            return self.inner.sample_independent(study, trial, name, distribution)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self.inner.after_trial(study, trial, state, values)

    return PerTrial()


def make_pruner(space: Space) -> Any:
    optuna = need_optuna()
    p = space.pruner
    if p.name == "none":
        return optuna.pruners.NopPruner()
    # Steps are epochs counted from 1, so n_warmup_steps = min_epochs allows pruning from that epoch on.
    return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.min_epochs)


def suggest(trial: Any, param: Param) -> Any:
    """What the sampler picks for one parameter, as the sampler's value (JSON text for a list choice)."""
    if param.kind == "choice":
        return trial.suggest_categorical(param.key, param.options())
    lo, hi = param.values
    if param.kind == "int":
        return trial.suggest_int(param.key, lo, hi)
    return trial.suggest_float(param.key, lo, hi, log=param.kind == "loguniform")


class DataCache:
    """The dataset of the latest trial, kept for the next one when it asks for the same data."""

    def __init__(self) -> None:
        self.key: tuple[Any, ...] | None = None
        self.data: Dataset | None = None

    def get(self, cfg: Config) -> Dataset:
        key = (cfg.data, cfg.training.seed, cfg.training.dtype)
        if key != self.key or self.data is None:
            self.key, self.data = None, None  # let the old one go before the new one is read
            self.data, self.key = load_data(cfg), key
        return self.data


def work(sweep: Sweep, seed: int | None, stopping: Callable[[], bool]) -> None:
    """Run trials until the budget is taken or `stopping()` is true."""
    study = sweep.study(make_sampler(sweep.space, seed), make_pruner(sweep.space))
    cache = DataCache()
    while not stopping():
        with ask_lock(sweep.root):
            if taken(study.get_trials(deepcopy=False)) >= sweep.budget:
                return
            trial = study.ask()
        run_trial(sweep, study, trial, cache, stopping)


def run_trial(sweep: Sweep, study: Any, trial: Any, cache: DataCache, stopping: Callable[[], bool]) -> None:
    """Train one trial in runs/<sweep>/trial-NNN and tell the study how it ended. The trial is told before
    its run directory's lock is released: a running trial whose lock is free has lost its process."""
    from optuna.trial import TrialState

    root = trial_dir(sweep.root, trial.number)
    try:
        files = RunFiles.create(root)
    except BpcliError as e:
        trial.set_user_attr("error", str(e))
        study.tell(trial, state=TrialState.FAIL)
        return
    try:
        for key, value in (("host", socket.gethostname()), ("pid", os.getpid()), ("run_dir", str(root.resolve()))):
            trial.set_user_attr(key, value)
        params = {p.key: suggest(trial, p) for p in sweep.space.params}
        try:
            value = _train(sweep, trial, config_for(sweep, trial.number, params), files, cache, stopping)
        except Pruned:
            study.tell(trial, state=TrialState.PRUNED)
        except (Interrupted, KeyboardInterrupt):
            trial.set_user_attr("interrupted", True)
            study.tell(trial, state=TrialState.FAIL)
            raise
        except BpcliError as e:
            trial.set_user_attr("error", str(e))
            study.tell(trial, state=TrialState.FAIL)
        except Exception as e:  # a bug: recorded with the trial, and the worker stops with its traceback
            trial.set_user_attr("error", clip(f"internal error: {type(e).__name__}: {e}"))
            study.tell(trial, state=TrialState.FAIL)
            raise
        else:
            study.tell(trial, value)
    finally:
        files.release()


def _train(sweep: Sweep, trial: Any, cfg: Config, files: RunFiles, cache: DataCache,
           stopping: Callable[[], bool]) -> float:
    """An ordinary run of `cfg` in `files`; the objective after each epoch goes to the pruner."""
    data = cache.get(cfg)
    resources.check_training(cfg, len(data.train), max(len(data.validation), len(data.test)))
    trainer = Trainer(cfg, data)
    write_run_files(cfg, data, files)
    values: list[float] = []
    loss = sweep.space.objective == "val_loss"

    def on_epoch_end(row: EpochMetrics) -> None:
        value = row.val_loss if loss else row.val_accuracy
        assert value is not None  # the space refuses a config without a validation set
        values.append(value)
        trial.report(value, row.epoch)
        if trial.should_prune():
            raise Pruned

    try:
        summary = fit(trainer, files, None, None, on_epoch_end, stopping, None)
    except Pruned:
        # Recorded in the run directory too, so that `bpcli runs` says "pruned" (stopped on purpose)
        # rather than "interrupted" with a resume command.
        files.write(RESULT, result_record("pruned", epoch=len(values)))
        raise
    write_result(files, summary)  # as `bpcli train` does: `bpcli runs` shows the trial's test accuracy
    return min(values) if loss else max(values)


def main(argv: list[str]) -> int:
    """`python -m bpcli.sweep_worker ARGS`, ARGS a JSON object from bpcli.sweep: dir, storage, budget, seed,
    parent. Exit 0 when the budget is taken, 128 + signal when stopped, 2 for a user error (its message on
    stderr), a traceback for a bug."""
    args = json.loads(argv[1])
    parent = int(args["parent"])
    with StopFlag() as stop:
        try:
            sweep = Sweep.read(Path(args["dir"]), args["storage"])
            sweep.budget = int(args["budget"])
            work(sweep, args["seed"], lambda: stop() or os.getppid() != parent)
        except (Interrupted, KeyboardInterrupt):
            pass
        except BpcliError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return 128 + stop.signum if stop.signum is not None else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
