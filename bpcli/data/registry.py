"""The datasets bpcli knows, and the one policy that decides what a set of data files is.

A known dataset is its four MNIST-format files, each with the SHA-256 of its *decompressed* content
(which does not change when someone recompresses a file) and the hashes its publishers give for the
`.gz` archives they serve, plus its class names and mirrors. `identify` compares what the loaders
found (`FileFacts`) with this list and with the directory's own SHA256SUMS, and either names the
dataset or refuses it; the loaders never decide that themselves.

Where each hash comes from, and whether it was checked against real files here:
- MNIST content SHA-256: computed from, and verified against, the real files in data/mnist.
  MNIST archive MD5s: published values (what torchvision and others pin); not verified here, since
  the copy in data/mnist is recompressed and no other copy can be fetched on this machine.
- Fashion-MNIST archive MD5s: as published in the Fashion-MNIST README. Archive SHA-256s and content
  SHA-256s: published values, found identical in several independent public projects that pin them.
  None of them verified here: the Fashion-MNIST files are not on this machine and cannot be fetched.
- KMNIST archive MD5s and SHA-256s: published values (as pinned by torchvision and other loaders);
  not verified here. No published content SHA-256 was found, so a KMNIST copy is recognised only in
  its published compression (a recompressed one is an unknown dataset until its SHA256SUMS vouches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from bpcli.data.sums import Entry, Sums
from bpcli.errors import DataError, UsageError

# The four files of an MNIST-format dataset by role, under their published (.gz) names; the raw files
# are the same names without ".gz".
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
ROLES = tuple(FILES)


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
    """A dataset in MNIST format: its mirrors (base URLs, tried in order), its four files in the order
    of FILES, and the names of its classes (label k is class_names[k])."""

    name: str
    title: str
    mirrors: tuple[str, ...]
    files: tuple[FileSpec, ...]
    class_names: tuple[str, ...] = ()

    def file(self, role: str) -> FileSpec:
        return self.files[ROLES.index(role)]


def _files(md5: dict[str, str], sha256: dict[str, str] | None = None,
           content: dict[str, str] | None = None) -> tuple[FileSpec, ...]:
    sha256, content = sha256 or {}, content or {}
    return tuple(FileSpec(name, md5=md5[name], sha256=sha256.get(name), content_sha256=content.get(name))
                 for name in FILES.values())


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        title="MNIST",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        files=_files(
            {
                "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
            },
            content={  # verified here: sha256 of the decompressed files in data/mnist
                "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            },
        ),
        class_names=tuple(str(digit) for digit in range(10)),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        title="Fashion-MNIST",
        # The project's S3 website endpoint serves plain HTTP only; the checksums below guard the content.
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        files=_files(
            {  # published MD5s of the .gz files (Fashion-MNIST README); not verified here
                "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
            },
            {  # published SHA-256s of the same .gz files; not verified here
                "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            },
            {  # published SHA-256s of the decompressed files; not verified here
                "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            },
        ),
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                     "Ankle boot"),
    ),
    "kmnist": DatasetSpec(
        name="kmnist",
        title="KMNIST",
        mirrors=(
            "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
            "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        ),
        files=_files(
            {  # published MD5s of the .gz files (as pinned by torchvision's KMNIST loader); not verified here
                "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
                "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
                "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
                "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
            },
            {  # published SHA-256s of the same .gz files; not verified here
                "train-images-idx3-ubyte.gz": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
                "train-labels-idx1-ubyte.gz": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
                "t10k-images-idx3-ubyte.gz": "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
                "t10k-labels-idx1-ubyte.gz": "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
            },
        ),
        # The romanised names of the ten hiragana (お き す つ な は ま や れ を): one terminal column each.
        class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    ),
}


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of a known dataset, or a UsageError listing the known ones."""
    try:
        return DATASETS[name.lower()]
    except KeyError:
        raise UsageError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


# -- what a set of files is ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileFacts:
    """What a loader found out about the file that holds one role (train_images, ...)."""

    role: str
    file: str  # the file's name as found: train-images-idx3-ubyte.gz, train-images-idx3-ubyte, data.npz
    path: str  # and its path, for messages
    content_sha256: str | None  # of the IDX content (for a .npz: of the array's IDX encoding)
    md5: str | None = None  # of the file's bytes, when it is a .gz archive
    sha256: str | None = None  # likewise
    sums_names: tuple[str, ...] = ()  # names SHA256SUMS may list it under
    sums_digest: str | None = None  # the digest SHA256SUMS records for it


@dataclass(frozen=True)
class FileVerdict:
    """One file against the registry (`known`: dataset name -> the checksum that matched) and against
    its SHA256SUMS line (`listed`, None when the file is not listed or there is no list)."""

    facts: FileFacts
    known: dict[str, str] = field(default_factory=dict)
    listed: Entry | None = None

    @property
    def listed_ok(self) -> bool:
        return self.listed is not None and self.listed.digest == self.facts.sums_digest


Status = Literal["verified", "checksums", "unverified"]


