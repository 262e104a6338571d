"""`bpcli data verify`: every file of a dataset checked as `train` would check it, one row each, and
a verdict that agrees with the rows, because it comes from the same `registry.identify`.

Exit codes: 0 when the dataset is verified (a known dataset, or every file matching its SHA256SUMS),
1 when a file does not match (a checksum mismatch, an unknown or a mixed dataset), 2 when a file is
missing or cannot be read as data. `write_checksums` records a SHA256SUMS for files that pass the
structure checks: the explicit opt-in for a dataset bpcli does not know.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from bpcli.data import source
from bpcli.data.idx import MAX_LABEL, parse_idx
from bpcli.data.registry import DATASETS, ROLES, FileFacts, FileVerdict, Identity, identify, judge
from bpcli.data.sums import Sums, read_sums, write_sums
from bpcli.errors import DataError

State = Literal["known", "listed", "unknown", "mismatch", "missing", "unusable"]
VERIFIED, MISMATCH, UNREADABLE = 0, 1, 2


@dataclass(frozen=True)
class FileCheck:
    """One file (or, for a .npz, one array) of the dataset and what became of it."""

    role: str
    name: str  # file name, or "data.npz: x_train"
    state: State
    size: int | None = None
    shape: tuple[int, ...] | None = None
    sha256: str | None = None  # of the content
    match: str = ""  # "MNIST" / "SHA256SUMS line 3"
    problem: str = ""  # why it is not usable or does not match


@dataclass(frozen=True)
class Report:
    path: Path
    checks: list[FileCheck]
    code: int  # VERIFIED, MISMATCH or UNREADABLE
    verdict: str
    identity: Identity | None = None
    sums: Path | None = None
    notes: list[str] = field(default_factory=list)


def verify_path(path: str | Path) -> Report:
    """Check the dataset at `path` (a directory of IDX files or a .npz); DataError (exit 2) only when
    there is nothing to check or its SHA256SUMS cannot be read."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path {path} not found; get a dataset with `bpcli data download mnist --dir {path}`")
    checks, facts, arrays = _read_all(path)
    sums_dir = path if path.is_dir() else path.parent
    sums = read_sums(sums_dir)
    verdicts = {v.facts.role: v for v in judge(list(facts.values()), sums)}
    checks = [_judged(c, verdicts.get(c.role), sums) for c in checks]
    checks = _label_checks(checks, arrays)
    bad = [c for c in checks if c.state in ("missing", "unusable")]
    sums_path = sums.path if sums else None
    unit = "arrays" if path.is_file() else "files"
    if bad:
        mismatched = sum(c.state == "mismatch" for c in checks)
        also = f", {mismatched} more {'does' if mismatched == 1 else 'do'} not match" if mismatched else ""
        return Report(path, checks, UNREADABLE, f"{len(bad)} of {len(checks)} {unit} cannot be used{also}; get a good "
                      "copy (`bpcli data download DATASET --dir DIR` for a known dataset)", sums=sums_path)
    try:
        identity = identify(list(verdicts.values()), sums, True, str(path))
    except DataError as e:
        return Report(path, checks, MISMATCH, str(e), sums=sums_path)
    if identity.status == "verified":
        how = "its SHA256SUMS and the published checksums" if sums else "published checksums"
        verdict = f"{identity.label}: all {len(checks)} {unit} match {how}"
    else:
        verdict = (f"all {len(checks)} {unit} match {sums_path.name if sums_path else 'SHA256SUMS'}, but they are "
                   "not a dataset bpcli knows: unverified dataset")
    return Report(path, checks, VERIFIED, verdict, identity, sums_path)


def write_checksums(path: str | Path) -> Path:
    """Record SHA256SUMS for the dataset at `path` once its files pass the structure checks; refuses when a
    file cannot be used, or disagrees with a line already in the list (it may be damaged)."""
    report = verify_path(path)
    if report.code == UNREADABLE:
        raise DataError(f"{path}: not recording checksums: {report.verdict}")
    path = Path(path)
    found = source.read(path)
    sums_dir = found.sums_dir
    sums = read_sums(sums_dir)
    verdicts = judge(list(found.facts.values()), sums)
    for v in verdicts:
        if v.listed is not None and not v.listed_ok:
            raise DataError(f"{sums_dir / 'SHA256SUMS'}:{v.listed.line}: {v.facts.file} does not match this line; "
                            "not overwriting a checksum the file fails (it may be damaged): get a good copy, or "
                            "delete the line if the new file is the one you want")
    digests = {v.facts.file: v.facts.sums_digest for v in verdicts if v.facts.sums_digest}
    return write_sums(sums_dir, digests, sums)


