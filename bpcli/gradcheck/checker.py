"""The check itself: numerical derivatives of C once, compared with every subject's gradient.

`check_subjects` works on any subjects (the protocol in `subject`); `check_paths` builds bpcli's own
two, the reference path and the training path, at one point; `check` is one path of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from bpcli.activations import Array
from bpcli.errors import UsageError
from bpcli.gradcheck import rounding
from bpcli.gradcheck.numerical import DEFAULT_EPS, DEFAULT_RTOL, METHODS, Probes, default_atol, probe
from bpcli.gradcheck.report import GradcheckResult, GroupResult, Report, misshapen, summarize
from bpcli.gradcheck.subject import GradientFn, ReferenceSubject, Subject, TrainingSetup, TrainingSubject
from bpcli.network import Network

Method = Literal["central", "complex", "directional"]
PATHS: tuple[str, ...] = ("reference", "training")
MAX_EPS = 0.1


def check(
    net: Network,
    x: Array,
    y: Array,
    method: Method | str = "central",
    eps: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    entries: Literal["all"] | int = "all",
    seed: int = 0,
    gradient: GradientFn | None = None,
    workers: int | None = None,
    path: str = "reference",
    training: TrainingSetup | None = None,
) -> GradcheckResult:
    """Compare one path's gradient (default: backprop in float64, or `gradient`) with numerical
    derivatives of C for the batch (x, y). See `check_paths`."""
    return check_paths(net, x, y, (path,), training, method, eps, rtol, atol, entries, seed, gradient,
                       workers).results[0]


def check_paths(
    net: Network,
    x: Array,
    y: Array,
    paths: Sequence[str] = PATHS,
    training: TrainingSetup | None = None,
    method: Method | str = "central",
    eps: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    entries: Literal["all"] | int = "all",
    seed: int = 0,
    gradient: GradientFn | None = None,
    workers: int | None = None,
    on_group: Callable[[str], None] | None = None,
) -> Report:
    """Check bpcli's gradient along each of `paths` at one point.

    x (m, n_1) and y (m, n_L), one example per row. "reference": `gradient` (default: backprop in
    float64, no workspace, scale 1). "training": `Network.backward` as `Trainer.run_epoch` calls it,
    as `training` describes. Given `training`, the point is the network and batch in the training
    dtype (what training holds), for every path, so all paths share one set of numerical derivatives. `entries` is "all" or a number N of entries per group drawn at random (seeded by
    `seed`); for the directional method the number of random directions per group. eps, rtol and
    atol default to DEFAULT_EPS, DEFAULT_RTOL and `default_atol`. `workers` threads (default: the
    CPUs available) share the entry-by-entry work. `on_group(name)` is called as the numerical
    derivatives of each parameter group start.
    """
    unknown = [p for p in paths if p not in PATHS]
    if unknown or not paths:
        raise UsageError(f"unknown gradcheck path {unknown[0] if unknown else ''!r}; use {' or '.join(PATHS)}")
    if "training" in paths and training is None:
        raise UsageError("the training path needs the training settings (dtype, batch size, learning rate)")
    _check_options(net, method, eps, rtol, atol, entries)
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or len(x) == 0 or x.shape[1] != net.sizes[0] or y.shape != (len(x), net.sizes[-1]):
        raise UsageError(
            f"data of shape x {x.shape}, y {y.shape} does not fit layers {list(net.sizes)}: "
            f"need x (m, {net.sizes[0]}) and y (m, {net.sizes[-1]}) with m >= 1"
        )
    if training is not None:
        # The point training holds: parameters and batch in its dtype (exact in float64 afterwards),
        # whichever paths are checked, so that --path reference and the default check the same C.
        net, x, y = net.astype(training.dtype), x.astype(training.dtype), y.astype(training.dtype)
    subjects: list[Subject] = []
    for p in paths:
        if p == "reference":
            subjects.append(ReferenceSubject(net, x, y, gradient))
        else:
            assert training is not None
            subjects.append(TrainingSubject(net, x, y, training, seed))
    report = check_subjects(subjects, method, eps, rtol, atol, entries, seed, workers, on_group=on_group)
    for result, subject in zip(report.results, subjects):
        if isinstance(subject, TrainingSubject):
            s = subject.setup
            result.training = {"dtype": subject.dtype, "batch_size": s.batch_size,
                               "workspace_rows": subject.workspace_rows, "rows": subject.m,
                               "optimizer": s.optimizer, "eta": s.eta, "scale": s.scale}
        if any(not net.sigma(l).analytic for l in net.layers):
            result.notes.append("ReLU network: entries whose step moves a hidden z^l across 0 are kinks, "
                                "kept out of pass/fail")
    return report


def check_subjects(
    subjects: Sequence[Subject],
    method: Method | str = "central",
    eps: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    entries: Literal["all"] | int = "all",
    seed: int = 0,
    workers: int | None = None,
    seen: Callable[[Subject, list[Array | None], list[Probes]], None] | None = None,
    on_group: Callable[[str], None] | None = None,
) -> Report:
    """Compare each subject's gradient with numerical derivatives of its C. Subjects whose parameters
    equal those of an earlier one share its numerical derivatives (they are the same function at the
    same point by the protocol's contract only if their `cost` agrees; `check_paths` makes sure).
    `seen(subject, gradient, probes)`, if given, gets each subject's raw comparison (for a diagnosis
    that needs more than the per-group summary)."""
    h = DEFAULT_EPS[method] if eps is None else float(eps)
    rtol = DEFAULT_RTOL[method] if rtol is None else float(rtol)
    computed: list[tuple[list[Array], list[Probes]]] = []
    results = []
    for subject in subjects:
        params = subject.parameters()
        theta = [p.value for p in params]
        shared = next((probes for known, probes in computed if _same(known, theta)), None)
        if shared is None:
            shared = probe(subject, method, h, entries, np.random.default_rng(seed), workers, on_group)
            computed.append((theta, shared))
        cost = float(np.real(subject.cost(theta)))
        tol_atol = default_atol(method, h, cost) if atol is None else float(atol)
        allowance = _rounding_allowance(subject, shared, seed)
        gradient = subject.gradient()
        if seen is not None:
            seen(subject, gradient, shared)
        groups: list[GroupResult] = []
        for p, g, pr, extra in zip(params, gradient, shared, allowance):
            if g is None or g.shape != p.value.shape:
                groups.append(misshapen(p.name, p.l, p.kind, p.value.shape, g))
            else:
                groups.append(summarize(p.name, p.l, p.kind, g, pr, rtol, tol_atol, extra))
        result = GradcheckResult(method, h, rtol, tol_atol, atol is None, cost, _examples(subject), _sizes(params),
                                 groups, path=subject.path, dtype=str(subject.dtype))
        if np.dtype(subject.dtype) != np.float64:
            result.rounding = {"unit_roundoff": rounding.unit_roundoff(np.dtype(subject.dtype)),
                               "runs": rounding.RUNS, "kappa": rounding.KAPPA}
        results.append(result)
    return Report(results)


def _rounding_allowance(subject: Subject, probes: list[Probes], seed: int) -> list[Array | float]:
    """Per probe, KAPPA times the RMS of the subject's simulated rounding deviations (projected onto
    the probes) plus the underflow floor; 0 for a float64 subject."""
    model = subject.rounding(rounding.RUNS, np.random.default_rng([seed, 24]))
    if model is None:
        return [0.0] * len(probes)
    squares = [np.zeros(len(pr.numerical)) for pr in probes]
    for deviation in model.deviations:
        for acc, pr, d in zip(squares, probes, deviation):
            acc += pr.project(d) ** 2
    return [rounding.KAPPA * np.sqrt(acc / rounding.RUNS) + model.floor for acc in squares]


def _check_options(net: Network, method: str, eps: float | None, rtol: float | None, atol: float | None,
                   entries: Literal["all"] | int) -> None:
    check_settings(method, eps, rtol, atol, entries)
    if method == "complex":
        kinked = sorted({net.sigma(l).name for l in net.layers if not net.sigma(l).analytic})
        if kinked:
            raise UsageError(
                f"--method complex needs analytic activations, and {', '.join(kinked)} is not (it has a kink "
                "and no complex extension); use --method central or directional, which report ReLU kinks"
            )


def check_settings(method: str, eps: float | None, rtol: float | None, atol: float | None,
                   entries: Literal["all"] | int) -> None:
    """Refuse a method, step, tolerance or sample size that cannot give a meaningful verdict (--atol inf
    passed any gradient; --entries 0 passed on no entry), for bpcli's network and a learner's alike."""
    if method not in METHODS:
        raise UsageError(f"unknown gradcheck method {method!r}; use one of {', '.join(METHODS)}")
    if eps is not None and not (math.isfinite(eps) and eps > 0):
        raise UsageError(f"--eps must be a positive number, got {eps}")
    if eps is not None and eps > MAX_EPS:  # 1e308 overflowed θ ± h and reported a wrong gradient (exit 1)
        raise UsageError(f"--eps {eps:g}: a step this large measures a secant, not a derivative; use at most "
                         f"{MAX_EPS:g} (default {DEFAULT_EPS[method]:g})")
    if rtol is not None and not (math.isfinite(rtol) and rtol > 0):
        raise UsageError(f"--rtol must be a positive number, got {rtol}")
    if atol is not None and not (math.isfinite(atol) and atol >= 0):
        raise UsageError(f"--atol must be a number >= 0, got {atol}")
    if entries != "all" and (isinstance(entries, bool) or not isinstance(entries, int) or entries < 1):
        raise UsageError(f"--entries must be 'all' or a positive whole number, got {entries!r}")


def _same(a: list[Array], b: list[Array]) -> bool:
    return len(a) == len(b) and all(p.shape == q.shape and np.array_equal(p, q) for p, q in zip(a, b))


def _examples(subject: Subject) -> int:
    layered = subject.layered()
    return len(layered.x) if layered is not None else 0


def _sizes(params: list[object]) -> tuple[int, ...]:
    """n_1..n_L from the weight shapes (n_l, n_(l-1)) of w^2..w^L."""
    ws = [p.value.shape for p in params if p.kind == "w"]  # type: ignore[attr-defined]
    return tuple([ws[0][1]] + [s[0] for s in ws]) if ws else ()
