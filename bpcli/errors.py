"""The one family of errors a user can cause.

`cli` catches `BpcliError` and prints its message as a single line with the error's exit code; any
other exception is a bug in bpcli and is allowed to show its traceback.
"""

from __future__ import annotations

import re
import reprlib
import urllib.parse


class BpcliError(Exception):
    """An error caused by the user's input or environment, with a one-line message."""

    exit_code: int = 1


class ConfigError(BpcliError):
    """A config file or `--set` override that is not valid."""

    exit_code = 2


class UsageError(BpcliError):
    """A command-line option with a value that cannot be used."""

    exit_code = 2


class DataError(BpcliError):
    """A dataset that is missing, malformed or does not match its checksum."""

    exit_code = 2


class CheckpointError(BpcliError):
    """A checkpoint that cannot be read or does not match its config."""

    exit_code = 2


class ResourceError(BpcliError):
    """A command that would need more memory (or other resources) than the machine can give it."""

    exit_code = 2


class DivergenceError(BpcliError):
    """Training produced a non-finite loss or parameter."""

    exit_code = 3


# Limits for `shorten`: a message quotes enough of a value to recognise it, never all of it. reprlib
# walks only the first few items of a container and the first levels of nesting, so even a value
# that an alias bomb made astronomically large is summarised without being expanded.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict = 2, 4, 4, 4
_SHORT.maxset = _SHORT.maxfrozenset = _SHORT.maxdeque = _SHORT.maxarray = 4
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 40


def shorten(value: object, limit: int = 60) -> str:
    """repr(value) cut to one line of at most `limit` characters, for quoting user input in a message."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        # repr of a huge int is slow (and refused beyond 4300 digits); its size says enough.
        text = f"<an integer of about {int(value.bit_length() * 0.30103)} digits>"
    else:
        try:
            text = _SHORT.repr(value)
        except Exception:  # a repr that fails must not replace the message it was meant for
            text = f"<{type(value).__name__}>"
    return clip(text, limit)


def show(text: str, limit: int = 80) -> str:
    """A name from user input (a key, a field, an option value) as it is when it is one short printable
    line, else quoted and cut short by `shorten`."""
    return text if text.isprintable() and len(text) <= limit else shorten(text, limit)


def clip(text: str, limit: int = 200) -> str:
    """Text (a message from a library, say) as one printable line of at most `limit` characters."""
    text = "".join(c if c.isprintable() else " " for c in text[: limit + 1])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def masked(url: str | None) -> str | None:
    """A URL (a sweep storage, a mirror) with its password replaced by ***, as it may be recorded or printed."""
    if url is None or "://" not in url:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - parsed on access; may raise ValueError too
    except ValueError:  # not a URL urllib can take apart (http://[::1/): mask the userinfo by its shape
        return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", url, count=1)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
