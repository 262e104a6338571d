"""The config schema, YAML loading and validation, and `--set key=value` overrides.

A config is data: it is read through `safe_yaml` only (SafeLoader, bounded size and alias expansion,
no duplicate keys), then checked field by field against the dataclasses below. Every problem becomes a
`ConfigError` whose one-line message names the field, the file and line where known (or `--set`), and
a "did you mean" for misspelt keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from bpcli import safe_yaml
from bpcli import builtin
from bpcli.errors import ConfigError, shorten, show

CONFIG_VERSION = 1


@dataclass(frozen=True)
class ModelConfig:
    layers: tuple[int, ...] = (784, 100, 10)
    activation: Literal["sigmoid", "tanh", "relu"] = "sigmoid"
    output: Literal["softmax", "sigmoid", "identity"] = "softmax"
    cost: Literal["cross_entropy", "quadratic"] = "cross_entropy"
    init: Literal["normal", "scaled_normal", "xavier", "he"] = "scaled_normal"


@dataclass(frozen=True)
class OptimizerConfig:
    name: Literal["sgd", "momentum", "adam"] = "sgd"
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8


# A run's or sweep's name, which becomes a directory name: letters and digits of any script (ünï, 日本),
# then also '.', '_', '-'; never '/', a space or a leading '.' (it must not climb out of runs/).
NAME = r"[^\W_][\w.-]*"


def name_from(stem: str, default: str) -> str:
    """A valid NAME from a file's stem: other characters become '-' (non-ASCII letters stay)."""
    return re.sub(r"[^\w.-]", "-", stem).lstrip(".-_") or default


MIN_LEARNING_RATE = 1e-10  # 1e-200 made the monitor divide by an underflowed 0 (and moves nothing)
MAX_EPOCHS = 100_000  # beyond this a run is a typo (10^25 was accepted); metrics.jsonl is read up to 64 MiB
MAX_THREADS = 1024  # BLAS thread pools are smaller than this on any machine


@dataclass(frozen=True)
class ScheduleConfig:
    name: Literal["constant", "step", "cosine"] = "constant"
    step_epochs: int = 10
    gamma: float = 0.1
    min_learning_rate: float = 0.0


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 0.1
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    l2: float = 0.0
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    seed: int = 0
    dtype: Literal["float32", "float64"] = "float32"
    threads: int = 0  # BLAS threads; 0: from the machine (bpcli/threads.py)


@dataclass(frozen=True)
class DataConfig:
    path: str = "data/mnist"
    validation_size: int = 10_000
    limit: int = 0
    verify: bool = True  # false accepts a dataset nothing vouches for; it is then called unverified


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    name: str = "config"

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain YAML-ready data (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# -- loading ---------------------------------------------------------------------------------------


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read, override and validate the config at `path`; a relative data.path becomes the directory it
    names (see `resolve_data_path`)."""
    path = builtin.resolve(path)  # a file, or a built-in config's name (`mnist`)
    cfg = loads(safe_yaml.read_text(path), source=str(path), overrides=overrides, name=path.stem)
    from_set = any(item.partition("=")[0].strip() == "data.path" for item in overrides)
    resolved = resolve_data_path(cfg.data.path, path.parent, from_set)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=resolved))


def resolve_data_path(data_path: str, config_dir: Path, from_set: bool = False) -> str:
    """A relative data path as the absolute path it names: written in a config file, it is looked for
    next to that file first, then in the current directory (so a config works from anywhere); typed
    with --set, in the current directory first, as the shell would; then, by its last component, in the
    per-user data directory and (for mnist) in bpcli's own copy. When it is nowhere, the first place is
    where it belongs, and the loader's error names it (a --set path stays as typed); for a config shipped
    with bpcli that is the per-user data directory, where `bpcli data download NAME` puts it (next to the
    shipped config is inside the installed package)."""
    p = Path(data_path).expanduser()
    if p.is_absolute():
        return str(p)
    # Then by the dataset's name: the per-user data directory, and MNIST shipped with bpcli (builtin).
    for place in builtin.places(data_path, config_dir, from_set):
        if place.found:
            return str(place.path)
    if from_set:
        return data_path
    if builtin.is_shipped(config_dir):
        return str(builtin.user_data_dir() / p.name)
    return str((config_dir / p).resolve())


def loads(
    text: str, source: str = "<config>", overrides: list[str] | tuple[str, ...] = (), name: str = "config"
) -> Config:
    """Parse and validate config text; `source` names it in messages."""
    document = safe_yaml.parse(text, source)
    raw, lines = document.data, document.lines
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config must be a YAML mapping (model:, training:, data:), got {_kind(raw)}")
    raw.setdefault("name", name_from(name, "config"))
    parsed = [(item, *parse_override(item)) for item in overrides]
    for item, keys, value in parsed:
        _apply_override(raw, item, keys, value)
    overridden = frozenset(".".join(keys) for _, keys, _ in parsed)
    return _build(Config, raw, "", _Where(source, lines, overridden))


def from_dict(raw: dict[str, Any], source: str = "<config>") -> Config:
    """Validate already-parsed config data (e.g. the copy stored in a checkpoint)."""
    return _build(Config, raw, "", _Where(source, {}))


def parse_override(item: str) -> tuple[list[str], Any]:
    """'training.epochs=3' -> (['training', 'epochs'], 3); the value is read as YAML."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {shorten(item)}: expected KEY=VALUE, e.g. --set training.epochs=3")
    # Text that is not YAML is taken as the string it is, and validation judges it.
    parsed = safe_yaml.parse_value(value, f"--set {show(key.strip(), 40)}") if value.strip() else ""
    return key.strip().split("."), parsed


