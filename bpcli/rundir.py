"""A run directory: its files, the lock that keeps it to one run at a time, and the commit that makes
an epoch's outputs visible together or not at all.

    config.yaml     the resolved config               metrics.jsonl   one JSON object per epoch
    last.npz        the latest position               best.npz        the best epoch by validation
    .commit.json    the latest commit                 .bpcli.lock     held by the run using the directory
    result.json     how the latest session ended: test accuracy and loss of a finished run, or divergence

An epoch ends with several files to replace (last.npz, best.npz, metrics.jsonl); a crash between two
of them used to leave a missing metrics row or an older best.npz for good. Now each file is first
written in full beside its final name (`.NAME.next`), then `.commit.json` is replaced atomically,
naming the staged files and their SHA-256; that rename is the commit point. Then the staged files are
renamed over the final ones. Whoever opens the directory next finishes a committed change (roll
forward) or deletes an uncommitted one (roll back), so a reader never trusts a half-finished epoch.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from bpcli.errors import BpcliError, UsageError
from bpcli.files import open_regular, read_regular, stale_temporaries, write_atomic

LOCK = ".bpcli.lock"
COMMIT = ".commit.json"
RESULT = "result.json"
STAGED = ".next"
OUTPUTS = ("config.yaml", "metrics.jsonl", "last.npz", "best.npz", COMMIT, RESULT)
COMMITTED = ("metrics.jsonl", "last.npz", "best.npz")  # the only names a commit replaces
MAX_METRICS = 1 << 26  # bytes of metrics.jsonl read: a row is about 1 KiB, so 64 MiB is 60,000 epochs
MAX_RECORD = 1 << 16  # bytes read from a small JSON record (commit, result, dataset): they are a few hundred


class RunDirError(BpcliError):
    """A run directory that cannot be written (disk full, read-only, permissions) or is in use."""

    exit_code = 2


@dataclass
class EpochMetrics:
    """One row of the per-epoch table and one line of metrics.jsonl.

    train_loss and train_accuracy are running values over the epoch's mini-batches (no extra pass over
    the training set); validation values are measured after the epoch. `seconds` is the epoch's
    training compute, `eval_seconds` its validation pass.
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    learning_rate: float
    seconds: float
    eval_seconds: float
    layers: list[dict] | None = None  # monitor.LayerStats per layer l = 2..L, as plain dicts


