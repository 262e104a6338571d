"""`check_gradients`: a learner's own network checked from Python, for their tests:

    from bpcli import check_gradients
    assert check_gradients(Network([6, 5, 4, 3])).passed

Also what `bpcli gradcheck --model` runs. The report is bpcli's gradient-check report with, besides
`passed` and the per-group results, the diagnosis by equation and the forward-pass comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bpcli.activations import Array
from bpcli.errors import UsageError
from bpcli.gradcheck import diagnose as diagnosis_module
from bpcli.gradcheck.checker import check_settings, check_subjects
from bpcli.gradcheck.diagnose import Diagnosis, Fit
from bpcli.gradcheck.forward import Forward, compare
from bpcli.gradcheck.load import batch_for, default_batch
from bpcli.gradcheck.numerical import Probes
from bpcli.gradcheck.report import GradcheckResult, GroupResult, Report
from bpcli.gradcheck.subject import Subject
from bpcli.gradcheck.user import BookSubject, FunctionSubject, UserSubject
from bpcli.gradcheck.user_load import Model, build, load_model


@dataclass
class UserReport(Report):
    """A check of a learner's network: one result (path "yours"), plus what it points to."""

    model: str = ""
    style: str = ""
    diagnosis: Diagnosis | None = None
    forward: Forward | None = None
    user_notes: list[str] = field(default_factory=list)
    how: str = ""                 # where C and the gradient come from in their code

    @property
    def result(self) -> GradcheckResult:
        return self.results[0]

    @property
    def groups(self) -> list[GroupResult]:
        return self.result.groups

    @property
    def errors(self) -> dict[str, float]:
        """Max relative error per group: {"w^2": 3e-9, "b^2": ..., ...}."""
        return {g.name: g.max_rel_error for g in self.groups}

    def to_dict(self) -> dict[str, object]:
        data = super().to_dict()
        data.update(model=self.model, style=self.style,
                    diagnosis=None if self.diagnosis is None else self.diagnosis.to_dict(),
                    forward=None if self.forward is None else self.forward.to_dict())
        return data


def subject_for(model: Model, x: Array, y: Array) -> UserSubject:
    n_in, n_out = model.sizes[0], model.sizes[-1]
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0 or x.shape[1] != n_in or y.shape != (len(x), n_out):
        raise UsageError(f"data of shape x {x.shape}, y {y.shape} does not fit layers {list(model.sizes)}: "
                         f"need x (m, {n_in}) and y (m, {n_out}), one example per row")
    return BookSubject(model, x, y) if model.style == "book" else FunctionSubject(model, x, y)


def check_gradients(
    model: Any,
    x: Array | None = None,
    y: Array | None = None,
    *,
    sizes: Sequence[int] | None = None,
    method: Literal["central", "complex", "directional"] | str = "central",
    eps: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    entries: Literal["all"] | int = "all",
    batch: int | None = None,
    seed: int = 0,
) -> UserReport:
    """Check a learner's backprop against numerical derivatives of their own cost.

    model: a book-style network (instance, class or factory), a function-style module, or a spec string
    "PATH.py:NAME" / "module:NAME" (see `bpcli.gradcheck.user_load`; loading runs the code). A class,
    a factory and a function-style module take `sizes`. x (m, n_1) and y (m, n_L), one example per row;
    without them, `batch` (default: a small prime) seeded random examples. Their parameter arrays are
    perturbed in place and restored bit for bit. Raises `UserCodeError` for an exception in their code
    and `UsageError` for a model or data that does not fit.
    """
    check_settings(method, eps, rtol, atol, entries)
    if isinstance(model, Model):
        loaded = model
    elif isinstance(model, str):
        loaded = load_model(model, None, sizes, seed)
    else:
        loaded = build(model, getattr(model, "__name__", type(model).__name__), None, sizes, seed)
    notes: list[str] = []
    if x is None or y is None:
        m, why = default_batch(loaded.sizes) if batch is None else (batch, "")
        x, y, source = batch_for(loaded.sizes, "sigmoid" if loaded.style == "book" else "softmax", m, seed, None)
        notes.append(f"data: {source}" + (f"; {why}" if why else ""))
    subject = subject_for(loaded, x, y)
    try:
        if method == "complex":
            reason = subject.complex_support()
            if reason is not None:
                notes.append(f"complex step not possible: {reason}; fell back to central differences")
                method, eps, rtol = "central", None, None
        fits: list[Fit] = []

        def seen(_: Subject, gradient: list[Array | None], probes: list[Probes]) -> None:
            fits.extend(diagnosis_module.fit(g, p) for g, p in zip(gradient, probes))

        base = check_subjects([subject], method, eps, rtol, atol, entries, seed, workers=1, seen=seen)
        result = base.results[0]
        result.examples = subject.m
        result.sizes = loaded.sizes  # not from the weight shapes: theirs may be transposed
        result.notes.extend(subject.notes)
        forward = compare(subject)
    finally:
        subject.restore()
    style = "book style" if loaded.style == "book" else "function style"
    report = UserReport(base.results, notes, model=loaded.name, style=style,
                        diagnosis=diagnosis_module.diagnose(result.groups, fits, subject.m), forward=forward)
    if isinstance(subject, BookSubject):
        cost = "cost.fn(a^L, y)" if subject.has_cost else "1/2 ||a^L - y||^2 (the network has no cost.fn)"
        report.how = (f"C = mean over the batch of {cost}, a^L = feedforward(x); gradient = mean of "
                      "backprop(x, y), one example at a time")
    else:
        report.how = "C = loss(params, x, y), gradient = grad(params, x, y), on the whole batch"
    report.user_notes = [f"{s.name} is {s.where}" + (" (transposed: (n_(l-1), n_l))" if s.transposed else "")
                         for s in subject.slots]
    return report