def _apply_override(raw: dict[str, Any], item: str, keys: list[str], value: Any) -> None:
    node = raw
    for i, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {show(item)}: {show('.'.join(keys[: i + 1]))} is not a section")
        node = child
    node[keys[-1]] = value


# -- validation --------------------------------------------------------------------------------------


@dataclass
class _Where:
    source: str
    lines: dict[str, int]
    overridden: frozenset[str] = frozenset()

    def at(self, dotted: str) -> str:
        if any(dotted == key or dotted.startswith(key + ".") or dotted.startswith(key + "[")
               for key in self.overridden):
            return "--set"
        # A section the file does not have was made by `--set section.field=...`: blame that, not the file.
        if dotted not in self.lines and any(key.startswith(dotted + ".") for key in self.overridden):
            return "--set"
        # A list element (model.layers[1]) has no key of its own: point at its list's line.
        line = self.lines.get(dotted) or self.lines.get(dotted.split("[", 1)[0])
        return f"{self.source}:{line}" if line else self.source


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
             float: "a number", type(None): "nothing (null)"}
    return names.get(type(value), type(value).__name__)


def _fail(where: _Where, dotted: str, message: str) -> typing.NoReturn:
    raise ConfigError(f"{where.at(dotted)}: {show(dotted)}: {message}")