@dataclass(frozen=True)
class Identity:
    """What a dataset was recognised as. verified: its files are a known dataset's; checksums: they
    match the directory's own SHA256SUMS but no known dataset; unverified: nothing vouches for them
    (accepted only because data.verify is false)."""

    name: str | None
    title: str
    status: Status
    class_names: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        if self.status == "verified":
            return f"{self.title} (verified)"
        if self.status == "checksums":
            return "unverified dataset, matching its SHA256SUMS"
        return "unverified dataset"

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "title": self.title, "status": self.status, "class_names": list(self.class_names)}


UNKNOWN = Identity(None, "unknown dataset", "unverified")


def judge(facts: Sequence[FileFacts], sums: Sums | None) -> list[FileVerdict]:
    """Each file against every known dataset and against its SHA256SUMS line."""
    verdicts = []
    for f in facts:
        known: dict[str, str] = {}
        for ds in DATASETS.values():
            spec = ds.file(f.role)
            if spec.content_sha256 and f.content_sha256 == spec.content_sha256:
                known[ds.name] = "content SHA-256"
            elif spec.md5 and f.md5 == spec.md5:
                known[ds.name] = "published MD5"
            elif spec.sha256 and f.sha256 == spec.sha256:
                known[ds.name] = "published SHA-256"
        verdicts.append(FileVerdict(f, known, sums.entry(f.sums_names) if sums else None))
    return verdicts


def common(verdicts: Sequence[FileVerdict]) -> DatasetSpec | None:
    """The known dataset every file matches, if there is one."""
    names = set(DATASETS)
    for v in verdicts:
        names &= set(v.known)
    return next((DATASETS[n] for n in DATASETS if n in names), None) if verdicts else None


def identify(verdicts: Sequence[FileVerdict], sums: Sums | None, verify: bool, where: str) -> Identity:
    """The identity of a dataset from its files' verdicts, or a one-line DataError refusing it.

    With verify, a SHA256SUMS must list every file and match it; then a dataset is known when every
    file matches the same known dataset, accepted on its SHA256SUMS alone as "checksums" otherwise,
    and refused when nothing vouches for it (unknown) or its files disagree (mixed or damaged).
    Without verify nothing is refused: the dataset is still named when its files are a known one's.
    """
    known = common(verdicts)
    identity = Identity(known.name, known.title, "verified", known.class_names) if known else UNKNOWN
    if not verify:
        return identity
    if sums is not None:
        _check_listed(verdicts, sums, where)
        return identity if known else Identity(None, "dataset listed in SHA256SUMS", "checksums")
    if known:
        return identity
    fix = f"set data.verify: false, or record its checksums with `bpcli data verify {where} --write`"
    if not any(v.known for v in verdicts):
        raise DataError(f"{where}: unknown dataset: its files match none bpcli knows "
                          f"({', '.join(d.title for d in DATASETS.values())}) "
                       f"and it has no SHA256SUMS; if you trust these files, {fix}")
    raise DataError(f"{where}: mixed or damaged dataset: {describe(verdicts)}; replace the odd file with a good "
                   f"copy (`bpcli data download NAME`), or if the mix is deliberate, {fix}")


def _check_listed(verdicts: Sequence[FileVerdict], sums: Sums, where: str) -> None:
    missing = [v.facts.file for v in _unique(verdicts) if v.listed is None]
    if missing:
        raise DataError(f"{sums.path}: does not list {', '.join(missing)}, so it cannot vouch for "
                        f"{'it' if len(missing) == 1 else 'them'}; list every data file (`bpcli data verify "
                        f"{where} --write` adds the missing lines)")
    for v in _unique(verdicts):
        if not v.listed_ok:
            assert v.listed is not None
            raise DataError(f"{v.facts.path}: checksum mismatch: SHA-256 {short(v.facts.sums_digest)}, but "
                            f"{sums.path.name} line {v.listed.line} says {short(v.listed.digest)}; the file is "
                            "damaged or was replaced: get a good copy, or if the new file is the one you want, "
                            "correct that line")


def _unique(verdicts: Sequence[FileVerdict]) -> list[FileVerdict]:
    """One verdict per file (the four roles of a .npz share one file and one SHA256SUMS line)."""
    seen: dict[str, FileVerdict] = {}
    for v in verdicts:
        seen.setdefault(v.facts.file, v)
    return list(seen.values())


def describe(verdicts: Sequence[FileVerdict]) -> str:
    """'train-labels-idx1-ubyte.gz matches no known dataset (content SHA-256 65a50cbbf4e9...); the
    other files are MNIST', for a message: the odd files one by one, the rest by what they are."""
    counts: dict[str, int] = {}
    for v in verdicts:
        for n in v.known:
            counts[n] = counts.get(n, 0) + 1
    usual = max(counts, key=lambda n: counts[n]) if counts else None
    parts = []
    for v in verdicts:
        if usual in v.known:
            continue
        name = v.facts.file if len(set(x.facts.file for x in verdicts)) > 1 else f"{v.facts.file} ({v.facts.role})"
        if v.known:
            parts.append(f"{name} is {' or '.join(DATASETS[n].title for n in v.known)}")
        else:
            parts.append(f"{name} matches no known dataset (content SHA-256 {short(v.facts.content_sha256)})")
    if usual is not None:
        parts.append(f"the other files are {DATASETS[usual].title}")
    return "; ".join(parts)


def short(digest: str | None) -> str:
    """A digest in a message or a table: its first 12 hex digits, enough to tell files apart."""
    return f"{digest[:12]}..." if digest else "-"

