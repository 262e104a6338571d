"""The search space of `bpcli sweep`: which config keys to vary and how, read from YAML and validated
like a config (bpcli/config.py): each problem is one line naming the file, line and field.

    objective: val_accuracy   # val_accuracy (maximized, the default) | val_loss (minimized)
    trials: 16                # trials to finish: complete, pruned, or failed for good
    sampler: tpe              # tpe | grid | random; or {name: tpe, startup_trials: 10, seed: 0}
    pruner: median            # median | none; or {name: median, startup_trials: 5, min_epochs: 1}
    params:                   # dotted config keys, each with one of:
      training.learning_rate: {loguniform: [0.01, 1.0]}   # lo > 0, sampled on a log scale
      training.optimizer.momentum: {uniform: [0.8, 0.95]}
      training.epochs: {int: [5, 15]}                     # both ends included
      model.layers: {choice: [[784, 100, 10], [784, 300, 10]]}

A value is judged by the config itself: every choice and both ends of every range are applied to the
base config as `--set KEY=VALUE` would be, and what the config refuses (a key it does not have, a value
out of its range) is refused here, at the line of the space file that asked for it. No Optuna here:
this module only describes; bpcli/sweep.py turns the description into Optuna's distributions.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bpcli import config as config_module
from bpcli import safe_yaml
from bpcli.config import Config
from bpcli.errors import ConfigError, shorten, show
from bpcli.resume import flatten

KINDS = ("choice", "uniform", "loguniform", "int")
OBJECTIVES = {"val_accuracy": "maximize", "val_loss": "minimize"}
SAMPLERS = ("tpe", "grid", "random")
PRUNERS = ("median", "none")
FIELDS = ("name", "objective", "trials", "sampler", "pruner", "params")
DEFAULT_TRIALS = 20
MAX_TRIALS = 100_000
# Keys a space may not vary: the sweep sets them for every trial.
FIXED = {
    "name": "the sweep names each trial (<sweep>-trial-NNN)",
    "training.threads": "each trial uses one BLAS thread; --jobs sets how many trials run at once",
}


@dataclass(frozen=True)
class Param:
    """One config key and how it varies: `values` are the options of a choice, else (lo, hi)."""

    key: str
    kind: str
    values: tuple[Any, ...]

    @property
    def encoded(self) -> bool:
        """A choice among lists or mappings: Optuna's categorical values must be scalars, so each option
        is stood for by its JSON text."""
        return self.kind == "choice" and any(isinstance(v, (list, dict)) for v in self.values)

    def options(self) -> list[Any]:
        """The values of a choice as the sampler sees them (JSON text for lists and mappings)."""
        return [json.dumps(v) for v in self.values] if self.encoded else list(self.values)

    def decode(self, value: Any) -> Any:
        """The config value for what the sampler picked."""
        return json.loads(value) if self.encoded and isinstance(value, str) else value

    def grid(self) -> list[Any]:
        """Every value, for the grid sampler (choice or int only)."""
        return self.options() if self.kind == "choice" else list(range(self.values[0], self.values[1] + 1))

    def grid_points(self) -> int:
        """len(self.grid()), without building it (an int range may be 10^12 long)."""
        return len(self.options()) if self.kind == "choice" else self.values[1] - self.values[0] + 1


MAX_GRID = 100_000  # points of a grid: three int ranges of 100,000 took 13.5 GB in 25 s before a kill


@dataclass(frozen=True)
class Sampler:
    name: str = "tpe"
    startup_trials: int = 10  # tpe: random trials before the model takes over (Optuna's default)
    seed: int | None = None  # trial n draws with seed + n: one job repeats exactly


@dataclass(frozen=True)
class Pruner:
    name: str = "median"
    startup_trials: int = 5  # prune only once this many trials are complete (Optuna's default)
    min_epochs: int = 1  # and only after a trial's epoch min_epochs


@dataclass(frozen=True)
class Space:
    name: str
    params: tuple[Param, ...]
    objective: str = "val_accuracy"
    trials: int = DEFAULT_TRIALS
    sampler: Sampler = field(default_factory=Sampler)
    pruner: Pruner = field(default_factory=Pruner)

    @property
    def direction(self) -> str:
        return OBJECTIVES[self.objective]

    def grid_size(self) -> int:
        return math.prod(p.grid_points() for p in self.params)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Space:
        """The space as a study recorded it (written by `to_json`)."""
        params = tuple(Param(p["key"], p["kind"], tuple(p["values"])) for p in data["params"])
        return cls(data["name"], params, data["objective"], int(data["trials"]), Sampler(**data["sampler"]),
                   Pruner(**data["pruner"]))


# -- trial configs -------------------------------------------------------------------------------------


def yaml_value(value: Any) -> str:
    """A value as `--set` text that reads back as the same value (1e-05 as 1.0e-05, which YAML 1.1 reads as
    a number, lists in flow style)."""
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 30).removesuffix("...\n").strip()


def overrides(params: tuple[Param, ...], picked: dict[str, Any]) -> list[str]:
    """`--set` items for the values a sampler picked ({key: sampler value})."""
    return [item for p in params if p.key in picked for item in settings(p.key, p.decode(picked[p.key]))]


def settings(key: str, value: Any) -> list[str]:
    """`--set` items for one value: a mapping (an option for a whole section, such as
    training.optimizer: {name: adam}) sets the fields it names and leaves the others as the config has them."""
    if isinstance(value, dict):
        return [f"{key}.{k}={yaml_value(v)}" for k, v in flatten(value).items()]
    return [f"{key}={yaml_value(value)}"]


def trial_config(base: Config, items: list[str], name: str, source: str = "<sweep>") -> Config:
    """The config of one trial: the base config with the trial's values, its name, and one BLAS thread."""
    return config_module.loads(base.to_yaml(), source=source,
                               overrides=[*items, "training.threads=1", f"name={name}"])


