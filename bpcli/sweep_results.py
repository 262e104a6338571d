"""What a sweep has found, read from its study: the trials as rows (the live table, the summary sorted by
the objective, `--json`), the best trial's config written as YAML for `bpcli train`, and Optuna's
parameter importances. Reads and writes; never prints (bpcli/render/sweep.py draws)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bpcli.files import write_atomic
from bpcli.sweep import BEST, Sweep, config_for
from bpcli.sweep_space import Space

STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


@dataclass
class TrialRow:
    number: int
    state: str  # running | complete | pruned | failed (for good, with an error) | interrupted (runs again) | waiting
    params: dict[str, Any]  # config key -> the config value
    epochs: int  # epochs reported so far
    value: float | None  # complete: the objective; otherwise the best reported so far
    seconds: float | None
    note: str = ""  # why it failed, or which trial it runs again
    run_dir: str | None = None
    error: bool = False  # failed for good (not to be run again)
    again: int | None = None  # the trial that runs this interrupted one again
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the sampler's values

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "state": self.state, "params": self.params, "epochs": self.epochs,
                "value": self.value, "seconds": self.seconds, "note": self.note or None, "run_dir": self.run_dir}


@dataclass
class Results:
    name: str
    root: Path
    objective: str
    direction: str
    budget: int
    rows: list[TrialRow]  # by trial number
    best: TrialRow | None = None
    best_config: Path | None = None
    importances: dict[str, float] | None = None
    notes: list[str] = field(default_factory=list)

    def ranked(self) -> list[TrialRow]:
        """Complete trials best first, then pruned ones best first, then the rest by number."""
        sign = -1 if self.direction == "maximize" else 1

        def key(r: TrialRow) -> tuple[int, float, int]:
            group = {"complete": 0, "pruned": 1}.get(r.state, 2)
            value = sign * r.value if group < 2 and r.value is not None and not math.isnan(r.value) else math.inf
            return group, value, r.number

        return sorted(self.rows, key=key)

    def count(self, state: str) -> int:
        return sum(1 for r in self.rows if r.state == state)

    def to_json(self) -> dict[str, Any]:
        return {"sweep": self.name, "dir": str(self.root), "objective": self.objective, "direction": self.direction,
                "trials": self.budget, "best": self.best.to_json() if self.best else None,
                "best_config": str(self.best_config) if self.best_config else None,
                "importances": self.importances, "ranked": [r.to_json() for r in self.ranked()],
                "notes": self.notes}


def rows(study: Any, space: Space) -> list[TrialRow]:
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs["retry_of"]: t.number for t in trials if "retry_of" in t.user_attrs}
    best = max if space.direction == "maximize" else min
    now = datetime.now()
    out = []
    for t in trials:
        state = STATES.get(t.state.name, t.state.name.lower())
        if state == "failed" and "error" not in t.user_attrs:
            state = "interrupted"  # stopped, or its process lost: it runs again, as a new trial
        raw = dict(t.params) or dict(t.system_attrs.get("fixed_params", {}))
        params = {p.key: p.decode(raw[p.key]) for p in space.params if p.key in raw}
        reported = [v for v in t.intermediate_values.values() if not math.isnan(v)]
        value = t.value if state == "complete" else (best(reported) if reported else None)
        start, end = t.datetime_start, t.datetime_complete or (now if state == "running" else None)
        seconds = (end - start).total_seconds() if start and end else None
        out.append(TrialRow(t.number, state, params, len(t.intermediate_values), value, seconds,
                            _note(t, state, retried), t.user_attrs.get("run_dir"), "error" in t.user_attrs,
                            retried.get(t.number), raw))
    return out


def _note(t: Any, state: str, retried: dict[int, int]) -> str:
    again = f"; runs again as trial {retried[t.number]}" if t.number in retried else ""
    if "error" in t.user_attrs:
        return str(t.user_attrs["error"])
    if state == "interrupted":
        return ("stopped" if t.user_attrs.get("interrupted") else "its process was lost") + again
    if "retry_of" in t.user_attrs:
        return f"runs trial {t.user_attrs['retry_of']} again"
    return ""


def collect(sweep: Sweep, study: Any, importances: bool = False) -> Results:
    found = rows(study, sweep.space)
    complete = [r for r in found if r.state == "complete" and r.value is not None and not math.isnan(r.value)]
    pick = max if sweep.space.direction == "maximize" else min
    # The earliest of equal values: the trial that found it first.
    best = pick(sorted(complete, key=lambda r: r.number), key=lambda r: r.value) if complete else None  # type: ignore[arg-type,return-value]
    results = Results(sweep.name, sweep.root, sweep.space.objective, sweep.space.direction, sweep.budget, found, best)
    if best is not None and (sweep.root / BEST).is_file():
        results.best_config = sweep.root / BEST
    if importances:
        results.importances, note = param_importances(study, len(complete))
        if note:
            results.notes.append(note)
    return results


def write_best(sweep: Sweep, results: Results) -> Path | None:
    """best.yaml: the best trial's config, as that trial trained it (its name included), for `bpcli train`."""
    best = results.best
    if best is None:
        return None
    cfg = config_for(sweep, best.number, best.raw)
    what = "validation accuracy" if sweep.space.objective == "val_accuracy" else "validation loss"
    shown = f"{100 * best.value:.2f}%" if sweep.space.objective == "val_accuracy" else f"{best.value:.4f}"
    path = sweep.root / BEST
    header = (f"# The best trial of the sweep {sweep.name}: trial {best.number}, {what} {shown} (its best epoch).\n"
              f"# `bpcli train {path}` trains it again to the same numbers (same seed, bitwise).\n")
    write_atomic(path, (header + cfg.to_yaml()).encode())
    results.best_config = path
    return path


def param_importances(study: Any, complete: int) -> tuple[dict[str, float] | None, str | None]:
    """Optuna's parameter importances (its default evaluator), or why there are none yet."""
    if complete < 2:
        return None, "parameter importances need at least 2 complete trials"
    import optuna

    try:
        found = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError) as e:
        return None, f"parameter importances could not be computed ({e})"
    return {k: float(v) for k, v in found.items()}, None
