"""The command line: parse options, call the compute modules, render, and map errors to exit codes.

Nothing here computes. Every command is registered through `command`, which turns a `BpcliError`
into one red line on stderr and the error's exit code instead of a traceback.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from typer.core import TyperCommand, TyperGroup
from rich.console import Console
from rich.markup import escape

from bpcli import __version__
from bpcli.errors import BpcliError, clip

class _Flags:
    """Help that reads well: an on/off flag takes no value, so it shows no `<bool>` metavar (Typer's
    default, which also marks its own --help and completion flags); an argument's name (RUN, CONFIG)
    says what it is, so it shows no Python type beside it (`<list[Path]>`, which also took the width
    that cut the names at 60 columns)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """Below 80 columns, Click's plain help (each option's text under its name, wrapped at words):
        Typer's boxed tables cut option names there ('--print-con…') and wrap help a word a line."""
        if console.width >= 80:
            return super().format_help(ctx, formatter)  # type: ignore[misc]
        formatter.width = max(40, console.width - 2)  # as Rich measured it (Click guesses 80 behind a pipe)
        # The help texts are Rich markup: `bpcli\\[plot]` is how they say `bpcli[plot]`.
        plain = lambda text: text.replace("\\[", "[")  # noqa: E731
        write_text, write_dl = formatter.write_text, formatter.write_dl
        formatter.write_text = lambda text: write_text(plain(text))
        formatter.write_dl = lambda rows, *a, **k: write_dl([(t, plain(d)) for t, d in rows], *a, **k)
        mode, self.rich_markup_mode = self.rich_markup_mode, None  # type: ignore[attr-defined]
        try:
            return super().format_help(ctx, formatter)  # type: ignore[misc]
        finally:
            self.rich_markup_mode = mode  # type: ignore[attr-defined]

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
            elif p.param_type_name == "argument":
                p.display_type_rich = lambda ctx: None
        return params


class _Command(_Flags, TyperCommand):
    pass


class _Group(_Flags, TyperGroup):
    pass


app = typer.Typer(
    name="bpcli",
    cls=_Group,
    help="Train fully-connected networks with backpropagation, and verify and explain that backpropagation.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=True,  # Typer's own --install-completion / --show-completion
    pretty_exceptions_show_locals=False,
)

SIGPIPE_EXIT = 141  # 128 + SIGPIPE: what a Unix tool's status is when its reader goes away


def _reader_gone() -> typer.Exit:
    """stdout's reader closed the pipe (`bpcli train ... | head`): stop quietly, as any Unix tool does.
    stdout is pointed at /dev/null so that the interpreter's final flush cannot fail again; a run
    directory keeps its last committed epoch, which resumes as after any stop."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
    return typer.Exit(SIGPIPE_EXIT)


class _Wrapping(Console):
    """A message asked to stay one line (`soft_wrap=True`, as logs and grep want it) stays one line in a
    pipe or a file; on a terminal Rich wraps it at word boundaries instead, where the terminal would
    break it anywhere ("98.4" / "0%", "--res" / "ume"). A command to copy is printed with `out`, which
    never breaks a line: the terminal wraps it, and copying it gives one line."""

    def print(self, *objects: Any, soft_wrap: bool | None = None, **kwargs: Any) -> None:
        super().print(*objects, soft_wrap=soft_wrap and not self.is_terminal, **kwargs)


class _Console(_Wrapping):
    def on_broken_pipe(self) -> None:
        # Rich's own handling exits with 1, the code for a failed check; make it the usual 141.
        self.quiet = True
        raise _reader_gone()


# emoji off: a path such as /tmp/x:x: is a path, not ❌ (Rich reads :x: as an emoji code).
console = _Console(emoji=False)
err_console = _Wrapping(stderr=True, emoji=False)


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
                told = _environment_error(e)
                if told is not None:
                    fail(told, 2)
                if debugging():
                    raise
                detail = shorten_line(f"{type(e).__name__}: {e}")
                fail(f"internal error ({detail}); this is a bug in bpcli: please report it with the command you "
                     f"ran (run it again with --debug or BPCLI_DEBUG=1 for the traceback)", INTERNAL_ERROR)

        return (group or app).command(*args, cls=_Command, **kwargs)(wrapper)

    return register


INTERNAL_ERROR = 4
_debug = False
# What the file system or the machine refuses (a name too long, a full disk, no permission) is the
# user's to fix, not a bug in bpcli: one line naming the file, exit 2, wherever the call was made.
_USER_ERRNOS = {errno.ENAMETOOLONG, errno.ELOOP, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                errno.EIO, errno.ENOTDIR, errno.EISDIR, errno.ENOENT, errno.EMFILE, errno.ENFILE, errno.EFBIG}


def _environment_error(e: BaseException) -> str | None:
    """The one-line message for an error of the environment rather than of bpcli, or None."""
    if isinstance(e, OSError) and e.errno in _USER_ERRNOS:
        where = f"{clip(os.fsdecode(e.filename), 120)}: " if e.filename is not None else "writing the output: "
        return f"{where}{e.strerror or e}"
    if isinstance(e, ValueError) and "null byte" in str(e):  # os.stat("a\0b"): no path can hold a NUL
        return "a path holds a NUL character, which no file name can; check the paths given and data.path"
    return None


def debugging() -> bool:
    return _debug or os.environ.get("BPCLI_DEBUG", "") not in ("", "0")


def shorten_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def printable(text: str) -> str:
    """`text` with control characters written out (\\x1b): a message quotes paths and values from files,
    and an escape sequence in one (clear the screen, set the window title) must not reach the terminal
    as one. Line breaks stay: the one message of several lines is the learner's own traceback."""
    return "".join(c if c.isprintable() or c == "\n" else c.encode("unicode_escape").decode("ascii") for c in text)


def say_error(message: str) -> None:
    """`error: message` as one line on stderr."""
    err_console.print(f"[bold red]error:[/] {escape(printable(message))}", soft_wrap=True, highlight=False)


def fail(message: str, code: int) -> typer.Exit:
    """Print `error: message` as one line on stderr and exit with `code`."""
    say_error(message)
    raise typer.Exit(code)


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
    global _debug
    _debug = debug


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
        console.print(cfg.to_yaml(), end="", highlight=False, soft_wrap=True, markup=False)
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
        if type(e).__name__ == "NoArgsIsHelpError" or not hasattr(e, "format_message"):
            app()  # `bpcli` or `bpcli data` alone: the help, drawn as Typer draws it
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