# -- reading and validating ----------------------------------------------------------------------------


def default_path(config_path: Path) -> Path:
    """Where a config's search space is when --space is not given: NAME-sweep.yaml beside it."""
    return Path(config_path).with_name(f"{Path(config_path).stem}-sweep.yaml")


def load(path: Path, base: Config) -> Space:
    """Read and validate the search space at `path` against the config it varies."""
    text = safe_yaml.read_text(Path(path), "search space file")
    return loads(text, str(path), base, default_name=Path(path).stem)


def loads(text: str, source: str, base: Config, default_name: str = "sweep") -> Space:
    document = safe_yaml.parse(text, source)
    raw, lines = document.data, document.lines

    def fail(dotted: str, message: str) -> ConfigError:
        line = lines.get(dotted)
        return ConfigError(f"{source}:{line}: {show(dotted)}: {message}" if line else f"{source}: {show(dotted)}: {message}")

    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a search space must be a YAML mapping (params:, objective:, trials:, sampler:, "
                          f"pruner:), got {_kind(raw)}")
    _known(raw, FIELDS, "", fail)
    name = raw.get("name", config_module.name_from(default_name, "sweep"))
    if not isinstance(name, str) or not re.fullmatch(config_module.NAME, name):
        raise fail("name", f"{shorten(name)} must be letters, digits, '.', '_' or '-', as it names the sweep "
                           "directory")
    objective = raw.get("objective", "val_accuracy")
    if objective not in OBJECTIVES:
        raise fail("objective", f"{shorten(objective)} is not one of {' | '.join(OBJECTIVES)}")
    trials = raw.get("trials", DEFAULT_TRIALS)
    if not _is_int(trials) or not 0 < trials <= MAX_TRIALS:
        raise fail("trials", f"expected a whole number from 1 to {MAX_TRIALS:,}, got {shorten(trials)}")
    sampler = Sampler(**_section(raw.get("sampler", "tpe"), "sampler", SAMPLERS, Sampler, fail))
    pruner = Pruner(**_section(raw.get("pruner", "median"), "pruner", PRUNERS, Pruner, fail))
    if "startup_trials" in _mapping(raw.get("sampler")) and sampler.name != "tpe":
        raise fail("sampler.startup_trials", f"applies to the tpe sampler only, not {sampler.name}")
    if base.data.validation_size == 0:
        raise ConfigError(f"{source}: the config has no validation set to score the trials (data.validation_size is "
                          "0); give it some examples")
    params = _params(raw.get("params"), base, lines, fail)
    space = Space(name, params, objective, trials, sampler, pruner)
    if sampler.name == "grid":
        for p in params:
            if p.kind not in ("choice", "int"):
                raise fail(f"params.{p.key}", f"the grid sampler needs choice or int for every key, not {p.kind}")
        if space.grid_size() > MAX_GRID:  # Optuna's grid sampler holds every point in memory
            raise fail("params", f"the grid has {space.grid_size():,} points, more than the {MAX_GRID:,} the grid "
                                 "sampler can hold; use the random or tpe sampler for a space this large")
    return space


