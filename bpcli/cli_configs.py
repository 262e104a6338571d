"""`bpcli configs`, `bpcli init` and `bpcli data where`: the configs and data that travel with bpcli,
for an installed tool used from any directory. Registered on bpcli's app by the import at the end of
`bpcli.cli`; only parsing and wiring live here (bpcli.builtin knows what is shipped)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from bpcli import builtin
from bpcli.cli import command, console
from bpcli.cli_data import data_app
from bpcli.errors import UsageError


@command("configs", short_help="List the built-in configs (bpcli train NAME uses one).")
def configs_command() -> None:
    """List the configs that come with bpcli: `bpcli train mnist`, `bpcli gradcheck tiny` and `bpcli
    explain nielsen` use them by name when no file of that name exists; `bpcli init NAME` copies one."""
    from bpcli import config

    for item in builtin.listing():
        cfg = config.load(item.path)
        console.print(f"[bold cyan]{item.name:<14}[/]{escape(str(list(cfg.model.layers)))} {cfg.model.activation}: "
                      f"{escape(item.reaches or item.summary)}", highlight=False, soft_wrap=True)
    where = builtin.configs_dir()
    if builtin.spaces():
        console.print(f"search spaces: {', '.join(builtin.spaces())} (`bpcli sweep NAME` uses NAME-sweep)",
                      highlight=False, soft_wrap=True)
    console.print(f"from {escape(str(where))}; copy one to edit with `bpcli init NAME`", highlight=False,
                  soft_wrap=True)


@command("init", short_help="Write a commented copy of a built-in config to edit.")
def init_command(
    name: str = typer.Argument(..., metavar="NAME",
                               help="A built-in config or search space (bpcli configs lists them)."),
    path: Optional[Path] = typer.Argument(None, metavar="PATH", help="Where to write it (default ./NAME.yaml)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a copy of a built-in config, with its comments, to edit and train with `bpcli train PATH`.
    Its data path becomes the dataset's name (`mnist`), which is found wherever bpcli keeps it. A
    built-in search space (`mnist-sweep`) is copied as it is, for `bpcli sweep` beside the copied config."""
    from bpcli.files import write_atomic

    source = builtin.lookup(name) or (builtin.space(name) if "/" not in name else None)
    if source is None or Path(name).exists():
        raise UsageError(f"{name}: not a built-in config; built-in: {', '.join(builtin.names())}; search spaces: "
                         f"{', '.join(builtin.spaces()) or 'none'}")
    target = path if path is not None else Path(f"{source.stem}.yaml")
    if target.is_dir():
        target = target / f"{source.stem}.yaml"
    if target.exists() and not target.is_file():  # a device or FIFO: replacing it is never what was meant
        raise UsageError(f"{target}: not a regular file; give a file name")
    if target.exists() and not force:
        raise UsageError(f"{target} exists; pass --force to overwrite it, or give another PATH")
    text = _portable(source.read_text(encoding="utf-8"))
    try:
        write_atomic(target, text.encode())
    except OSError as e:
        raise UsageError(f"{target}: cannot write ({e.strerror or e}); give another PATH") from None
    if source.stem not in builtin.spaces():
        use = f"train with: bpcli train {target}"
    elif target.stem.endswith("-sweep"):  # NAME-sweep.yaml beside NAME.yaml is the space `bpcli sweep NAME.yaml` uses
        use = f"bpcli sweep {target.with_name(target.stem.removesuffix('-sweep') + '.yaml')} uses it"
    else:
        use = f"sweep with: bpcli sweep CONFIG --space {target}"
    console.print(f"wrote {escape(str(target))} (from the built-in {source.stem}); {escape(use)}", highlight=False,
                  soft_wrap=True)


def _portable(text: str) -> str:
    """The copy's data path names the dataset instead of the repository's `../data/NAME` folder."""
    return re.sub(r"^(\s*path:\s*)\.\./data/([\w.-]+)\s*(#.*)?$",
                  lambda m: f"{m.group(1)}{m.group(2)}".ljust(29) + "# next to this file, in the current "
                  "directory, or where bpcli keeps datasets (bpcli data where)",
                  text, flags=re.MULTILINE)


@command("where", group=data_app, short_help="Where bpcli looks for a dataset, in order, and what it finds.")
def data_where_command(
    name: str = typer.Argument("mnist", metavar="NAME", help="A dataset name or data.path (default mnist)."),
) -> None:
    """Print the places a `data.path` is looked for, in order (next to the config, the current
    directory, the per-user data directory, bpcli's own MNIST), and which of them holds the data."""
    places = builtin.places(name, None)
    first = next((p for p in places if p.found), None)
    for i, place in enumerate(places, 1):
        mark = "[bold green]used [/]" if place is first else ("[green]found[/]" if place.found else "[dim]-    [/]")
        console.print(f"{i}. {mark} {place.what}: {escape(str(place.path))}", highlight=False, soft_wrap=True)
    console.print(f"downloads go to {escape(str(builtin.user_data_dir()))} (bpcli data download NAME)",
                  highlight=False, soft_wrap=True)
    if first is None:
        raise typer.Exit(1)
