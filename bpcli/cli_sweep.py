"""`bpcli sweep CONFIG` and `bpcli sweep show DIR`: a hyperparameter search through Optuna (the `sweep`
extra). Registered on bpcli's app by the import at the end of `bpcli.cli`; only parsing and wiring live
here: bpcli/sweep.py runs the study, bpcli/sweep_results.py reads it, bpcli/render/sweep.py draws it."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from bpcli.cli import SetOption, _Group, app, command, console, err_console
from bpcli.threads import cpu_count


class _SweepGroup(_Group):
    """`bpcli sweep CONFIG ...` is `bpcli sweep run CONFIG ...`: anything that is not a subcommand's name
    (or --help) goes to `run`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


sweep_app = typer.Typer(
    cls=_SweepGroup, no_args_is_help=True,
    help="Search hyperparameters with Optuna: bpcli sweep CONFIG [--space FILE] [--trials N] [--jobs J] runs the "
         "trials (the same as `bpcli sweep run CONFIG ...`, whose options `bpcli sweep run -h` lists); bpcli sweep "
         "show DIR reports a sweep. Needs bpcli\\[sweep].",
)
app.add_typer(sweep_app, name="sweep", short_help="Search hyperparameters with Optuna, J trials at a time.")


@command("run", group=sweep_app, short_help="Run a sweep's trials as ordinary runs, J at a time (the default).")
def sweep_command(
    config_path: Path = typer.Argument(..., readable=False, metavar="CONFIG", help="The config the sweep varies."),
    space: Optional[Path] = typer.Option(
        None, "--space", metavar="FILE", help="The search space (default: CONFIG's name + -sweep.yaml, beside it)."
    ),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, metavar="N",
                                         help="Trials to finish (default: the space's trials:)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, metavar="J",
                                       help="Trials at once on this machine, one process each (default: the cores)."),
    overrides: Optional[list[str]] = SetOption,
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR",
                                       help="Sweep directory (default runs/<sweep name>)."),
    storage: Optional[str] = typer.Option(
        None, "--storage", metavar="URL",
        help="Optuna storage shared by every process and machine of the sweep: a journal file path, sqlite:///FILE, "
             "postgresql://..., mysql://..., redis://... (default: DIR/journal.log).",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the sweep in its directory (finished trials stay)."),
    as_json: bool = typer.Option(False, "--json", help="Only the result, as one JSON object."),
) -> None:
    """Run a hyperparameter search: each trial an ordinary run in DIR/trial-NNN, J at a time, each reporting
    validation accuracy (or loss) after every epoch so the pruner can stop hopeless ones. Then the trials
    best first and the best config as DIR/best.yaml. Ctrl-C stops the running trials between two batches;
    --resume runs them again and continues."""
    from bpcli import sweep as sweeping
    from bpcli import sweep_results
    from bpcli.render import sweep as view
    from bpcli.stop import StopFlag

    started = time.perf_counter()
    sweep = sweeping.prepare(config_path, overrides or [], space, trials, out, storage, resume)
    say = err_console if as_json else console
    for note in sweep.notes:
        say.print(f"note: {escape(note)}", style="yellow", soft_wrap=True, highlight=False)
    jobs = jobs or cpu_count()
    left = sweeping.remaining(sweep)
    title = (f"sweep {sweep.name}: {left} of {sweep.budget} trials to run, {min(jobs, max(left, 1))} at a time; "
             f"{sweep.root}")
    if left == 0:
        say.print(f"the sweep {escape(sweep.name)} has already finished its {sweep.budget} trials; to run more: "
                  f"--trials N --resume", soft_wrap=True, highlight=False)
    live: Any
    if as_json or left == 0:
        live = view.QuietSweep()
    elif console.is_terminal and not console.is_dumb_terminal:
        live = view.LiveSweep(console, title)
    else:  # a log: the trials of an earlier session (--resume) were in its log
        earlier = {r.number for r in sweep_results.collect(sweep, sweep.study()).rows  # another machine's running
                   if r.state not in ("waiting", "running")}                           # trials are logged here
        live = view.PlainSweep(lambda line: console.print(line, soft_wrap=True, highlight=False, markup=False), title,
                               len(sweep.space.params), earlier)
    live.start()
    with StopFlag() as stop:
        try:
            outcome = sweeping.run(sweep, jobs, lambda study: live.update(sweep_results.collect(sweep, study)), stop)
        finally:
            live.stop()
    results = sweep_results.collect(sweep, sweep.study(), importances=True)
    sweep_results.write_best(sweep, results)
    interrupted = outcome.interrupted
    hint = "bpcli " + shlex.join([*sys.argv[1:], *([] if "--resume" in sys.argv else ["--resume"])])
    if as_json:
        print(json.dumps({"status": "interrupted" if interrupted else "finished", **results.to_json(),
                          "lost": outcome.lost, "failures": outcome.failures, "seconds": time.perf_counter() - started}),
              flush=True)
    else:
        view.summary(console, results, hint if interrupted else None)
    for note in outcome.lost:
        say.print(f"note: {escape(note)}", style="yellow", soft_wrap=True, highlight=False)
    for failure in outcome.failures:
        err_console.print(f"[bold red]error:[/] {escape(failure)}", soft_wrap=True, highlight=False)
    if interrupted:
        say.print("stopped: the trials that were running are interrupted (failed, in the study) and run again "
                  "with --resume", soft_wrap=True, highlight=False, style="yellow")
        raise typer.Exit(128 + (stop.signum or 2))
    if outcome.failures:
        raise typer.Exit(4)
    if results.best is None:
        err_console.print("[bold red]error:[/] no trial completed, so there is no best config", highlight=False)
        raise typer.Exit(1)


@command("show", group=sweep_app, short_help="A sweep's trials best first, and parameter importances.")
def sweep_show_command(
    directory: Path = typer.Argument(..., metavar="DIR", help="A sweep directory (runs/<sweep name>)."),
    storage: Optional[str] = typer.Option(None, "--storage", metavar="URL",
                                          help="The sweep's storage, when its URL has a password (not recorded)."),
    as_json: bool = typer.Option(False, "--json", help="The result as one JSON object."),
) -> None:
    """The trials of a sweep (finished or still running, from any machine sharing its storage) best first,
    the best config and Optuna's parameter importances."""
    from bpcli import sweep as sweeping
    from bpcli import sweep_results
    from bpcli.render import sweep as view

    sweeping.need_optuna()
    sweep = sweeping.Sweep.read(directory, storage)
    results = sweep_results.collect(sweep, sweep.study(create=False), importances=True)
    if as_json:
        print(json.dumps(results.to_json()), flush=True)
        return
    view.summary(console, results)
