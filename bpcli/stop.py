"""Stopping a run on a signal between two batches rather than dying in one: SIGINT (Ctrl-C), SIGTERM
(a service manager) and SIGHUP (the terminal closed) set a flag the training loop and the sweep read."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
from types import FrameType

def _drop_terminal() -> None:
    """After a hangup every write to the terminal fails (EIO): a live view drawing once more would end the
    run before its position is saved. Standard output and error go to /dev/null instead when they are the
    terminal (a character device: isatty() already fails on a hung-up one); a log file keeps its lines."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            if stat.S_ISCHR(os.fstat(fd).st_mode):
                os.dup2(devnull, fd)
        os.close(devnull)


class StopFlag:
    """Records the first SIGINT, SIGTERM or SIGHUP instead of dying, so the loop can stop between batches.

    A second SIGINT means "stop now" (KeyboardInterrupt, handled by the runner with a message); a
    second SIGTERM is ignored, since the run is already stopping and a service manager's repeated
    TERM should not tear the checkpoint it is waiting for. SIGHUP (the terminal or ssh session closed)
    saves like SIGTERM, where it killed the run with nothing saved; under nohup it stays ignored.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "SIGINT"

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            _drop_terminal()
        if self.signum is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.signum = signum

    def __enter__(self) -> StopFlag:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if s == signal.SIGHUP and signal.getsignal(s) == signal.SIG_IGN:
                continue  # nohup: the run is meant to outlive its terminal
            try:
                self._previous[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            # After a SIGTERM the process is on its way out with 143: a repeated TERM (a service manager
            # sends them in bursts) must not turn that into death by signal, so it stays ignored.
            stopping = s == self.signum and s in (signal.SIGTERM, signal.SIGHUP)
            signal.signal(s, signal.SIG_IGN if stopping else handler)  # type: ignore[arg-type]
