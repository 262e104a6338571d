"""Wiring for learners' own networks: `bpcli gradcheck --model PATH.py:NAME` (called from
`gradcheck_command`) and `bpcli explain --model`. Loading a model runs its code. Only parsing and wiring
live here: `bpcli.gradcheck.api` checks, `render.gradcheck_user` draws."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

from bpcli.cli import console, debugging
from bpcli.errors import BpcliError, UsageError, clip


@contextlib.contextmanager
def their_values(spec: str) -> Iterator[None]:
    """What bpcli does with the values a learner's network gives it (complex outputs, read-only or tuple
    weights, sizes of NaN, a cost bpcli has no equivalent of): an exception there comes from their
    network's values, so it is one line, exit 2, where it was 'internal error' (exit 4). --debug shows
    the traceback, for the rare case that it is bpcli's. NumPy's overflow warnings are silenced: an
    infinite or NaN gradient is reported in the verdict, not as lines of RuntimeWarning above it."""
    import numpy as np

    try:
        with np.errstate(all="ignore"):
            yield
    except (BpcliError, typer.Exit, KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001
        if debugging():
            raise
        raise UsageError(f"--model {spec}: bpcli cannot use what your network gave it ({type(e).__name__}: "
                         f"{clip(str(e), 120)}); check the types and shapes of its parameters and of what its "
                         "methods return (--debug shows where)") from None


def model_sizes(config_path: Optional[Path], overrides: list[str]) -> tuple[Any, Optional[list[int]]]:
    """The config (or None) and its model.layers, which build a class or a function-style model."""
    from bpcli import config as config_module

    if config_path is None:
        return None, None
    cfg = config_module.load(config_path, overrides)
    return cfg, list(cfg.model.layers)


def gradcheck_model(
    spec: str, model_args: Optional[str], config_path: Optional[Path], overrides: list[str],
    checkpoint: Optional[Path], path: str, batch: Optional[int], random_data: bool, method: str,
    eps: Optional[float], rtol: Optional[float], atol: Optional[float], entries: str, seed: Optional[int],
    json_path: Optional[Path], force: bool,
) -> None:
    from bpcli import gradcheck
    from bpcli.gradcheck import api, user_load
    from bpcli.render import gradcheck_user as view

    if checkpoint is not None:
        raise UsageError("--model checks your own network; --checkpoint is for bpcli's: give one of them")
    if path != "both":
        raise UsageError("--path chooses between bpcli's own gradient paths; --model checks your backprop")
    if entries != "all" and not entries.isdigit():
        raise UsageError(f"--entries {entries!r}: expected 'all' or a positive whole number")
    if seed is not None and seed < 0:
        raise UsageError(f"--seed {seed}: must be a whole number >= 0")
    if json_path is not None:
        gradcheck.check_writable(json_path, force)
    cfg, sizes = model_sizes(config_path, overrides)
    seed = seed if seed is not None else (cfg.training.seed if cfg is not None else 0)
    args = user_load.parse_args(model_args)
    with their_values(spec):
        model = user_load.load_model(spec, args, sizes, seed)
        x = y = None
        notes: list[str] = []
        if cfg is not None and not random_data:
            m, why = (batch, "") if batch is not None else gradcheck.default_batch(model.sizes)
            x, y, source = gradcheck.batch_for(model.sizes, "softmax", m, seed, cfg.data.path)
            notes.append(f"data: {source}" + (f"; {why}" if why else ""))
        report = api.check_gradients(model, x, y, sizes=model.sizes, method=method, eps=eps, rtol=rtol,
                                     atol=atol, entries="all" if entries == "all" else int(entries), batch=batch,
                                     seed=seed)
    report.notes[:0] = notes
    report.notes.append("loading a model runs its code: check only code you would run yourself")
    view.render(console, report)
    if json_path is not None:
        gradcheck.write_json(json_path, report)
    if not report.passed:
        raise typer.Exit(1)


def explain_model(spec: str, model_args: Optional[str], config_path: Optional[Path], overrides: list[str],
                  weight: Optional[str], seed: int = 0) -> None:
    """`bpcli explain --model SPEC --weight l,j,k`: one derivative traced beside bpcli's, on one
    seeded random example."""
    from bpcli import explain
    from bpcli.gradcheck import api, load, trace, user_load
    from bpcli.render import explain_user as view

    if weight is None:
        raise UsageError("explain --model traces one partial derivative: give --weight l,j,k")
    cfg, sizes = model_sizes(config_path, overrides)
    with their_values(spec):
        model = user_load.load_model(spec, user_load.parse_args(model_args), sizes, seed)
        picked = explain.parse_weight(weight, model.sizes)
        x, y, _ = load.batch_for(model.sizes, "sigmoid" if model.style == "book" else "softmax", 1, seed, None)
        subject = api.subject_for(model, x, y)
        try:
            traced = trace.trace(subject, picked)
        finally:
            subject.restore()
    view.render(console, model.name, traced, model.style)
