"""What travels with bpcli: the shipped configs (by name) and the MNIST copy, and where datasets live.

The repository's top-level `configs/` and `data/mnist/` are the sources; the build maps them into the
package as `bpcli.configs` and `bpcli._mnist` (pyproject.toml), so an installed bpcli works from any
directory, offline: `bpcli train mnist`.

A relative `data.path` that is not found where it is written (next to the config, then in the
current directory) is looked for by its last component, the dataset's name:

    1. the per-user data directory (platformdirs: ~/.local/share/bpcli/datasets on Linux), where
       `bpcli data download` puts datasets by default;
    2. the MNIST copy inside the package (for `mnist` only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bpcli.errors import ConfigError

MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
               "t10k-labels-idx1-ubyte.gz")


def _package_dir(inside: str, in_repository: str) -> Path | None:
    """A data folder of bpcli: `bpcli/<inside>` in an installed wheel, or the repository's own folder
    when bpcli runs from a clone (editable installs import the package from there and do not map
    folders into it); None if neither is there."""
    package = Path(__file__).resolve().parent
    for candidate in (package / inside, package.parent / in_repository):
        if candidate.is_dir():
            return candidate
    return None


def configs_dir() -> Path | None:
    return _package_dir("configs", "configs")


def is_shipped(config_dir: Path) -> bool:
    """Whether `config_dir` is the directory of bpcli's own configs."""
    shipped = configs_dir()
    return shipped is not None and Path(config_dir).resolve() == shipped.resolve()


def names() -> list[str]:
    """The built-in configs' names (file stems), sorted. NAME-sweep.yaml beside a config is the search
    space `bpcli sweep NAME` finds for it, not a config."""
    root = configs_dir()
    return sorted(p.stem for p in root.glob("*.yaml") if not p.stem.endswith("-sweep")) if root else []


def spaces() -> list[str]:
    """The built-in search spaces' names (`mnist-sweep`), sorted."""
    root = configs_dir()
    return sorted(p.stem for p in root.glob("*-sweep.yaml")) if root else []


def space(name: str) -> Path | None:
    """The built-in search space `name` (or `name.yaml`) names, if there is one."""
    stem = name[:-5] if name.endswith(".yaml") else name
    root = configs_dir()
    return root / f"{stem}.yaml" if root is not None and stem in spaces() else None


def lookup(arg: str | Path) -> Path | None:
    """The built-in config `arg` names when no such file exists: `mnist` or `mnist.yaml`, never a path
    with a directory in it (a file path always wins)."""
    text = str(arg)
    if Path(text).exists() or "/" in text or "\\" in text:
        return None
    stem = text[:-5] if text.endswith(".yaml") else text
    root = configs_dir()
    if root is None or stem not in names():
        return None
    return root / f"{stem}.yaml"


def resolve(arg: str | Path) -> Path:
    """The config file for `arg`: the file itself, or the built-in config of that name; a name that is
    neither is one line listing the built-in names."""
    found = lookup(arg)
    if found is not None:
        return found
    path = Path(arg)
    if not path.exists() and "/" not in str(arg) and not str(arg).endswith((".yaml", ".yml")):
        raise ConfigError(f"{arg}: no such config file, and no built-in config of that name; built-in: "
                          f"{', '.join(names()) or 'none in this install'} (bpcli configs lists them)")
    return path


@dataclass(frozen=True)
class Builtin:
    name: str
    path: Path
    summary: str  # the config's first comment line
    reaches: str  # its `# reaches:` line: what a run of it measured


def listing() -> list[Builtin]:
    """Every built-in config with the first line of its header comment and what it reaches."""
    root = configs_dir()
    out = []
    for name in names():
        path = root / f"{name}.yaml"  # type: ignore[operator]
        comments = [line.lstrip("# ").strip() for line in path.read_text(encoding="utf-8").splitlines()
                    if line.startswith("#")]
        reaches = next((c.removeprefix("reaches:").strip() for c in comments if c.startswith("reaches:")), "")
        out.append(Builtin(name, path, comments[0] if comments else "", reaches))
    return out


# -- datasets ------------------------------------------------------------------------------------------

def user_data_dir() -> Path:
    """Where this user's datasets live by default (XDG on Linux, the platform's own place elsewhere)."""
    import platformdirs

    return platformdirs.user_data_path("bpcli", appauthor=False) / "datasets"


def shipped_mnist() -> Path | None:
    """The MNIST directory inside the package, if this install has all four files."""
    root = _package_dir("_mnist", "data/mnist")
    if root is None or not all((root / name).is_file() for name in MNIST_FILES):
        return None
    return root


@dataclass(frozen=True)
class Place:
    """One place `data.path` is looked for, in order, and whether the dataset is there."""

    what: str
    path: Path
    found: bool


def places(data_path: str, config_dir: Path | None, from_set: bool = False) -> list[Place]:
    """Every place a data path is looked for, in order (see the module docstring)."""
    p = Path(data_path).expanduser()
    if p.is_absolute():
        return [Place("as written", p, p.exists())]
    here = [("in the current directory", Path.cwd() / p)]
    beside = [("next to the config", config_dir / p)] if config_dir is not None else []
    written = here + beside if from_set else beside + here
    out = [Place(what, path.resolve(), path.exists()) for what, path in written]
    user = user_data_dir() / p.name
    out.append(Place("in the per-user data directory", user, user.exists()))
    if p.name == "mnist":
        shipped = shipped_mnist()
        if shipped is not None:
            out.append(Place("shipped with bpcli", shipped, True))
    return out
