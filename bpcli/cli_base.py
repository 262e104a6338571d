"""The command line's plumbing: help that reads well at any width, the two consoles (messages wrap
between words on a terminal, stay one line in a pipe), and how an error becomes one line and an exit
code. `bpcli.cli` builds the app on it; nothing here knows a command."""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from bpcli.errors import clip

class _Flags:
    """Help that reads well: an on/off flag takes no value, so it shows no `<bool>` metavar (Typer's
    default, which also marks its own --help and completion flags); an argument's name (RUN, CONFIG)
    says what it is, so it shows no Python type beside it (`<list[Path]>`, which also took the width
    that cut the names at 60 columns)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """Below 80 columns, Click's plain help (each option's text under its name, wrapped at words):
        Typer's boxed tables cut option names there ('--print-con…') and wrap help a word a line."""
        if console.width >= 80:
            return super().format_help(ctx, formatter)  # type: ignore[misc]
        formatter.width = max(40, console.width - 2)  # as Rich measured it (Click guesses 80 behind a pipe)
        # The help texts are Rich markup: `bpcli\\[plot]` is how they say `bpcli[plot]`.
        plain = lambda text: text.replace("\\[", "[")  # noqa: E731
        write_text, write_dl = formatter.write_text, formatter.write_dl
        formatter.write_text = lambda text: write_text(plain(text))
        formatter.write_dl = lambda rows, *a, **k: write_dl([(t, plain(d)) for t, d in rows], *a, **k)
        mode, self.rich_markup_mode = self.rich_markup_mode, None  # type: ignore[attr-defined]
        try:
            return super().format_help(ctx, formatter)  # type: ignore[misc]
        finally:
            self.rich_markup_mode = mode  # type: ignore[attr-defined]

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
            elif p.param_type_name == "argument":
                p.display_type_rich = lambda ctx: None
        return params


class _Command(_Flags, TyperCommand):
    pass


class _Group(_Flags, TyperGroup):
    pass


SIGPIPE_EXIT = 141  # 128 + SIGPIPE: what a Unix tool's status is when its reader goes away


def _reader_gone() -> typer.Exit:
    """stdout's reader closed the pipe (`bpcli train ... | head`): stop quietly, as any Unix tool does.
    stdout is pointed at /dev/null so that the interpreter's final flush cannot fail again; a run
    directory keeps its last committed epoch, which resumes as after any stop."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
    return typer.Exit(SIGPIPE_EXIT)


class _Wrapping(Console):
    """A message asked to stay one line (`soft_wrap=True`, as logs and grep want it) stays one line in a
    pipe or a file; on a terminal Rich wraps it at word boundaries instead, where the terminal would
    break it anywhere ("98.4" / "0%", "--res" / "ume"). A command to copy is printed with `out`, which
    never breaks a line: the terminal wraps it, and copying it gives one line."""

    def print(self, *objects: Any, soft_wrap: bool | None = None, **kwargs: Any) -> None:
        super().print(*objects, soft_wrap=soft_wrap and not self.is_terminal, **kwargs)


class _Console(_Wrapping):
    def on_broken_pipe(self) -> None:
        # Rich's own handling exits with 1, the code for a failed check; make it the usual 141.
        self.quiet = True
        raise _reader_gone()


# emoji off: a path such as /tmp/x:x: is a path, not ❌ (Rich reads :x: as an emoji code).
console = _Console(emoji=False)
err_console = _Wrapping(stderr=True, emoji=False)


INTERNAL_ERROR = 4
_debug = False  # --debug, set by the app's callback
# What the file system or the machine refuses (a name too long, a full disk, no permission) is the
# user's to fix, not a bug in bpcli: one line naming the file, exit 2, wherever the call was made.
_USER_ERRNOS = {errno.ENAMETOOLONG, errno.ELOOP, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                errno.EIO, errno.ENOTDIR, errno.EISDIR, errno.ENOENT, errno.EMFILE, errno.ENFILE, errno.EFBIG}


def _environment_error(e: BaseException) -> str | None:
    """The one-line message for an error of the environment rather than of bpcli, or None."""
    if isinstance(e, OSError) and e.errno in _USER_ERRNOS:
        where = f"{clip(os.fsdecode(e.filename), 120)}: " if e.filename is not None else "writing the output: "
        return f"{where}{e.strerror or e}"
    if isinstance(e, ValueError) and "null byte" in str(e):  # os.stat("a\0b"): no path can hold a NUL
        return "a path holds a NUL character, which no file name can; check the paths given and data.path"
    return None


def debugging() -> bool:
    return _debug or os.environ.get("BPCLI_DEBUG", "") not in ("", "0")


def shorten_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def printable(text: str) -> str:
    """`text` with control characters written out (\\x1b): a message quotes paths and values from files,
    and an escape sequence in one (clear the screen, set the window title) must not reach the terminal
    as one. Line breaks stay: the one message of several lines is the learner's own traceback."""
    return "".join(c if c.isprintable() or c == "\n" else c.encode("unicode_escape").decode("ascii") for c in text)


def say_error(message: str) -> None:
    """`error: message` as one line on stderr."""
    err_console.print(f"[bold red]error:[/] {escape(printable(message))}", soft_wrap=True, highlight=False)


def fail(message: str, code: int) -> typer.Exit:
    """Print `error: message` as one line on stderr and exit with `code`."""
    say_error(message)
    raise typer.Exit(code)


def set_debug(on: bool) -> None:
    global _debug
    _debug = on