def _read_all(path: Path) -> tuple[list[FileCheck], dict[str, FileFacts], dict[str, np.ndarray]]:
    """Read every file, noting what cannot be read instead of stopping at the first."""
    checks: list[FileCheck] = []
    facts: dict[str, FileFacts] = {}
    arrays: dict[str, np.ndarray] = {}
    if path.is_file():  # a .npz: one file, read whole or refused in one line
        found = source.read(path)
        size = path.stat().st_size
        for role in ROLES:
            facts[role] = found.facts[role]
            arrays[role] = found.array(role)
            checks.append(FileCheck(role, f"{path.name}: {source.NPZ_KEYS[role]}", "unknown", size,
                                    tuple(arrays[role].shape), facts[role].content_sha256))
        return checks, facts, arrays
    for role in ROLES:
        located = source.locate(path, role)
        if located is None:
            there = [p for p in (path / source.FILES[role], path / source.raw_name(role)) if p.exists()]
            if there:  # a FIFO, device or directory by that name: there, but no data file
                checks.append(FileCheck(role, there[0].name, "unusable",
                                        problem="not a regular file (a directory, FIFO or device)"))
            else:
                checks.append(FileCheck(role, source.FILES[role], "missing", problem="missing"))
            continue
        try:
            f, content = source.read_idx_file(role, located)
        except DataError as e:
            checks.append(FileCheck(role, located.name, "unusable", _size(located), problem=_strip(e, located)))
            continue
        base = FileCheck(role, located.name, "unknown", _size(located), sha256=f.content_sha256)
        try:
            arrays[role] = parse_idx(content, str(located))
        except DataError as e:
            checks.append(replace(base, state="unusable", problem=_strip(e, located)))
            continue
        facts[role] = f
        checks.append(replace(base, shape=tuple(arrays[role].shape)))
    return checks, facts, arrays


def _judged(check: FileCheck, verdict: FileVerdict | None, sums: Sums | None) -> FileCheck:
    if verdict is None:
        return check
    titles = " or ".join(DATASETS[n].title for n in verdict.known)
    if sums is not None:
        if verdict.listed is None:
            return replace(check, state="mismatch", problem=f"not listed in {sums.path.name}")
        if not verdict.listed_ok:
            return replace(check, state="mismatch", problem=f"checksum mismatch: {sums.path.name} line "
                           f"{verdict.listed.line} says {verdict.listed.digest[:12]}...")
        return replace(check, state="known" if titles else "listed",
                       match=titles or f"{sums.path.name}:{verdict.listed.line}")
    return replace(check, state="known", match=titles) if titles else check


def _label_checks(checks: list[FileCheck], arrays: dict[str, np.ndarray]) -> list[FileCheck]:
    """Labels that cannot be used with their images make the label file unusable."""
    out = []
    for c in checks:
        if c.role.endswith("_labels") and c.role in arrays and c.state not in ("missing", "unusable"):
            problem = _label_problem(arrays[c.role], arrays.get(c.role.replace("labels", "images")))
            if problem:
                c = replace(c, state="unusable", problem=problem)
        out.append(c)
    return out


def _label_problem(labels: np.ndarray, images: np.ndarray | None) -> str:
    """Why a label file cannot be used with its image file, or ''."""
    if labels.ndim != 1:
        return f"labels must be one-dimensional, found shape {labels.shape}"
    if labels.dtype.kind not in "iu":
        return f"labels must be integers, found {labels.dtype}"
    if labels.size and (labels.min() < 0 or labels.max() > MAX_LABEL):
        return f"labels must be in 0..{MAX_LABEL}, found {int(labels.min())}..{int(labels.max())}"
    if images is not None and len(images) != len(labels):
        return f"{len(labels)} labels but {len(images)} images"
    return ""


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _strip(error: DataError, path: Path) -> str:
    """A DataError message without its leading 'path: ' (the row names the file already)."""
    message = str(error)
    for prefix in (f"{path}: ", f"{path.name}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message
