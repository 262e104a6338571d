"""The command line: parse options, call the compute modules, render, and map errors to exit codes.

Nothing here computes. Every command is registered through `command`, which turns a `BpcliError`
into one red line on stderr and the error's exit code instead of a traceback.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.markup import escape

from bpcli import __version__
from bpcli.cli_base import (  # noqa: F401 - debugging and _Group: the cli_* modules import them from here
    INTERNAL_ERROR,
    _Command,
    _environment_error,
    _Group,
    _reader_gone,
    console,
    debugging,
    err_console,
    fail,
    say_error,
    set_debug,
    shorten_line,
)
from bpcli.errors import BpcliError

app = typer.Typer(
    name="bpcli",
    cls=_Group,
    help="Train fully-connected networks with backpropagation, and verify and explain that backpropagation.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=True,  # Typer's own --install-completion / --show-completion
    pretty_exceptions_show_locals=False,
)

def command(*args: Any, group: typer.Typer | None = None, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`app.command` (or `group.command` for a sub-app), plus the translation of user errors into a
    one-line message and exit code."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*a: Any, **k: Any) -> Any:
            try:
                return fn(*a, **k)
            except BpcliError as e:
                fail(str(e), e.exit_code)
            except (typer.Exit, typer.Abort, typer.TyperException):
                raise
            except BrokenPipeError:
                raise _reader_gone() from None
            except KeyboardInterrupt:  # a stop the user asked for, not an error (as train says it)
                err_console.print("SIGINT: stopped", style="yellow", highlight=False)
                raise typer.Exit(130) from None
            except Exception as e:  # noqa: BLE001 - a bug in bpcli: exit 4, never 1 (a verdict) or a traceback
                if debugging():  # --debug shows every traceback, the environment's too
                    raise
                told = _environment_error(e)
                if told is not None:
                    fail(told, 2)
                detail = shorten_line(f"{type(e).__name__}: {e}")
                fail(f"internal error ({detail}); this is a bug in bpcli: please report it with the command you "
                     f"ran (run it again with --debug or BPCLI_DEBUG=1 for the traceback)", INTERNAL_ERROR)

        return (group or app).command(*args, cls=_Command, **kwargs)(wrapper)

    return register


def _version(value: bool) -> None:
    if value:
        console.print(f"bpcli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", metavar="", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
    debug: bool = typer.Option(False, "--debug", metavar="", help="Show the traceback of an internal error."),
) -> None:
    """bpcli: backpropagation you can train, verify and explain."""
    set_debug(debug)


# Options shared by the commands that read a config.
SetOption = typer.Option(
    None, "--set", metavar="KEY=VALUE", help="Override a config field, e.g. --set training.epochs=3 (repeatable)."
)
# No exists/dir_okay/readable checks by Typer: the config loader judges the path and says what is
# wrong in bpcli's one-line `error:` form, where Typer would draw its multi-line usage box.
ConfigArgument = typer.Argument(..., readable=False, metavar="CONFIG", help="A YAML config file.")

@command("train", short_help="Train a network from a config; report test accuracy.")
def train_command(
    config_path: Optional[Path] = typer.Argument(
        None, readable=False, metavar="CONFIG", show_default=False,
        help="A YAML config file (not needed with --resume: the run directory holds its config).",
    ),
    overrides: Optional[list[str]] = SetOption,
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", metavar="DIR", help="Run directory (default runs/<config name>-<timestamp>)."
    ),
    resume: Optional[Path] = typer.Option(
        None, "--resume", metavar="RUN", help="Continue a run from its directory (or a checkpoint in it)."
    ),
    force: bool = typer.Option(False, "--force", metavar="", help="Overwrite an existing run directory."),
    print_config: bool = typer.Option(False, "--print-config", metavar="", help="Print the resolved config and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="Only the final summary line."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Only the final summary, as one JSON object."),
    layers: bool = typer.Option(
        True, "--layers/--no-layers", help="Show each layer's learning statistics (dC/dw RMS, update ratio, ...)."
    ),
    log_format: str = typer.Option(
        "auto", "--log-format", metavar="auto|plain|jsonl",
        help="auto: a live view on a terminal, one line per epoch otherwise; jsonl: one JSON object per epoch.",
    ),
) -> None:
    """Train the network a config describes, on its dataset, and report test accuracy.

    Ctrl-C stops between two batches, saves the position and prints the command that resumes it.
    """
    from bpcli import runner
    from bpcli.errors import UsageError

    started = time.perf_counter()
    if log_format not in ("auto", "plain", "jsonl"):
        raise UsageError(f"--log-format {log_format!r}: expected auto, plain or jsonl")
    _say_if_builtin(config_path)
    cfg, plan, files = runner.resolve(config_path, overrides or [], resume)
    if print_config:
        if files is not None:
            files.release()
        console.out(cfg.to_yaml(), end="", highlight=False)  # YAML to copy: never broken by a wrap
        return
    mode = runner.pick_mode(console, quiet, as_json, log_format)
    code = runner.train(cfg, plan, files, out=out, force=force, mode=mode, console=console, err_console=err_console,
                        started=started, layers=layers)
    if code:
        raise typer.Exit(code)


@command("evaluate", short_help="Test accuracy and confusion matrix of a saved network.")
def evaluate_command(
    checkpoint_path: Path = typer.Argument(..., metavar="CHECKPOINT", help="A checkpoint (.npz) or run directory."),
    data_path: Optional[Path] = typer.Option(None, "--data", metavar="DIR", help="Dataset directory (default: the checkpoint's)."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print the result as one JSON object."),
) -> None:
    """Test accuracy and confusion matrix of a saved network."""
    from bpcli import runner

    runner.evaluate(checkpoint_path, data_path, as_json=as_json, console=console)


@command("explain", short_help="Explain backprop for a network, symbol by symbol, with a trace.")
def explain_command(
    config_path: Optional[Path] = typer.Argument(
        None, readable=False, metavar="CONFIG", help="A YAML config file or a built-in config's name (default: configs/mnist.yaml here, else the built-in mnist)."
    ),
    overrides: Optional[list[str]] = SetOption,
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", metavar="CKPT", help="Explain a trained network: a checkpoint (.npz) instead of CONFIG."
    ),
    sections: Optional[list[str]] = typer.Option(
        None, "--section", metavar="NAME",
        help="Show only this section (repeatable): notation, layers, cost, equations, graph, trace.",
    ),
    weight: Optional[str] = typer.Option(
        None, "--weight", metavar="L,J,K",
        help="Trace dC/dw^l_jk for one example: l = 2..L, and j, k 0-based as in the arrays.",
    ),
    example: int = typer.Option(0, "--example", metavar="N", help="The test example the trace uses."),
    fmt: str = typer.Option("rich", "--format", metavar="rich|markdown|json", help="Output format."),
    graph: Optional[str] = typer.Option(
        None, "--graph", metavar="mermaid|dot", help="Print only the graph after surgery, in this format."
    ),
    model: Optional[str] = typer.Option(None, "--model", metavar="PATH.py:NAME",
                                        help="Trace --weight through your own network beside bpcli's. Runs its code."),
    model_args: Optional[str] = typer.Option(None, "--model-args", metavar="JSON", help="Layer sizes for --model."),
) -> None:
    """Explain backpropagation for one network: every symbol with its type, the shapes, the cost as a
    function of the parameters, the equations per layer, the graph with weights as nodes, and one
    partial derivative traced with real numbers."""
    import json

    from bpcli import explain
    from bpcli.errors import UsageError
    from bpcli.render import explain as view
    from bpcli.render import explain_formats as formats

    if model is not None:
        from bpcli.cli_models import explain_model

        # These shape bpcli's own explanation; with --model they were ignored without a word.
        given = [name for name, value in (("--checkpoint", checkpoint), ("--section", sections),
                                          ("--example", example != 0), ("--format", fmt != "rich"), ("--graph", graph))
                 if value]
        if given:
            raise UsageError(f"{', '.join(given)} explain bpcli's own network, not one given with --model (which "
                             "traces --weight on one random example, as a table)")
        return explain_model(model, model_args, config_path, overrides or [], weight)
    if fmt not in ("rich", "markdown", "json"):
        raise UsageError(f"--format {fmt!r}: expected rich, markdown or json")
    if graph is not None and graph not in ("mermaid", "dot"):
        raise UsageError(f"--graph {graph!r}: expected mermaid or dot")
    chosen = explain.parse_sections(sections)
    cfg, net, source = explain.load_subject(config_path, overrides or [], checkpoint)
    if graph is not None:
        model = explain.describe(net, name=cfg.name, source=source, batch_size=cfg.training.batch_size,
                                 sections=["graph"])
        assert model.graph is not None
        typer.echo(formats.to_mermaid(model.graph) if graph == "mermaid" else formats.to_dot(model.graph), nl=False)
        return
    if "trace" in chosen and weight is None:
        raise UsageError("the trace section needs --weight l,j,k: " + explain.weight_ranges(net.sizes))
    picked = explain.parse_weight(weight, net.sizes) if weight is not None else None
    sample = (explain.load_example(cfg.data.path, example, net.sizes, cfg.data.verify)
              if picked is not None else None)
    model = explain.describe(net, name=cfg.name, source=source, batch_size=cfg.training.batch_size,
                             sections=sections, weight=picked, example=sample)
    if fmt == "json":
        typer.echo(json.dumps(explain.to_json(model), indent=2))
    elif fmt == "markdown":
        typer.echo(formats.to_markdown(model), nl=False)
    else:
        view.render(console, model, hint=picked is None and not sections)


@command("gradcheck", short_help="Check backprop's gradient against numerical derivatives of C.")
def gradcheck_command(
    config_path: Optional[Path] = typer.Argument(
        None, readable=False, metavar="CONFIG", help="A YAML config file (optional with --checkpoint)."
    ),
    overrides: Optional[list[str]] = SetOption,
    checkpoint_path: Optional[Path] = typer.Option(
        None, "--checkpoint", metavar="CKPT", help="Check this trained network (.npz or run directory) instead of a fresh one."
    ),
    path: str = typer.Option(
        "both", "--path", metavar="reference|training|both",
        help="Which gradient: backprop in float64, the one training computes (its dtype, workspace, scale), or both.",
    ),
    batch: Optional[int] = typer.Option(
        None, "--batch", min=1, metavar="N",
        help="Examples C averages over: the first N MNIST test images (default: the smallest prime > 2 that "
             "is no layer width or batch size).",
    ),
    random_data: bool = typer.Option(False, "--random-data", metavar="", help="Seeded random inputs and targets instead of MNIST."),
    method: str = typer.Option("central", "--method", metavar="central|complex|directional", help="Numerical derivative."),
    eps: Optional[float] = typer.Option(None, "--eps", metavar="H", help="Step h (default 1e-5; complex 1e-30)."),
    rtol: Optional[float] = typer.Option(None, "--rtol", metavar="R", help="Relative error allowed (default 1e-7; complex 1e-12; directional 1e-6)."),
    atol: Optional[float] = typer.Option(None, "--atol", metavar="A", help="Absolute error allowed (default: 10x the rounding noise, 10 eps max(1,C)/h)."),
    entries: str = typer.Option("all", "--entries", metavar="all|N", help="Check every entry, or N random ones per group (directional: N directions)."),
    seed: Optional[int] = typer.Option(None, "--seed", metavar="S", help="Seed for initialization, random data and sampling (default training.seed)."),
    json_path: Optional[Path] = typer.Option(None, "--json", metavar="FILE", help="Also write the results as JSON to FILE."),
    force: bool = typer.Option(False, "--force", metavar="", help="Replace an existing --json FILE."),
    model: Optional[str] = typer.Option(
        None, "--model", metavar="PATH.py:NAME",
        help="Check your own NumPy network (book or function style) instead of bpcli's. Runs its code.",
    ),
    model_args: Optional[str] = typer.Option(
        None, "--model-args", metavar="JSON", help="Layer sizes for a --model class or factory, e.g. '[784, 30, 10]'."
    ),
) -> None:
    """Check backprop's gradient against numerical derivatives of C, entry by entry or along random
    directions, on the reference path (float64) and the path training uses, or your own network's
    with --model (and say which equation a failure points to). Exit code 0 if every group passes,
    1 if any fails, 2 for bad input (an exception in your code included), 4 if the checker failed."""
    from bpcli import gradcheck
    from bpcli.errors import UsageError
    from bpcli.render import gradcheck as view

    if model is not None:
        from bpcli.cli_models import gradcheck_model

        return gradcheck_model(model, model_args, config_path, overrides or [], checkpoint_path, path, batch,
                               random_data, method, eps, rtol, atol, entries, seed, json_path, force)

    if method not in gradcheck.METHODS:
        raise UsageError(f"--method {method!r}: expected one of {', '.join(gradcheck.METHODS)}")
    if path not in (*gradcheck.PATHS, "both"):
        raise UsageError(f"--path {path!r}: expected one of {', '.join(gradcheck.PATHS)}, both")
    if entries != "all" and not entries.isdigit():
        raise UsageError(f"--entries {entries!r}: expected 'all' or a positive whole number")
    if json_path is not None:
        gradcheck.check_writable(json_path, force)  # before the work, not after it
    cfg, net, seed, origin = gradcheck.load_subject(config_path, overrides or [], checkpoint_path, seed)
    why = None
    if batch is None:
        batch, why = gradcheck.default_batch(net.sizes, cfg.training.batch_size)
    mnist_dir = None if random_data else cfg.data.path
    x, y, source = gradcheck.batch_for(net.sizes, net.output.name, batch, seed, mnist_dir)
    n_entries = "all" if entries == "all" else int(entries)
    with view.checking(console) as on_group:
        report = gradcheck.check_paths(
            net, x, y, gradcheck.PATHS if path == "both" else (path,),
            gradcheck.TrainingSetup.from_config(cfg.training), method=method, eps=eps, rtol=rtol, atol=atol,
            entries=n_entries, seed=seed, on_group=on_group,
        )
    report.notes.append(f"{origin}; data: {source}")
    if why:
        report.notes.append(why)
    if cfg.training.l2 > 0:
        report.notes.append(f"training.l2 = {cfg.training.l2:g}: L2 decay is applied by the optimizer, is not "
                            "part of C(w, b), and is not checked")
    view.render(console, report)
    if json_path is not None:
        gradcheck.write_json(json_path, report)
    if not report.passed:
        raise typer.Exit(1)


def _say_if_builtin(config_path: Path | None) -> None:
    """Say so when CONFIG is the name of a built-in config rather than a file (a file always wins)."""
    from bpcli import builtin

    found = builtin.lookup(config_path) if config_path is not None else None
    if found is not None:
        err_console.print(f"note: {config_path} is the built-in config {escape(str(found))}", highlight=False,
                          soft_wrap=True)


def main() -> None:
    """`bpcli`: the app, with Click's usage errors as one line (Typer draws them as a 6-line box) and an
    output that cannot be written (`--help > /dev/full`) as one line instead of a traceback."""
    if sys.stdout is None:  # started with fd 1 closed (`bpcli ... >&-`): every line would vanish, exit 0
        say_error("standard output is closed, so nothing bpcli prints could be read; redirect it to a file or to "
                  "/dev/null instead")
        sys.exit(2)
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        sys.exit(1)
    except typer.TyperException as e:  # Click's usage errors (Typer vendors Click: only this base is public)
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError":  # `bpcli` or `bpcli data` alone: the help, and exit 2
            # Typer's boxed help draws itself when the error is made; the plain one (below 80 columns) is
            # the message.
            if e.format_message().strip():  # type: ignore[attr-defined]
                console.out(e.format_message().rstrip(), highlight=False)  # type: ignore[attr-defined]
            sys.exit(getattr(e, "exit_code", 2))
        command = ctx.command_path if ctx is not None else "bpcli"
        say_error(f"{' '.join(e.format_message().split())} ({command} -h shows the usage)")
        sys.exit(getattr(e, "exit_code", 2))
    except OSError as e:
        told = _environment_error(e)
        if told is None:
            raise
        say_error(told)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


from bpcli import cli_pictures  # noqa: E402,F401 - registers plot and show
from bpcli import cli_data  # noqa: E402,F401 - registers data (download, verify)
from bpcli import cli_configs  # noqa: E402,F401 - registers configs, init and data where
from bpcli import cli_use  # noqa: E402,F401 - registers predict, runs and export
from bpcli import cli_sweep  # noqa: E402,F401 - registers sweep (run, show)
