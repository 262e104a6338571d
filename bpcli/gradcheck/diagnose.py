"""Which backpropagation equation a failed check points to, from the pattern of failing groups.

The four equations (backprop-notes.md), and what a mistake in each does to the groups w^l, b^l:

    BP1  delta^L = grad_a C (.) sigma'(z^L)                   b^L wrong (dC/db^L is delta^L itself), and
                                                              then every earlier layer, since delta flows back
    BP2  delta^l = ((w^(l+1))^T delta^(l+1)) (.) sigma'(z^l)  the output layer right, earlier layers wrong
    BP3  dC/db^l = delta^l                                    every w right (so every delta is), some b wrong
    BP4  dC/dw^l = delta^l (a^(l-1))^T                        every b right (so every delta is), some w wrong

and one pattern outside them: every group off by the same constant factor c (the least-squares fit of
the gradient to the numerical derivatives, with a tiny residual in every group) is a scale: c = m is a
sum over the batch where C is its mean (the missing 1/m), c = -1 a flipped sign, c = 2 a lost 1/2. A
factor shared by the failing groups alone is reported with the equation the pattern names.

Pure compute: `diagnose` returns a `Diagnosis`, `render.gradcheck_user` prints it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from bpcli.activations import Array
from bpcli.gradcheck.numerical import Probes
from bpcli.gradcheck.report import GroupResult

# A group is "off by a constant" when the gradient minus c times the numerical derivative is below this
# fraction of the gradient: far above the rounding of a correct check (~1e-8), far below any real bug's.
CONSTANT_RESIDUAL = 1e-4
EQUATIONS = {
    "BP1": "delta^L = grad_a C (.) sigma'(z^L)",
    "BP2": "delta^l = ((w^(l+1))^T delta^(l+1)) (.) sigma'(z^l)",
    "BP3": "dC/db^l = delta^l",
    "BP4": "dC/dw^l = delta^l (a^(l-1))^T",
}


@dataclass
class Fit:
    """The gradient g of one group against its numerical derivatives g_num: g ~ factor * g_num."""

    factor: float | None      # (g . g_num) / (g_num . g_num); None if g_num is 0 or g is missing
    residual: float           # ||g - factor g_num|| / ||g||
    got_shape: tuple[int, ...] | None = None   # the gradient's shape, when it is not the group's


@dataclass
class Diagnosis:
    """What the failure pattern points to. `equation`: BP1..BP4, "scale" or "unclear"."""

    equation: str
    summary: str
    evidence: list[str] = field(default_factory=list)
    factor: float | None = None

    @property
    def formula(self) -> str:
        return EQUATIONS.get(self.equation, "")

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["formula"] = self.formula
        return d


def fit(g: Array | None, probes: Probes) -> Fit:
    if g is None or g.shape != probes.shape:
        return Fit(None, math.inf, None if g is None else tuple(g.shape))
    g_bp, g_num = probes.project(g), probes.numerical
    nn = float(g_num @ g_num)
    if nn == 0 or not np.isfinite(g_bp).all():
        return Fit(None, math.inf)
    c = float(g_bp @ g_num) / nn
    size = float(np.linalg.norm(g_bp))
    return Fit(c, float(np.linalg.norm(g_bp - c * g_num)) / size if size else math.inf)


def factor_phrase(c: float, m: int) -> str:
    """What a constant factor c between the gradient and the true one usually means."""
    def near(v: float) -> bool:
        return math.isclose(c, v, rel_tol=1e-6)
    if m > 1 and near(m):
        return (f"exactly m = {m}, the number of examples: the gradient sums over the batch where C is the "
                "mean (a missing 1/m)")
    if m > 1 and near(1 / m):
        return f"1/m = 1/{m}: divided by the number of examples once too often"
    if near(-1):
        return "-1: a flipped sign (y - a where the derivative of the cost is a - y)"
    if near(2):
        return "2: the derivative of 1/2 ||a - y||^2 is a - y; the 1/2 is missing from the cost or 2 added"
    if near(0.5):
        return "1/2: a factor 1/2 in the gradient that the cost does not have"
    return f"{c:.6g}: a constant scale in the gradient that the cost does not have"


def _common(fits: list[Fit]) -> float | None:
    """The factor all these groups share, if each is a clean multiple of its numerical derivative."""
    cs = [f.factor for f in fits]
    if not cs or any(c is None for c in cs) or any(f.residual > CONSTANT_RESIDUAL for f in fits):
        return None
    c0 = cs[0]
    assert c0 is not None
    return c0 if all(math.isclose(c, c0, rel_tol=1e-4) for c in cs if c is not None) else None


def diagnose(groups: list[GroupResult], fits: list[Fit], m: int) -> Diagnosis | None:
    """The equation the failing groups point to (None if every group passed). groups and fits are in
    the order w^2, b^2, ..., w^L, b^L; m is the number of examples C averages over."""
    failing = [g for g in groups if not g.passed]
    if not failing:
        return None
    L = max(g.l for g in groups)
    by = {(g.l, g.kind): (g, f) for g, f in zip(groups, fits)}
    bad = {(g.l, g.kind) for g in failing}
    names = ", ".join(g.name for g in failing)
    evidence = [f"fail: {names}; pass: {', '.join(g.name for g in groups if g.passed) or 'none'}"]
    for g, f in zip(groups, fits):
        if g.note:
            flipped = g.kind == "w" and f.got_shape == tuple(reversed(g.shape))
            evidence.append(f"{g.name}: {g.note}" + (" (the transpose: dC/dw^l = delta^l (a^(l-1))^T has the "
                                                      "shape of w^l)" if flipped else ""))

    everything = _common(fits)
    if everything is not None and len(failing) == len(groups):
        return Diagnosis("scale", f"every group is off by one constant factor, {everything:.6g}",
                         evidence + [f"gradient = {everything:.6g} x the numerical derivative in every group: "
                                     f"{factor_phrase(everything, m)}"], everything)

    shared = _common([by[k][1] for k in sorted(bad)])
    scaled = [f"the failing groups are all {shared:.6g} x the numerical derivative: {factor_phrase(shared, m)}"] \
        if shared is not None else []
    ws = {l for l, kind in bad if kind == "w"}
    bs = {l for l, kind in bad if kind == "b"}
    if (L, "b") in bad:
        earlier = sorted(l for l in ws | bs if l < L)
        flow = (f"earlier layers fail too ({', '.join(f'l = {l}' for l in earlier)}): each delta^l is computed from "
                "delta^L (BP2), so one wrong delta^L spoils them all" if earlier else
                "earlier layers pass, which a wrong delta^L would usually spoil too: check delta^L itself")
        return Diagnosis("BP1", "the output error delta^L is wrong (BP1)",
                         evidence + [f"b^{L} fails, and dC/db^L is delta^L itself", flow,
                                     "usual causes: the cost's derivative (a - y) without sigma'(z^L) for the "
                                     "quadratic cost, sigma' of a^L instead of z^L, y - a for a - y"] + scaled, shared)
    if not bs:
        layers = ", ".join(f"w^{l}" for l in sorted(ws))
        return Diagnosis("BP4", f"dC/dw^l = delta^l (a^(l-1))^T is wrong in {layers} (BP4)",
                         evidence + ["every b^l passes, so every delta^l is right (dC/db^l = delta^l); "
                                     f"only the step from delta^l to dC/dw^l fails, in {layers}",
                                     "usual causes: a^l or z^(l-1) in place of a^(l-1), a missing transpose, "
                                     "a sum over the batch without 1/m"] + scaled, shared)
    if not ws:
        layers = ", ".join(f"b^{l}" for l in sorted(bs))
        return Diagnosis("BP3", f"dC/db^l = delta^l is wrong in {layers} (BP3)",
                         evidence + ["every w^l passes, so every delta^l is right; only the biases fail, in "
                                     f"{layers}", "usual causes: summing delta over the wrong axis, a missing 1/m "
                                     "on the bias gradient alone, a stale or zeroed bias gradient"] + scaled, shared)
    if (L, "w") not in bad:
        top = max(ws | bs)
        return Diagnosis("BP2", f"the backward recursion is wrong: delta^{top} from delta^{top + 1} (BP2)",
                         evidence + [f"the output layer passes (w^{L}, b^{L}), so delta^L is right",
                                     f"b^{top} fails, so delta^{top} is wrong: it comes from "
                                     f"(w^{top + 1})^T delta^{top + 1} (.) sigma'(z^{top})",
                                     "usual causes: sigma' of a^l instead of z^l, w instead of w^T, the "
                                     "weights of the wrong layer"] + scaled, shared)
    return Diagnosis("unclear", "the failing groups fit no single equation",
                     evidence + [f"w^{L} fails while b^{L} passes (BP4 at the output) and earlier biases "
                                 "fail as well (BP2): more than one mistake, or one that is not in the "
                                 "four equations (the forward pass, the cost)"] + scaled, shared)

