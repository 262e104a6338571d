"""Continuing a run from its directory alone: which config it continues with, and what may change.

A run directory is self-contained: its checkpoint stores the resolved config the run was started with
(`config.yaml` beside it is the readable copy). `bpcli train --resume RUN` therefore needs no CONFIG.
A CONFIG or `--set` given with `--resume` must describe the same run; the one change allowed is
`training.epochs`, to extend (or shorten, down to the epochs already done) a run, and the plan says
how that changes the learning-rate schedule.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bpcli import checkpoint as ckpt_io
from bpcli import config as config_module
from bpcli.config import Config
from bpcli.errors import UsageError, shorten

EXTENSIBLE = "training.epochs"


@dataclass
class ResumePlan:
    """What `train --resume` continues: the run directory, its checkpoint, the config to use (the saved
    one, with `training.epochs` possibly changed) and notes for the user about that change."""

    root: Path
    checkpoint: ckpt_io.Checkpoint
    config: Config
    notes: list[str] = field(default_factory=list)

    @property
    def epochs_done(self) -> int:
        return self.checkpoint.epoch

    @property
    def finished(self) -> bool:
        """All planned epochs are done (a checkpoint inside an epoch is never finished)."""
        return self.checkpoint.epoch >= self.config.training.epochs and not self.mid_epoch

    @property
    def mid_epoch(self) -> bool:
        return self.checkpoint.batch > 0


def command(root: Path | str) -> str:
    """The command that continues the run in `root`, quoted for a POSIX shell."""
    return f"bpcli train --resume {shlex.quote(str(root))}"


def run_root(resume: Path) -> Path:
    """The run directory of `--resume`: the directory itself, or the folder of a checkpoint file."""
    resume = Path(resume)
    return resume if resume.is_dir() else resume.parent


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{'training': {'epochs': 3}} -> {'training.epochs': 3}; lists stay values."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, child in value.items():
        out.update(flatten(child, f"{prefix}.{key}" if prefix else str(key)))
    return out


def differences(saved: Config, given: Config) -> list[tuple[str, Any, Any]]:
    """(dotted key, saved value, given value) for every field that differs; data paths are compared
    as the directories they name, so `data/mnist` and its absolute path are the same."""
    a, b = flatten(saved.to_dict()), flatten(given.to_dict())
    for side in (a, b):
        side["data.path"] = str(Path(side["data.path"]).expanduser().resolve())
    if b.get("training.threads") == 0:  # "auto" asks for what the run chose when it started (Trainer)
        b["training.threads"] = a.get("training.threads")
    return [(key, a.get(key), b.get(key)) for key in sorted(a.keys() | b.keys()) if a.get(key) != b.get(key)]


def plan(resume: Path, config_path: Path | None, overrides: list[str]) -> ResumePlan:
    """The plan for `train --resume RESUME [CONFIG] [--set ...]`, or a UsageError naming every field
    that would make it a different run."""
    root = run_root(resume)
    ckpt = ckpt_io.load(resume)
    saved = ckpt.config
    if config_path is None and not overrides:
        return ResumePlan(root, ckpt, saved)
    if config_path is not None:
        given = config_module.load(config_path, overrides)
        given = dataclasses.replace(given, name=saved.name)  # the run keeps its name
    else:
        given = config_module.loads(saved.to_yaml(), source=f"{root / 'config.yaml'}", overrides=overrides)
    changed = differences(saved, given)
    refused = [(k, s, g) for k, s, g in changed if k != EXTENSIBLE]
    if refused:
        fields = "; ".join(f"{k}: {shorten(s, 40)} in the run, {shorten(g, 40)} here" for k, s, g in refused[:6])
        more = f" and {len(refused) - 6} more" if len(refused) > 6 else ""
        raise UsageError(
            f"--resume {resume}: this would be a different run ({fields}{more}); continue it as it was with "
            f"`{command(root)}` (only training.epochs may change), or start a new run without --resume"
        )
    training = dataclasses.replace(saved.training, epochs=given.training.epochs)
    result = ResumePlan(root, ckpt, dataclasses.replace(saved, training=training))
    if changed:
        result.notes.append(_extension_note(result, saved.training.epochs))
    return result


def _extension_note(p: ResumePlan, before: int) -> str:
    """Say how changing the number of epochs changes the run, or refuse an impossible change."""
    after = p.config.training.epochs
    done = p.epochs_done + (1 if p.mid_epoch else 0)
    if after < done:
        raise UsageError(
            f"--set training.epochs={after}: the run has already {'started epoch' if p.mid_epoch else 'done'} "
            f"{done}; choose {done} or more"
        )
    schedule = p.config.training.schedule.name
    if schedule == "cosine":
        effect = (f"the cosine schedule now ends at epoch {after}, so the learning rate from epoch "
                  f"{p.epochs_done + 1} on is not what an uninterrupted {before}- or {after}-epoch run would use")
    else:
        effect = f"the {schedule} learning-rate schedule does not depend on the number of epochs, so it is unchanged"
    return f"training.epochs {before} -> {after}: the run continues to epoch {after}; {effect}"
