"""YAML from untrusted sources: bounded in size, in alias expansion and in time, with no duplicate keys.

A config is a few dozen values, so anything far larger is refused before it is built: a file over
`MAX_BYTES` is not read past that many bytes (so /dev/zero or an endless pipe ends at once), and a
document whose aliases would expand it beyond `MAX_VALUES` values (a "billion laughs" alias bomb) is
refused after composing, which is cheap because PyYAML composes an alias as a second reference to the
anchored node, not a copy. Only what passes is constructed, with `SafeLoader` (no Python objects).
Duplicate keys are refused too: PyYAML would silently keep the last one, so a second `training:`
block would quietly replace the first.

Every refusal is a `ConfigError` with one line naming the source and, where known, the line.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bpcli.errors import ConfigError, clip, show

MAX_BYTES = 1 << 20  # 1 MiB: configs are under 2 KiB; this leaves room for long comments
MAX_VALUES = 10_000  # scalars, lists and mappings after alias expansion; a config has about 40

# What parsing YAML can raise on bad input: besides YAMLError, PyYAML's constructors raise plain
# ValueError / TypeError / AttributeError for malformed tagged or implicit scalars (`!!int abc`,
# a date such as 2020-13-45, `!!timestamp x`), and its composer recurses once per nesting level.
_YAML_FAILURES = (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError, RecursionError)
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass
class Document:
    """Parsed YAML: the data, and the 1-based line of each dotted key path (for messages)."""

    data: Any
    lines: dict[str, int]


class _Invalid(Exception):
    """Text that is not YAML at all; `parse_value` falls back to the raw string for it."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def read_text(path: Path, what: str = "config file") -> str:
    """The text of the file at `path`, read as UTF-8, at most MAX_BYTES of it.

    Never more than MAX_BYTES + 1 bytes are read whatever `path` is (a device, a FIFO, a file that is
    still growing), so the size check cannot itself run out of memory or read forever from an endless
    source.
    """
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if stat.S_ISDIR(mode):  # on Linux opening a directory works; reading it then fails
                raise ConfigError(f"{path}: cannot read {what}: it is a directory; give a YAML file")
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: cannot read {what}: it is a directory; give a YAML file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read {what} ({e.strerror or type(e).__name__})") from None
    if len(data) > MAX_BYTES:
        kind = "" if stat.S_ISREG(mode) else " (not a regular file)"
        raise ConfigError(f"{path}: cannot read {what}: larger than {MAX_BYTES // 2**20} MiB{kind}; "
                          "a config is a few KiB of YAML")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: cannot read {what}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None


def parse(text: str, source: str) -> Document:
    """Parse one YAML document from untrusted `text`; `source` names it in messages."""
    try:
        return _parse(text, source, numbered=True)
    except _Invalid as e:
        raise ConfigError(f"{_at(source, e.line)}: not valid YAML: {e}") from None


def parse_value(text: str, source: str) -> Any:
    """A `--set` value: YAML if it parses as YAML, else the string itself. The limits still apply:
    an alias bomb on the command line is refused, not taken as a string."""
    try:
        return _parse(text, source, numbered=False).data
    except _Invalid:
        return text


class _Loader(yaml.SafeLoader):
    """SafeLoader that stops composing after MAX_VALUES nodes (an alias counts once here; what it
    expands to is checked after composing), so that a megabyte of tiny values is refused after a few
    thousand of them instead of after building all of them (measured: 15 s and 460 MB for 1 MiB)."""

    def __init__(self, text: str, source: str, numbered: bool) -> None:
        super().__init__(text)
        self.source, self.numbered = source, numbered
        self.composed = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        self.composed += 1
        if self.composed > MAX_VALUES:
            line = self.peek_event().start_mark.line + 1 if self.numbered else None
            raise ConfigError(f"{_at(self.source, line)}: more than {MAX_VALUES:,} values; a config has a few dozen")
        return super().compose_node(parent, index)


def _at(source: str, line: int | None) -> str:
    """`source:line` for messages; a one-line source (a `--set` value) has no line to name."""
    return f"{source}:{line}" if line else source


def _parse(text: str, source: str, numbered: bool) -> Document:
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{source}: longer than {MAX_BYTES // 2**20} MiB; a config is a few KiB of YAML")
    loader: _Loader | None = None
    try:
        loader = _Loader(text, source, numbered)  # its Reader refuses unprintable characters right here
        node = loader.get_single_node()
        if node is None:
            return Document(None, {})
        _check_tree(node, source, numbered)
        return Document(loader.construct_document(node), _line_numbers(node))
    except RecursionError:
        raise _Invalid("nested too deeply", None) from None
    except _YAML_FAILURES as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or next(iter(str(e).splitlines()), "") or type(e).__name__
        if not isinstance(e, yaml.YAMLError):  # a scalar the YAML constructors choked on
            problem = f"a value cannot be read ({problem})"
        raise _Invalid(clip(problem), mark.line + 1 if mark is not None else None) from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_tree(root: yaml.Node, source: str, numbered: bool = True) -> None:
    """Refuse a node graph that expands to more than MAX_VALUES values, refers to itself, or has a
    mapping with the same key twice.

    Each distinct node is visited once, with its expanded size remembered, so the check costs time in
    proportion to the text, not to the expansion it guards against. The walk uses its own stack: a
    deeply nested document must not exhaust Python's.
    """
    def at(node: yaml.Node) -> str:
        return _at(source, node.start_mark.line + 1 if numbered else None)

    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            total = 1 + sum(size[id(c)] for c in _children(node))
            if total > MAX_VALUES:
                if _has_alias_below(node):
                    raise ConfigError(f"{at(node)}: YAML aliases expand this to more than {MAX_VALUES:,} values "
                                      "(an alias bomb?); a config has a few dozen: write the values out")
                raise ConfigError(f"{at(node)}: more than {MAX_VALUES:,} values; a config has a few dozen")
            size[key] = total
            continue
        if key in size:
            continue
        if key in on_path:
            raise ConfigError(f"{at(node)}: a YAML alias refers to the node that contains it (a recursive "
                              "structure); a config cannot be recursive")
        on_path.add(key)
        if isinstance(node, yaml.MappingNode):
            _check_keys(node, source, numbered)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _has_alias_below(node: yaml.Node) -> bool:
    """Whether some node is reachable twice below `node`: only aliases make that possible."""
    seen: set[int] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if id(n) in seen:
            return True
        seen.add(id(n))
        stack.extend(_children(n))
    return False


def _check_keys(node: yaml.MappingNode, source: str, numbered: bool) -> None:
    first: dict[tuple[str, str], int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
            continue  # `<<: *base` may repeat keys of the base on purpose: that is what merging is for
        line = key_node.start_mark.line + 1
        key = (key_node.tag, key_node.value)
        if key in first:
            where = _at(source, line if numbered else None)
            raise ConfigError(f"{where}: duplicate key '{show(key_node.value, 40)}' (first at line {first[key]}); "
                              "YAML would keep only the last one: merge the two into one")
        first[key] = line


def _line_numbers(node: yaml.Node | None, prefix: str = "") -> dict[str, int]:
    """Map each dotted key path to the 1-based line where its key stands."""
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            dotted = f"{prefix}{key_node.value}"
            out[dotted] = key_node.start_mark.line + 1
            out.update(_line_numbers(value_node, dotted + "."))
    return out
