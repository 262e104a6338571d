"""What `bpcli train` and `bpcli evaluate` do between parsing options and drawing results.

This is the glue the CLI would otherwise hold: load the data, build or restore the trainer, set up
the run directory, turn SIGINT/SIGTERM into a checkpoint, and pick the view (live, quiet or JSON).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import time
from pathlib import Path
from typing import Literal

from rich.console import Console

from bpcli import checkpoint as ckpt_io
from bpcli import config as config_module
from bpcli import resources
from bpcli.config import Config
from bpcli.data import DATASETS, Dataset, dataset_spec, load_dataset
from bpcli.errors import CheckpointError, DataError, DivergenceError, UsageError
from bpcli.files import read_regular
from bpcli.render import train as view
from bpcli.render.say import command_line
from bpcli.resume import ResumePlan, command as resume_command, plan as resume_plan, run_root
from bpcli.rundir import COMMIT, RESULT, RunDirError, RunFiles
from bpcli.stop import StopFlag
from bpcli.train import Interrupted, Summary, Trainer, evaluate as evaluate_split, fit


def load_data(cfg: Config) -> Dataset:
    return load_dataset(
        cfg.data.path,
        validation_size=cfg.data.validation_size,
        seed=cfg.training.seed,
        dtype=cfg.training.dtype,
        limit=cfg.data.limit,
        verify=cfg.data.verify,
    )


def mismatched_name(data_path: str, data: Dataset) -> str | None:
    """A note when data.path is named for one known dataset and its files are verified as another
    (fashion-mnist/ holding MNIST trained without a word)."""
    named, found = Path(data_path).name, data.identity.name
    if named in DATASETS and data.identity.status == "verified" and found is not None and found != named:
        return (f"data.path {data_path} holds {data.identity.title} (verified by its checksums), not "
                f"{dataset_spec(named).title}, as its name says")
    return None


DATASET_FILE = "dataset.json"  # in a run directory: what the run was trained on


def dataset_record(cfg: Config, data: Dataset) -> bytes:
    """What a run records about its data, so that `evaluate` can find it and tell a different dataset."""
    return (json.dumps({"path": cfg.data.path, **data.identity.to_json(), "image_shape": list(data.image_shape),
                        "classes": data.classes}, indent=2) + "\n").encode()


def recorded_dataset(run_dir: Path) -> str | None:
    """The name of the known dataset a run recorded in its dataset.json, if any (the file is untrusted:
    anything unexpected counts as no record)."""
    try:
        record = json.loads(read_regular(run_dir / DATASET_FILE, 1 << 16))
        name = record.get("name") if record.get("status") == "verified" else None
        return dataset_spec(name).name if isinstance(name, str) else None
    except (OSError, ValueError, RecursionError, AttributeError, UsageError):
        return None


def resolve(
    config_path: Path | None, overrides: list[str], resume: Path | None
) -> tuple[Config, ResumePlan | None, RunFiles | None]:
    """The config `train` runs with: CONFIG with its overrides, or for `--resume` the run's own. A run
    to resume is locked and any commit a crash cut short is completed before its checkpoint is read."""
    if resume is not None:
        if not Path(resume).exists():
            raise UsageError(f"--resume {resume}: no such run directory or checkpoint")
        files = RunFiles.open(run_root(resume))
        try:
            p = resume_plan(resume, config_path, overrides)
        except BaseException:
            files.release()
            raise
        return p.config, p, files
    if config_path is None:
        raise UsageError("train needs a CONFIG file, e.g. `bpcli train configs/tiny.yaml`, or --resume RUN_DIR "
                         "to continue a run")
    return config_module.load(config_path, overrides), None, None


Mode = Literal["live", "plain", "jsonl", "quiet", "json"]


def pick_mode(console: Console, quiet: bool, as_json: bool, log_format: str) -> Mode:
    """--json and --quiet win; otherwise the live view on a terminal and plain lines anywhere else."""
    if as_json:
        return "json"
    if quiet:
        return "quiet"
    if log_format == "jsonl":
        return "jsonl"
    if log_format == "plain":
        return "plain"
    return "live" if console.is_terminal and not console.is_dumb_terminal else "plain"


def _view(mode: Mode, console: Console, layers: bool) -> view.TrainView:
    if mode == "live":
        return view.LiveView(console, layers)
    if mode == "plain":
        return view.PlainView(console, layers)
    if mode == "jsonl":
        return view.JsonLinesView(_print_line)
    return view.QuietView()


def _print_line(line: str) -> None:
    print(line, flush=True)


def train(
    cfg: Config,
    plan: ResumePlan | None,
    files: RunFiles | None,
    out: Path | None,
    force: bool,
    mode: Mode,
    console: Console,
    err_console: Console,
    started: float,
    layers: bool = True,
) -> int:
    """Train as `cfg` says (continuing `plan` in the locked `files` if given); returns the exit code: 0,
    or 130/143 after an interrupt. Messages go to stderr when stdout carries JSON. The run directory's
    lock is released on the way out."""
    with contextlib.ExitStack() as unlock:
        if files is not None:
            unlock.callback(files.release)
        say = err_console if mode in ("json", "jsonl") else console
        if plan is not None and out is not None:
            raise UsageError(f"--out cannot be used with --resume: the run continues in {plan.root}")
        if plan is not None and force:
            raise UsageError("--force cannot be used with --resume: resuming never overwrites a run")
        tested = files is not None and (files.latest_result() or {}).get("state") == "finished"
        if plan is not None and plan.finished and tested:
            command_line(say, f"{plan.root} has already finished its {cfg.training.epochs} epochs; to train it "
                              "longer:", f"{resume_command(plan.root)} --set training.epochs=N")
            return 0
        if plan is not None and plan.finished:  # the last epoch was committed, its test pass cut short
            plan.notes.append(f"{plan.root} has finished its epochs but not its test pass (stopped during it): "
                              "testing it now")
        for note in plan.notes if plan is not None else []:
            say.print(f"note: {note}", soft_wrap=True, highlight=False, markup=False)

        trainer: Trainer | None = None
        with StopFlag() as stop:
            try:
                data = load_data(cfg)
                named = mismatched_name(cfg.data.path, data)
                if named is not None:
                    say.print(f"note: {named}", soft_wrap=True, highlight=False, markup=False, style="yellow")
                resources.check_training(cfg, len(data.train), max(len(data.validation), len(data.test)))
                if plan is None:
                    cfg = absolute_data_path(cfg)
                trainer = Trainer(cfg, data)
                if plan is not None:
                    ckpt_io.check_resumable(plan.checkpoint, plan.root)
                    try:
                        trainer.restore(plan.checkpoint)
                    except CheckpointError as e:
                        raise CheckpointError(f"--resume {plan.root}: {e}") from None
                    files.metrics_through(plan.checkpoint.epoch)  # before anything is written
                else:
                    files = RunFiles.create(out if out is not None else RunFiles.default_root(cfg.name), force)
                    unlock.callback(files.release)
                assert files is not None
                for note in files.notes:
                    say.print(f"note: {note}", soft_wrap=True, highlight=False, markup=False)
                write_run_files(cfg, data, files)
                summary = _fit(cfg, trainer, files, data, _view(mode, console, layers), stop, started)
                write_result(files, summary)
            except Interrupted:
                assert files is not None and trainer is not None
                _report_interrupt(say, stop, trainer, files, mode)
                return 128 + (stop.signum or signal.SIGINT)
            except KeyboardInterrupt:
                # A second Ctrl-C while stopping, or Ctrl-C before training began: stop without saving more.
                _report_abort(say, files)
                return 130
            except DivergenceError as e:
                if files is not None:
                    with contextlib.suppress(RunDirError):  # the divergence is the news, not a disk that refuses a note
                        files.write(RESULT, result_record("diverged", message=str(e)))
                saved = files is not None and files.last.is_file()
                kept = f"; the last good checkpoint is {files.last}" if saved else ""  # type: ignore[union-attr]
                raise DivergenceError(f"{e}{kept}") from None
            try:
                _report(summary, mode, console, data.class_names)
                if stop.signum is not None:
                    say.print(f"note: {stop.name} arrived after the last epoch; the test pass was finished and the "
                              "outputs are complete",
                              soft_wrap=True, highlight=False, markup=False)
            except KeyboardInterrupt:
                pass  # the outputs are complete; only the report was cut short
        return 0


def result_record(state: str, **fields: object) -> bytes:
    """result.json: how a session ended ("finished" with the test accuracy and loss, or "diverged"), so that
    `bpcli runs` need not evaluate anything; stamped with the time, as a later commit (a resumed run) makes
    it out of date."""
    return (json.dumps({"state": state, **fields, "time": time.time()}) + "\n").encode()


def _fit(cfg: Config, trainer: Trainer, files: RunFiles, data: Dataset, live: view.TrainView, stop: StopFlag,
         started: float) -> Summary:
    t, m = cfg.training, cfg.model
    title = (f"{cfg.name}: {list(m.layers)} {m.activation}/{m.output}, {t.optimizer.name}, "
             f"{len(data.train):,} training examples; data: {data.identity.label}")
    live.start(title, t.epochs, len(data.train), str(files.root))
    try:
        return fit(trainer, files, live.epoch_start, live.batch, live.epoch_end, stop, started)
    finally:
        live.stop()


# -- what a new run does before and around its epochs: shared by `train` and each trial of `sweep` ---


def absolute_data_path(cfg: Config) -> Config:
    """`cfg` with its data path made absolute, so the run can be resumed or evaluated from anywhere."""
    path = str(Path(cfg.data.path).resolve())
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=path))


def write_run_files(cfg: Config, data: Dataset, files: RunFiles) -> None:
    """What a run directory holds before its first epoch: its resolved config and the record of its data,
    once the disk is known to have room for its checkpoints."""
    files.check_space(resources.checkpoint_bytes(cfg))
    files.write("config.yaml", cfg.to_yaml().encode())
    files.write(DATASET_FILE, dataset_record(cfg, data))


def write_result(files: RunFiles, summary: Summary) -> None:
    """result.json of a run that finished its epochs: its test accuracy and loss."""
    files.write(RESULT, result_record("finished", epoch=summary.epochs, test_accuracy=summary.test_accuracy,
                                      test_loss=summary.test_loss))


def _report_interrupt(say: Console, stop: StopFlag, trainer: Trainer, files: RunFiles, mode: Mode) -> None:
    pos = trainer.position
    where = f"epoch {pos.epoch + 1}, batch {pos.batch}/{trainer.steps_per_epoch}"
    cmd = resume_command(files.root)
    if mode == "json":
        print(json.dumps({"status": "interrupted", "signal": stop.name, "epoch": pos.epoch + 1, "batch": pos.batch,
                          "run_dir": str(files.root), "resume_command": cmd}), flush=True)
    say.print(f"{stop.name}: stopped at {where}; checkpoint saved to {files.last}", soft_wrap=True,
              highlight=False, markup=False, style="yellow")
    command_line(say, "resume with:", cmd)


def _report_abort(say: Console, files: RunFiles | None) -> None:
    if files is not None and files.last.is_file():
        command_line(say, f"stopped at once, without saving the current position; {files.last} holds the last "
                          "saved one; resume with:", resume_command(files.root))
    elif files is not None:  # this run made its directory: --force replaces only what it wrote
        say.print("stopped at once, before the first checkpoint was saved; start the run again with --force to "
                  "train it (its directory holds no checkpoint to resume)",
                  soft_wrap=True, highlight=False, markup=False)
    else:  # stopped before it had a directory (loading data): --force might replace someone's finished run
        say.print("stopped at once, before the run began; start it again to train it", soft_wrap=True,
                  highlight=False, markup=False)


def _report(summary: Summary, mode: Mode, console: Console, class_names: tuple[str, ...]) -> None:
    if mode == "json":
        result = summary.to_json()
        result.pop("confusion")
        print(json.dumps({"status": "finished", **result}), flush=True)
    elif mode == "jsonl":
        print(json.dumps({"event": "summary", **summary.to_json()}), flush=True)
    elif mode == "quiet":
        console.print(f"test accuracy {100 * summary.test_accuracy:.2f}% after {summary.epochs} "
                      f"epoch{'s' * (summary.epochs != 1)}, "
                      f"{summary.seconds:.1f} s; outputs in {summary.run_dir}", highlight=False, soft_wrap=True,
                      markup=False)
    else:
        view.summary(console, summary, class_names)


def _settle(root: Path) -> None:
    """Finish a commit a crash cut short in the run directory `root`, if no live run holds it; a live
    run finishes its own, and a directory we may not write is read as it is."""
    if not (root / COMMIT).is_file():
        return
    try:
        RunFiles.open(root).release()
    except RunDirError:
        pass


def evaluate(checkpoint_path: Path, data_path: Path | None, as_json: bool, console: Console) -> None:
    """Test accuracy and confusion matrix of the network in a checkpoint (a run directory means its
    last.npz, the network at the end of its latest epoch)."""
    started = time.perf_counter()
    source = Path(checkpoint_path) / "last.npz" if Path(checkpoint_path).is_dir() else Path(checkpoint_path)
    _settle(source.parent)
    ckpt = ckpt_io.load(checkpoint_path)  # a run directory: its last.npz, or why it has none
    cfg = ckpt.config
    resources.check_evaluation(cfg.model.layers, cfg.training.dtype, 10_000)
    data = _evaluation_data(checkpoint_path, source.parent, data_path, cfg)
    if data.input_size != cfg.model.layers[0] or data.classes != cfg.model.layers[-1]:
        raise UsageError(
            f"{checkpoint_path}: the network is {list(cfg.model.layers)} but the data has {data.input_size} inputs "
            f"and {data.classes} classes"
        )
    result = evaluate_split(ckpt.network, data.test)
    if as_json:
        print(json.dumps({"test_accuracy": result.accuracy, "test_loss": result.loss, "epoch": ckpt.epoch,
                          "batch": ckpt.batch,
                          "checkpoint": str(source), "confusion": result.confusion.tolist(),
                          "dataset": data.identity.to_json(), "class_names": list(data.class_names),
                          "seconds": time.perf_counter() - started}))
        return
    view.evaluation(console, result.confusion, result.accuracy, result.loss, len(data.test),
                    list(cfg.model.layers), ckpt.epoch, ckpt.batch, str(source), data.class_names, data.identity.label)


def _evaluation_data(checkpoint_path: Path, run_dir: Path, data_path: Path | None, cfg: Config) -> Dataset:
    """The test data a checkpoint is evaluated on: --data, else the path its run recorded (absolute, so it
    is found from any directory); refused when it is not the dataset the run recorded."""
    if data_path is None and not Path(cfg.data.path).exists():
        raise DataError(f"{checkpoint_path}: the data it was trained on, {cfg.data.path}, is not there (moved or "
                        "deleted); give the dataset to evaluate on with --data PATH")
    path = data_path or cfg.data.path
    data = load_dataset(path, validation_size=0, dtype=cfg.training.dtype, verify=cfg.data.verify)
    recorded = recorded_dataset(run_dir)
    if recorded and data.identity.name != recorded:
        trained = dataset_spec(recorded).title
        raise UsageError(f"{checkpoint_path}: the run was trained on {trained}, but {path} is "
                         f"{data.identity.title if data.identity.name else 'not ' + trained}; give {trained} with "
                         "--data PATH")
    return data