def _build(cls: type, raw: Any, prefix: str, where: _Where) -> Any:
    section = prefix.rstrip(".") or "config"
    if not isinstance(raw, dict):
        _fail(where, section, f"expected a mapping of fields, got {_kind(raw)}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            dotted = f"{prefix}{key}"
            close = difflib.get_close_matches(str(key)[:100], names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known fields: {', '.join(names)}"
            _fail(where, dotted, f"unknown field{hint}")
    values = {key: _convert(hints[key], raw[key], f"{prefix}{key}", where) for key in raw}
    obj = cls(**values)
    _check(obj, prefix, where)
    return obj


def _convert(hint: Any, value: Any, dotted: str, where: _Where) -> Any:
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, dotted + ".", where)
    if origin is Literal:
        choices = get_args(hint)
        if not isinstance(value, str) or value not in choices:
            # Only a short string can be a misspelling; str() of anything else could be huge.
            guess = value if isinstance(value, str) and len(value) <= 100 else ""
            close = difflib.get_close_matches(guess, [str(c) for c in choices], n=1)
            hint_text = f"; did you mean '{close[0]}'?" if close else ""
            _fail(where, dotted, f"{shorten(value)} is not one of {' | '.join(choices)}{hint_text}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            _fail(where, dotted, f"expected a list of integers such as [784, 100, 10], got {_kind(value)}")
        return tuple(_convert(int, v, f"{dotted}[{i}]", where) for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            _fail(where, dotted, f"expected true or false, got {_kind(value)} {shorten(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(where, dotted, f"expected an integer, got {_kind(value)} {shorten(value)}")
        return value
    if hint is float:
        if isinstance(value, str):
            # YAML 1.1 reads 1e-8 (no dot) as a string; accept what is plainly a number.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(where, dotted, f"expected a number, got {_kind(value)} {shorten(value)}")
        if isinstance(value, int):
            try:
                value = float(value)
            except OverflowError:  # an integer beyond the float range (YAML integers are unbounded)
                _fail(where, dotted, "must be a finite number, got an integer too large for a float")
        if not math.isfinite(value):
            _fail(where, dotted, f"must be a finite number, got {value}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            _fail(where, dotted, f"expected a string, got {_kind(value)} {shorten(value)}")
        return value
    raise TypeError(f"unsupported config type {hint!r}")  # a bug in the schema, not user input


def _check(obj: Any, prefix: str, where: _Where) -> None:
    """Value constraints that the types alone cannot say."""

    def need(ok: bool, name: str, message: str) -> None:
        if not ok:
            _fail(where, f"{prefix}{name}", message)

    if isinstance(obj, ModelConfig):
        need(len(obj.layers) >= 2, "layers", "needs at least two sizes: the input and the output, e.g. [784, 10]")
        for i, n in enumerate(obj.layers):
            need(n > 0, f"layers[{i}]", f"layer sizes must be positive, got {n}")
        need(not (obj.cost == "cross_entropy" and obj.output == "identity"), "cost",
             "cross_entropy needs a softmax or sigmoid output; use quadratic with an identity output")
    elif isinstance(obj, OptimizerConfig):
        need(0 <= obj.momentum < 1, "momentum", f"must be in [0, 1), got {obj.momentum}")
        need(0 <= obj.beta1 < 1, "beta1", f"must be in [0, 1), got {obj.beta1}")
        need(0 <= obj.beta2 < 1, "beta2", f"must be in [0, 1), got {obj.beta2}")
        need(obj.epsilon > 0, "epsilon", f"must be > 0, got {obj.epsilon}")
    elif isinstance(obj, ScheduleConfig):
        need(obj.step_epochs > 0, "step_epochs", f"must be > 0, got {obj.step_epochs}")
        need(0 < obj.gamma <= 1, "gamma", f"must be in (0, 1], got {obj.gamma}")
        need(obj.min_learning_rate >= 0, "min_learning_rate", f"must be >= 0, got {obj.min_learning_rate}")
    elif isinstance(obj, TrainingConfig):
        need(0 < obj.epochs <= MAX_EPOCHS, "epochs", f"must be in 1..{MAX_EPOCHS:,}, got {shorten(obj.epochs)}")
        need(obj.batch_size > 0, "batch_size", f"must be > 0, got {obj.batch_size}")
        need(MIN_LEARNING_RATE <= obj.learning_rate, "learning_rate",
             f"must be >= {MIN_LEARNING_RATE:g} (smaller steps change no float32 weight), got {obj.learning_rate}")
        need(obj.l2 >= 0, "l2", f"must be >= 0, got {obj.l2}")
        need(obj.seed >= 0, "seed", f"must be >= 0, got {obj.seed}")
        need(0 <= obj.threads <= MAX_THREADS, "threads",
             f"must be in 0..{MAX_THREADS} (0 = auto: the free physical cores), got {shorten(obj.threads)}")
        need(obj.schedule.name != "cosine" or obj.schedule.min_learning_rate <= obj.learning_rate,
             "schedule.min_learning_rate",
             f"{obj.schedule.min_learning_rate} is above learning_rate {obj.learning_rate}: the schedule would "
             "raise the rate it is meant to lower")
    elif isinstance(obj, Config):
        # The name becomes a directory name under runs/, so it must not be able to climb out of it.
        need(bool(re.fullmatch(NAME, obj.name)), "name",
             f"{shorten(obj.name)} must be letters, digits, '.', '_' or '-', as it names the run directory")
    elif isinstance(obj, DataConfig):
        need(bool(obj.path), "path", "must name a dataset directory or .npz file")
        need("\0" not in obj.path, "path", "holds a NUL character, which no file name can")
        need(obj.validation_size >= 0, "validation_size", f"must be >= 0, got {obj.validation_size}")
        need(obj.limit >= 0, "limit", f"must be >= 0 (0 means all training examples), got {obj.limit}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