def finite(value: object, low: float = 0.0, high: float = math.inf) -> float | None:
    """A finite number within [low, high] from an untrusted record (a bool is none), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and low <= value <= high else None


def _number(x: Any, high: float = math.inf, none: bool = False) -> bool:
    """Whether x is a number `finite` takes in [0, high], or None where `none` allows it."""
    return none if x is None else finite(x, 0.0, high) is not None


def _layer_row(r: Any) -> bool:
    return (isinstance(r, dict) and type(r.get("l")) is int and r["l"] >= 2 and type(r.get("n")) is int
            and r["n"] >= 1 and all(_number(v, 1.0 if k in ("saturated", "dead") else math.inf, none=True)
                                    for k, v in r.items() if k not in ("l", "n")))


def metrics_row(obj: Any, epoch: int) -> EpochMetrics | None:
    """Row `epoch` of metrics.jsonl as bpcli writes it, or None for anything else: the file is untrusted,
    and a value such as an accuracy of 512 or a layer that is not a mapping would reach the tables and
    charts (51200.00%, a crash in plot)."""
    try:
        row = EpochMetrics(**obj)
    except TypeError:  # not a mapping, or other fields
        return None
    ok = (type(row.epoch) is int and row.epoch == epoch and _number(row.train_loss)
          and _number(row.train_accuracy, 1.0) and _number(row.val_loss, none=True)
          and _number(row.val_accuracy, 1.0, none=True) and _number(row.learning_rate) and _number(row.seconds)
          and _number(row.eval_seconds)
          and (row.layers is None or (isinstance(row.layers, list) and all(map(_layer_row, row.layers)))))
    return row if ok else None


def metrics_bytes(rows: list[EpochMetrics]) -> bytes:
    return "".join(json.dumps(asdict(r)) + "\n" for r in rows).encode()


@dataclass
class RunFiles:
    """The files of a run directory. `create` and `open` take its lock; a plain `RunFiles(root)`
    only reads."""

    root: Path
    notes: list[str] = field(default_factory=list)
    _lock_fd: int | None = field(default=None, repr=False)

    # -- opening ----------------------------------------------------------------------------------

    @classmethod
    def create(cls, root: Path, force: bool = False) -> RunFiles:
        """A new run directory at `root`; an existing non-empty one only with `force`, which replaces
        the previous run's outputs (and nothing else) once no live run holds the directory."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise UsageError(f"--out {root}: exists and is not a directory; choose another path")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"run directory {root}: cannot create it ({e.strerror}); choose another with --out") from None
        files = cls(root)
        had_lock = (root / LOCK).exists()
        files.lock()
        mine = {LOCK}
        if any(p.name not in mine for p in root.iterdir()) and not force:
            files.release()
            if not had_lock:  # a directory that is not a run (`--out .`) keeps no trace of the attempt
                (root / LOCK).unlink(missing_ok=True)
            raise UsageError(
                f"run directory {root} already exists; pass --force to overwrite it, --resume {root} to "
                "continue it, or --out to choose another"
            )
        if force:
            for name in OUTPUTS:
                files._unlink(root / name)
            for p in root.glob(f".*{STAGED}"):
                files._unlink(p)
        files._remove_stale()
        return files

    @classmethod
    def open(cls, root: Path) -> RunFiles:
        """An existing run directory, locked, with any unfinished commit completed or undone."""
        files = cls(Path(root))
        files.lock()
        files.recover()
        return files

    def lock(self) -> None:
        """Take the directory's lock, or refuse with the PID of the live run that holds it. The lock is
        an flock on `.bpcli.lock`, so it dies with its process, even under kill -9; a PID left in the
        file by a dead process is taken over with a note."""
        path = self.root / LOCK
        try:
            fd = open_regular(path, os.O_RDWR | os.O_CREAT)
        except OSError as e:
            raise RunDirError(f"run directory {self.root}: cannot take its lock {path} ({e.strerror}); choose "
                              "another directory with --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunDirError(f"run directory {self.root} is in use by a bpcli run (process {holder}); wait for "
                              "it to finish, or choose another with --out") from None
        previous = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if previous.isdigit() and int(previous) != os.getpid():
            self.notes.append(f"took over the lock of process {previous} in {self.root}, which is no longer running")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays: removing it would let two runs lock two different files)."""
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- the commit -------------------------------------------------------------------------------

    def commit(self, blobs: Mapping[str, bytes], epoch: int, batch: int = 0) -> None:
        """Make `blobs` ({file name: content}) the run's files together: stage each, commit, install."""
        assert set(blobs) <= set(COMMITTED), sorted(blobs)
        digests = {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()}
        for name, data in blobs.items():
            self._write(self.root / f".{name}{STAGED}", data)
        record = {"epoch": epoch, "batch": batch, "files": digests, "time": time.time()}
        self._write(self.root / COMMIT, (json.dumps(record) + "\n").encode())  # the commit point
        self._install(digests)

    def recover(self) -> None:
        """Finish the last commit if it was committed but not installed; delete staged files that were
        never committed and temporary files of writes that were cut short."""
        committed: dict[str, str] = {}
        try:
            record = json.loads(read_regular(self.root / COMMIT, MAX_RECORD))
            if isinstance(record, dict) and isinstance(record.get("files"), dict):
                # Only the run's own files: a record naming "/etc/passwd" or "../x" is someone else's
                # doing, and installing it would overwrite that file with whatever was staged for it.
                committed = {k: str(v) for k, v in record["files"].items() if k in COMMITTED}
        except (OSError, ValueError, RecursionError):
            pass
        pending = {name: digest for name, digest in committed.items()
                   if (self.root / f".{name}{STAGED}").is_file()
                   and _sha256(self.root / f".{name}{STAGED}") == digest}
        if pending:
            self._install(pending)
            self.notes.append(f"completed the last checkpoint of {self.root}, cut short by a crash "
                              f"({', '.join(sorted(pending))})")
        for p in self.root.glob(f".*{STAGED}"):
            self._unlink(p)
        self._remove_stale()

    def check_space(self, checkpoint_bytes: int) -> None:
        """Refuse at the start, not after an epoch, a disk that cannot hold the run's checkpoints: during
        a commit last.npz and best.npz exist twice (staged and installed), so 4 checkpoints' worth."""
        import shutil

        need = 4 * checkpoint_bytes
        try:
            free = shutil.disk_usage(self.root).free
        except OSError:
            return
        if free < need:
            raise RunDirError(
                f"run directory {self.root} has {free / 2**20:.1f} MiB free, and this run's checkpoints need "
                f"about {need / 2**20:.1f} MiB (last.npz and best.npz, each staged before it replaces the old); "
                "free space or choose another directory with --out"
            )

    def write(self, name: str, data: bytes) -> None:
        """One file on its own (config.yaml), atomically."""
        self._write(self.root / name, data)

    # -- reading ----------------------------------------------------------------------------------

    @staticmethod
    def default_root(name: str, parent: Path = Path("runs")) -> Path:
        """runs/<config name>-<timestamp>, with a suffix if two runs start in the same second."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        root = parent / f"{name}-{stamp}"
        n = 2
        while root.exists():
            root = parent / f"{name}-{stamp}-{n}"
            n += 1
        return root

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def last(self) -> Path:
        return self.root / "last.npz"

    @property
    def best(self) -> Path:
        return self.root / "best.npz"

    def read_record(self, name: str) -> dict | None:
        """A small JSON object the run wrote (.commit.json, result.json, dataset.json), or None when it is
        missing, unreadable or not an object: the file is untrusted, so nothing in it is taken on faith."""
        try:
            record = json.loads(read_regular(self.root / name, MAX_RECORD))
        except (OSError, ValueError, RecursionError):
            return None
        return record if isinstance(record, dict) else None

    def latest_result(self) -> dict | None:
        """result.json when it describes the latest session: written after the latest commit (a run resumed
        after it finished or diverged has committed since, and the record is out of date)."""
        result = self.read_record(RESULT)
        if result is None:
            return None
        written, committed = result.get("time"), (self.read_record(COMMIT) or {}).get("time")
        if finite(committed) is not None and not (finite(written) is not None and written >= committed):
            return None
        return result

    def in_use(self) -> int | None:
        """The PID of the live run holding this directory's lock, or None. Only looks: a shared,
        non-blocking flock on a separate descriptor, released at once, so a run starting meanwhile is
        never kept out; it is tried only when the lock file holds a PID (a released lock is emptied)."""
        try:
            fd = open_regular(self.root / LOCK)
        except OSError:
            return None
        try:
            try:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            except OSError:  # a directory (or worse) where the lock file should be: nobody holds that
                return None
            if not holder:
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return int(holder) if holder.isdigit() else -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def metrics_through(self, epoch: int) -> list[EpochMetrics]:
        """The rows of epochs 1..epoch, which a run resumed after `epoch` continues; RunDirError if they are
        not all there. A commit writes metrics.jsonl with last.npz, so a missing row is damage, and the next
        commit would replace the file with a gap in its epochs: the rows after the damage gone for good."""
        rows = self.read_metrics()[:epoch]
        if len(rows) < epoch:
            raise RunDirError(f"{self.metrics} holds {len(rows)} of the {epoch} epochs {self.last} has trained "
                              f"(line {len(rows) + 1} is missing, cut off or not a metrics row); resuming would "
                              "replace it: repair it, or train the run's config again from the start")
        return rows

    def read_metrics(self) -> list[EpochMetrics]:
        """The rows of metrics.jsonl, epochs 1, 2, ...; a line that is not the next row as bpcli writes it
        ends the list (read up to MAX_METRICS bytes: the file is untrusted)."""
        if not self.metrics.is_file():
            return []
        with open(self.metrics, "rb") as f:
            text = f.read(MAX_METRICS).decode("utf-8", errors="replace")
        rows: list[EpochMetrics] = []
        for line in text.splitlines():
            try:
                row = metrics_row(json.loads(line), len(rows) + 1)
            except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
                row = None
            if row is None:
                break
            rows.append(row)
        return rows

    # -- file operations, each failure one line naming the path -------------------------------------

    def _install(self, digests: Mapping[str, str]) -> None:
        for name in digests:
            staged, final = self.root / f".{name}{STAGED}", self.root / name
            try:
                os.replace(staged, final)
            except OSError as e:
                raise _write_error(final, e) from None

    def _write(self, path: Path, data: bytes) -> None:
        try:
            write_atomic(path, data)
        except OSError as e:
            # A staged file is named after the file it will become: that is the one the user knows.
            final = path.with_name(path.name[1:-len(STAGED)]) if path.name.endswith(STAGED) else path
            raise _write_error(final, e) from None

    def _unlink(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            raise _write_error(path, e) from None

    def _remove_stale(self) -> None:
        for p in stale_temporaries(self.root):
            self._unlink(p)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_error(path: Path, e: OSError) -> RunDirError:
    """Disk full, read-only or not permitted: what, where, and that the last good files are intact."""
    reason = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
              errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
              errno.EPERM: "permission denied"}.get(e.errno or 0, e.strerror or str(e))
    return RunDirError(f"cannot write {path}: {reason}; the run's last complete checkpoint is unchanged; free "
                       "space or choose another directory with --out, then resume")
