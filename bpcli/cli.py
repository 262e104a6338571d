"""The command line: parse options, call the compute modules, render, and map errors to exit codes.

Nothing here computes. Every command is registered through `command`, which turns a `BpcliError`
into one red line on stderr and the error's exit code instead of a traceback.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape

from bpcli import __version__, config
from bpcli.errors import BpcliError

app = typer.Typer(
    name="bpcli",
    help="Train fully-connected networks with backpropagation, and verify and explain that backpropagation.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

console = Console()
err_console = Console(stderr=True)


def command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`app.command`, plus the translation of user errors into a one-line message and exit code."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*a: Any, **k: Any) -> Any:
            try:
                return fn(*a, **k)
            except BpcliError as e:
                fail(str(e), e.exit_code)

        return app.command(*args, **kwargs)(wrapper)

    return register


def fail(message: str, code: int) -> typer.Exit:
    """Print `error: message` as one line on stderr and exit with `code`."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        console.print(f"bpcli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """bpcli: backpropagation you can train, verify and explain."""


# Options shared by the commands that read a config.
SetOption = typer.Option(
    None, "--set", metavar="KEY=VALUE", help="Override a config field, e.g. --set training.epochs=3 (repeatable)."
)
ConfigArgument = typer.Argument(..., exists=False, dir_okay=False, metavar="CONFIG", help="A YAML config file.")

@command("train")
def train_command(
    config_path: Path = ConfigArgument,
    overrides: Optional[list[str]] = SetOption,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default runs/<config name>-<timestamp>)."),
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="Continue a run: its directory or a checkpoint file in it."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing run directory."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the fully resolved config and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or tables; only the final summary line."),
    as_json: bool = typer.Option(False, "--json", help="Print only the final summary, as one JSON object."),
) -> None:
    """Train the network a config describes, on its dataset, and report test accuracy."""
    from bpcli import runner

    started = time.perf_counter()
    cfg = config.load(config_path, overrides or [])
    if print_config:
        console.print(cfg.to_yaml(), end="", highlight=False, soft_wrap=True)
        return
    code = runner.train(cfg, out=out, resume=resume, force=force, quiet=quiet or as_json, as_json=as_json,
                        console=console, err_console=err_console, started=started,
                        config_path=config_path)
    if code:
        raise typer.Exit(code)


@command("evaluate")
def evaluate_command(
    checkpoint_path: Path = typer.Argument(..., metavar="CHECKPOINT", help="A checkpoint (.npz) or run directory."),
    data_path: Optional[Path] = typer.Option(None, "--data", help="Dataset directory (default: the checkpoint's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Test accuracy and confusion matrix of a saved network."""
    from bpcli import runner

    runner.evaluate(checkpoint_path, data_path, as_json=as_json, console=console)


def main() -> None:
    app()