def _params(raw: Any, base: Config, lines: dict[str, int], fail: Any) -> tuple[Param, ...]:
    if not isinstance(raw, dict) or not raw:
        raise fail("params", "expected a mapping of the config keys to vary, e.g. training.learning_rate: "
                             f"{{loguniform: [0.01, 1.0]}}; got {_kind(raw) if raw != {} else 'none'}")
    known = flatten(base.to_dict())
    sections = {k.rsplit(".", i)[0] for k in known for i in range(1, k.count(".") + 1)}
    out = []
    for key, spec in raw.items():
        dotted = f"params.{key}"
        if not isinstance(key, str) or (key not in known and key not in sections):
            close = difflib.get_close_matches(str(key)[:100], sorted(known), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise fail(dotted, f"not a config key{hint}")
        if key in FIXED:
            raise fail(dotted, f"cannot be varied: {FIXED[key]}")
        param = _param(key, spec, dotted, fail)
        if key in sections and (param.kind != "choice" or not all(isinstance(v, dict) for v in param.values)):
            raise fail(f"{dotted}.{param.kind}", "this key is a section: vary it with a choice of mappings of its "
                                                  "fields, e.g. {choice: [{name: sgd}, {name: adam}]}")
        if param.kind == "choice" and isinstance(known.get(key), float):
            # YAML 1.1 reads 1e-5 (no dot) as text; the config would take it as the number it plainly is.
            param = Param(key, "choice", tuple(_number(v) if isinstance(v, str) and _number(v) is not None else v
                                               for v in param.values))
        _judge(param, base, fail)
        out.append(param)
    return tuple(out)


def _param(key: str, spec: Any, dotted: str, fail: Any) -> Param:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise fail(dotted, f"expected one of {', '.join(KINDS)}, e.g. {{uniform: [0.8, 0.95]}}; got "
                           f"{_kind(spec) if not isinstance(spec, dict) else 'a mapping of ' + str(len(spec)) + ' keys'}")
    kind, values = next(iter(spec.items()))
    at = f"{dotted}.{kind}"
    if kind not in KINDS:
        close = difflib.get_close_matches(str(kind)[:100], KINDS, n=1)
        raise fail(at, f"unknown kind{f'; did you mean {close[0]!r}?' if close else ''} (one of {', '.join(KINDS)})")
    if kind == "choice":
        if not isinstance(values, list) or not values:
            raise fail(at, f"expected a non-empty list of values, got {_kind(values) if values != [] else 'an empty list'}")
        seen = []
        for v in values:
            if v in seen:
                raise fail(at, f"{shorten(v)} is listed twice")
            seen.append(v)
        return Param(key, kind, tuple(values))
    if not isinstance(values, list) or len(values) != 2:
        raise fail(at, f"expected [lo, hi], got {shorten(values)}")
    ends = []
    for end, v in zip(("lo", "hi"), values):
        value = v if kind == "int" and _is_int(v) else _number(v) if kind != "int" else None
        if value is None:
            raise fail(at, f"{end} must be {'a whole number' if kind == 'int' else 'a finite number'}, got {shorten(v)}")
        ends.append(value)
    lo, hi = ends
    if lo >= hi:
        raise fail(at, f"an empty range: lo ({lo}) must be below hi ({hi})")
    if kind == "loguniform" and lo <= 0:
        raise fail(at, f"lo must be > 0 on a log scale, got {lo}")
    return Param(key, kind, (lo, hi))


def _judge(p: Param, base: Config, fail: Any) -> None:
    """Refuse a value the config would refuse: each option of a choice, both ends of a range."""
    at = f"params.{p.key}.{p.kind}"
    for value in p.values:
        try:
            cfg = trial_config(base, settings(p.key, value), base.name)
        except ConfigError as e:
            detail = str(e).removeprefix("--set: ").removeprefix(f"{p.key}: ")
            what = "value" if p.kind == "choice" else ("lo" if value == p.values[0] else "hi")
            raise fail(at, f"{what} {shorten(value)} is refused by the config: {detail}") from None
        if cfg.data.validation_size == 0:
            raise fail(at, f"{shorten(value)} leaves no validation set, which scores the trials")


def _section(value: Any, name: str, names: tuple[str, ...], cls: type, fail: Any) -> dict[str, Any]:
    """A sampler or pruner: its name alone, or a mapping of its name and settings."""
    raw = {"name": value} if isinstance(value, str) else value
    if not isinstance(raw, dict):
        raise fail(name, f"expected one of {' | '.join(names)} or a mapping with name:, got {_kind(value)}")
    fields = [f for f in cls.__dataclass_fields__]
    _known(raw, fields, f"{name}.", fail)
    if raw.get("name") not in names:
        at = f"{name}.name" if isinstance(value, dict) else name
        raise fail(at, f"{shorten(raw.get('name'))} is not one of {' | '.join(names)}")
    for key in fields[1:]:
        if key in raw and not (_is_int(raw[key]) and raw[key] >= (1 if key == "min_epochs" else 0)):
            raise fail(f"{name}.{key}", f"expected a whole number >= {1 if key == 'min_epochs' else 0}, got "
                                        f"{shorten(raw[key])}")
    return raw


def _known(raw: dict[str, Any], names: Any, prefix: str, fail: Any) -> None:
    for key in raw:
        if key not in names:
            close = difflib.get_close_matches(str(key)[:100], list(names), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known fields: {', '.join(names)}"
            raise fail(f"{prefix}{key}", f"unknown field{hint}")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> float | None:
    """A finite number as a float, or None; like the config, text that is plainly a number counts (YAML 1.1
    reads 1e-5, without a dot, as a string)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return None
    try:
        value = float(v)
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
             float: "a number", type(None): "nothing (null)"}
    return names.get(type(value), type(value).__name__)
