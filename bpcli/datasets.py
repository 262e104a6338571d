"""The datasets bpcli knows and where they can be fetched from: their files, published checksums
and mirrors; and the mirrors a user chose instead (--mirror, $BPCLI_MIRRORS), each URL checked
before anything is fetched, so that a bad one is a one-line usage error naming where it came from.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bpcli.data import FILES, KNOWN_SHA256
from bpcli.errors import UsageError

MIRRORS_ENV = "BPCLI_MIRRORS"
SCHEMES = ("http", "https", "file")
_URL_HINT = "give a base URL such as https://host/path/ (http, https or file)"
# A URL quoted in a message is cut to this many characters: the message stays one line.
_QUOTE_LIMIT = 80


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset and the checksums it may be verified against (any one match is enough).

    md5 / sha256: of the file exactly as the mirrors serve it (the .gz). content_sha256: of the
    decompressed IDX bytes, which does not depend on how a mirror compressed the file.
    """

    name: str
    md5: str | None = None
    sha256: str | None = None
    content_sha256: str | None = None

    @property
    def published(self) -> bool:
        return any((self.md5, self.sha256, self.content_sha256))


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset in MNIST format: its mirrors (base URLs, tried in order) and its four files."""

    name: str
    title: str
    mirrors: tuple[str, ...]
    files: tuple[FileSpec, ...]


def _mnist_files(md5: dict[str, str], content: dict[str, str] | None = None) -> tuple[FileSpec, ...]:
    content = content or {}
    return tuple(FileSpec(name, md5=md5[name], content_sha256=content.get(name)) for name in FILES.values())


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        title="MNIST handwritten digits",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        # MD5s of the mirrors' .gz files (the ones every MNIST loader checks), plus the content SHA-256s
        # the loader itself uses, so a differently compressed copy is accepted too.
        files=_mnist_files(
            {
                "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
            },
            KNOWN_SHA256["mnist"],
        ),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        title="Fashion-MNIST (Zalando Research)",
        # The project's S3 website endpoint serves plain HTTP only; the MD5s below guard the content.
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        # As published in the Fashion-MNIST README.
        files=_mnist_files(
            {
                "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
            }
        ),
    ),
    "kmnist": DatasetSpec(
        name="kmnist",
        title="Kuzushiji-MNIST (ROIS-CODH)",
        mirrors=(
            "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
            "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        ),
        # MD5s of the files on the project's server, as pinned by torchvision's KMNIST loader.
        files=_mnist_files(
            {
                "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
                "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
                "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
                "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
            }
        ),
    ),
}


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of a known dataset, or a UsageError listing the known ones."""
    try:
        return DATASETS[name.lower()]
    except KeyError:
        raise UsageError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


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
    shown = _quote(url)
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
