"""The mirrors to fetch a dataset from: the dataset's own (from `registry`), or those a user chose
instead (--mirror, $BPCLI_MIRRORS), each URL checked before anything is fetched, so that a bad one is
a one-line usage error naming where it came from.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping, Sequence

from bpcli.data.registry import DatasetSpec
from bpcli.errors import UsageError, masked

MIRRORS_ENV = "BPCLI_MIRRORS"
SCHEMES = ("http", "https", "file")
_URL_HINT = "give a base URL such as https://host/path/ (http, https or file)"
# A URL quoted in a message is cut to this many characters: the message stays one line.
_QUOTE_LIMIT = 80


def resolve_mirrors(
    spec: DatasetSpec, override: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """The mirrors to try, in order: `override` (--mirror) if given, else $BPCLI_MIRRORS
    (comma-separated; empty entries are skipped), else the dataset's defaults. Each must be an
    http(s):// or file:// base URL; a UsageError names the first that is not, and where it came from."""
    environ = os.environ if environ is None else environ
    from_env = environ.get(MIRRORS_ENV, "")
    if override:
        mirrors, origin = tuple(m.strip() for m in override), "--mirror"
    elif from_env.strip():
        mirrors, origin = tuple(m.strip() for m in from_env.split(",") if m.strip()), f"${MIRRORS_ENV}"
        if not mirrors:
            raise UsageError(f"${MIRRORS_ENV} is {_quote(from_env)}, which names no mirror; give comma-separated "
                             "base URLs, or unset it to use the dataset's own mirrors")
    else:
        mirrors, origin = spec.mirrors, f"{spec.name}'s mirrors"
    if not mirrors:
        raise UsageError(f"no mirror to fetch {spec.name} from; give one with --mirror URL or ${MIRRORS_ENV}")
    for mirror in mirrors:
        check_mirror_url(mirror, origin)
    return mirrors


def check_mirror_url(url: str, origin: str) -> None:
    """Refuse a mirror URL that cannot be fetched from, with a UsageError naming `origin`.

    Control characters and spaces are refused outright: urlsplit silently drops CR, LF and tab, so
    such a URL would otherwise pass here and break a message (or a request line) later."""
    shown = _quote(masked(url) or url)  # never a password in a message
    bad = next((c for c in url if not c.isprintable() or c.isspace()), None)
    if bad is not None:
        raise UsageError(f"{origin}: {shown} contains a control character or space ({bad!r}); {_URL_HINT}")
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # parsed on access: ValueError when not a number in 0..65535
        host = parts.hostname
    except ValueError as e:
        raise UsageError(f"{origin}: {shown} is not a valid URL ({_clip(str(e))}); {_URL_HINT}") from None
    if parts.scheme not in SCHEMES:
        raise UsageError(f"{origin}: {shown} is not a mirror URL; {_URL_HINT}")
    if parts.scheme != "file" and not host:
        raise UsageError(f"{origin}: {shown} is not a mirror URL: it names no host; {_URL_HINT}")
    if parts.username or parts.password:  # the fetcher sends none: it failed later as an unknown host
        raise UsageError(f"{origin}: {shown} carries a user name or password, which bpcli does not send; use a "
                         "mirror that needs none")
    if parts.query or parts.fragment:
        raise UsageError(f"{origin}: {shown} has a ?query or #fragment; a mirror is a base URL that file "
                         "names are appended to")


def _quote(text: str) -> str:
    """repr(text), cut to one short line."""
    return _clip(repr(text))


def _clip(text: str) -> str:
    return text if len(text) <= _QUOTE_LIMIT else text[: _QUOTE_LIMIT - 3] + "..."


def file_url(mirror: str, name: str) -> str:
    """The URL of `name` under a mirror's base URL (with or without its trailing slash)."""
    return mirror.rstrip("/") + "/" + urllib.parse.quote(name)
