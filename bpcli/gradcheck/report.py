"""The results of a gradient check as plain data: per group, per path, and for a whole run; the
comparison rule that turns errors into verdicts; the JSON file.

Comparison. For a probe (an entry, or a direction) err = |g - g_num| and rel = err / max(|g|, |g_num|,
atol / rtol). The probe passes when err <= tol, with

    tol = max(rtol max(|g|, |g_num|), atol) + extra

which for extra = 0 is the same as rel <= rtol. The floor atol / rtol keeps entries whose derivative is
(near) zero from failing on rounding noise; an entry whose derivative is exactly zero (a pixel that is
0 in every example) gets g_num = 0 exactly. `extra` is the rounding allowance of a low-precision path
(see `rounding`), per probe; 0 in float64.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from bpcli.activations import Array
from bpcli.errors import UsageError
from bpcli.files import TMP_SUFFIX, refuse_to_replace, write_atomic
from bpcli.gradcheck.numerical import Probes


@dataclass
class Worst:
    """The checked entry with the largest err / tol: w^l_jk, or b^l_j (k is None). For the directional
    method j numbers the direction and k is None."""

    l: int
    j: int
    k: int | None
    backprop: float
    numerical: float


@dataclass
class GroupResult:
    """The comparison for one parameter group, w^l or b^l."""

    name: str                     # "w^2", "b^2", ...
    l: int
    kind: Literal["w", "b"]
    shape: tuple[int, ...]        # (n_l, n_(l-1)) or (n_l,)
    checked: int                  # entries (directional: directions) compared, kinks included
    max_grad: float               # max |g| over the whole group
    rms_grad: float               # sqrt(mean g^2) over the whole group
    max_abs_error: float          # over the checked entries that are not kinks
    max_rel_error: float          # likewise; rel as in the module docstring
    worst: Worst | None           # None when nothing but kinks was checked
    kinks: int = 0                # entries whose perturbation crosses a ReLU kink
    failures: int = 0             # entries with err > tol
    note: str = ""
    max_tol_ratio: float = 0.0    # max err / tol over the checked entries that are not kinks (<= 1: pass)

    @property
    def passed(self) -> bool:
        return self.failures == 0

    @property
    def verdict(self) -> Literal["pass", "fail", "kink"]:
        """fail if any entry fails; kink if none fails but kinks were kept out; else pass."""
        if self.failures:
            return "fail"
        return "kink" if self.kinks else "pass"


@dataclass
class GradcheckResult:
    """One path's comparison, group by group, with the setting it was made in."""

    method: str
    eps: float                    # h
    rtol: float
    atol: float
    atol_auto: bool               # atol is the default noise floor, not given
    cost: float                   # C at the checked point
    examples: int                 # m, the batch C averages over
    sizes: tuple[int, ...]
    groups: list[GroupResult]
    notes: list[str] = field(default_factory=list)
    path: str = "reference"       # which gradient: "reference", "training"
    dtype: str = "float64"        # what it was computed in
    training: dict[str, object] | None = None  # the training path's setting (workspace rows, scale, ...)
    rounding: dict[str, float] | None = None    # how the rounding allowance was derived (low precision)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.groups)

    @property
    def failed_groups(self) -> list[str]:
        return [g.name for g in self.groups if not g.passed]

    @property
    def checked(self) -> int:
        return sum(g.checked for g in self.groups)

    @property
    def kinks(self) -> int:
        return sum(g.kinks for g in self.groups)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready data; non-finite floats become null."""
        groups = []
        for g in self.groups:
            d = asdict(g)
            d["shape"] = list(g.shape)
            d["passed"] = g.passed
            d["verdict"] = g.verdict
            groups.append(d)
        data = {
            "path": self.path, "dtype": self.dtype, "passed": self.passed, "method": self.method,
            "eps": self.eps, "rtol": self.rtol, "atol": self.atol, "atol_auto": self.atol_auto,
            "cost": self.cost, "examples": self.examples, "sizes": list(self.sizes),
            "training": self.training, "rounding": self.rounding,
            "checked": self.checked, "kinks": self.kinks, "failed_groups": self.failed_groups,
            "notes": list(self.notes), "groups": groups,
        }
        return _finite_or_none(data)  # type: ignore[return-value]


@dataclass
class Report:
    """A whole check: one result per path, all at the same point with the same probes, and the
    notes they share (where the network and the batch came from, why the batch has its size)."""

    results: list[GradcheckResult]
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def to_dict(self) -> dict[str, object]:
        first = self.results[0]
        data = {
            "passed": self.passed, "method": first.method, "eps": first.eps, "cost": first.cost,
            "examples": first.examples, "sizes": list(first.sizes), "notes": list(self.notes),
            "failed": {r.path: r.failed_groups for r in self.results},
            "paths": {r.path: r.to_dict() for r in self.results},
        }
        return _finite_or_none(data)  # type: ignore[return-value]


def _finite_or_none(v: object) -> object:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite_or_none(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite_or_none(x) for x in v]
    return v


# -- comparison -----------------------------------------------------------------------------------------


def summarize(
    name: str, l: int, kind: Literal["w", "b"], g: Array, probes: Probes, rtol: float, atol: float,
    extra: Array | float = 0.0,
) -> GroupResult:
    """Compare the gradient g of one group with its probes: errors, the worst probe, failures.
    `extra`: the per-probe rounding allowance (P,) of a low-precision path, or 0."""
    g_bp, g_num, kink = probes.project(g), probes.numerical, probes.kink
    err = np.abs(g_bp - g_num)
    size = np.maximum(np.abs(g_bp), np.abs(g_num))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        rel = err / np.maximum(size, atol / rtol)
        tol = np.maximum(rtol * size, atol) + extra
        ratio = err / tol
    zero = err == 0                                 # an exactly zero derivative matched exactly (0/0)
    rel = np.where(zero, 0.0, np.where(np.isnan(rel), np.inf, rel))    # a NaN anywhere is a failure
    ratio = np.where(zero, 0.0, np.where(np.isnan(ratio), np.inf, ratio))
    ok = ~kink
    failures = int((ok & ~(ratio <= 1.0)).sum())
    worst = None
    if ok.any():
        i = int(np.argmax(np.where(ok, ratio, -1.0)))
        j, k = probes.position(i)
        worst = Worst(l, j, k, float(g_bp[i]), float(g_num[i]))
    return GroupResult(
        name=name, l=l, kind=kind, shape=tuple(g.shape), checked=len(g_bp),
        max_grad=float(np.abs(g).max(initial=0.0)), rms_grad=float(np.sqrt(np.mean(g * g))) if g.size else 0.0,
        max_abs_error=float(err[ok].max(initial=0.0)), max_rel_error=float(rel[ok].max(initial=0.0)),
        worst=worst, kinks=int(kink.sum()), failures=failures, max_tol_ratio=float(ratio[ok].max(initial=0.0)),
    )


def misshapen(name: str, l: int, kind: Literal["w", "b"], shape: tuple[int, ...], g: Array | None) -> GroupResult:
    """A group whose gradient is missing or has the wrong shape: failed without comparing."""
    got = "no gradient" if g is None else f"gradient of shape {g.shape}"
    size = math.prod(shape)
    return GroupResult(name, l, kind, tuple(shape), size, math.nan, math.nan, math.inf, math.inf,
                       None, failures=size, note=f"{got}, expected {tuple(shape)}", max_tol_ratio=math.inf)


# -- the JSON file ------------------------------------------------------------------------------------


def check_writable(path: str | Path, force: bool = False) -> None:
    """Refuse, before any work, a --json path that cannot be written: its directory must exist and
    take a new file (tried with a temporary file of the kind `write_atomic` makes, then removed), and an
    existing file is replaced only with --force."""
    path = Path(path)
    refuse_to_replace(path, force, "--json")
    if path.is_dir():
        raise UsageError(f"--json {path}: is a directory; give a file name")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    except OSError as e:
        raise UsageError(f"--json {path}: cannot write ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(tmp)


def write_json(path: str | Path, report: Report) -> None:
    try:
        write_atomic(path, (json.dumps(report.to_dict(), indent=2) + "\n").encode())
    except OSError as e:
        raise UsageError(f"--json {path}: cannot write ({e.strerror or e})") from None
