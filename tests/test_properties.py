"""Property tests: whatever bytes or YAML a user hands bpcli, the only exception that escapes the
readers is the project's own (`DataError`, `ConfigError`), never a crash with a traceback."""

from __future__ import annotations

import dataclasses
import gzip
import math
from typing import Any

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpcli import config
from bpcli.config import ConfigError
from bpcli.data import DataError, decompress, parse_idx

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _idx(array: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


# Small valid IDX blobs of several element types, to mutate.
VALID = [
    _idx(np.arange(60, dtype=np.uint8).reshape(3, 4, 5), 0x08),
    _idx(np.arange(7, dtype=np.uint8), 0x08),
    _idx(np.arange(12, dtype=">i4").reshape(3, 4), 0x0C),
    _idx(np.linspace(0, 1, 6, dtype=">f8").reshape(2, 3), 0x0E),
]


def read(blob: bytes) -> np.ndarray | None:
    """decompress + parse_idx, with DataError counted as a clean refusal."""
    try:
        array = parse_idx(decompress(blob, "blob"), "blob")
    except DataError as e:
        assert str(e).startswith("blob: ") and "\n" not in str(e)
        return None
    assert isinstance(array, np.ndarray)
    return array


@FAST
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_data_error(blob: bytes) -> None:
    read(blob)
    read(b"\x00\x00" + blob)  # past the magic check, into the header logic
    read(b"\x1f\x8b" + blob)  # into the gzip reader


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid IDX blob (gzip'd or not), then a few random edits: flip, overwrite, cut, insert."""
    blob = bytearray(draw(st.sampled_from(VALID)))
    if draw(st.booleans()):
        blob = bytearray(gzip.compress(bytes(blob), mtime=0))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        i = draw(st.integers(0, max(len(blob) - 1, 0)))
        if op == "flip" and blob:
            blob[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and blob:
            blob[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del blob[i:]
        elif op == "insert":
            blob[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and blob:
            del blob[i]
    return bytes(blob)


@FAST
@given(mutated())
def test_mutated_idx_only_raises_data_error(blob: bytes) -> None:
    array = read(blob)
    if array is not None:  # whatever parses must be exactly as large as its header says
        assert array.size == math.prod(array.shape)


# -- config ------------------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["sigmoid", "adam", "softmax", "float32", "1e-3", "nan", "784"]),
)


def _nest(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return inner | st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


# Two explicit levels of nesting rather than st.recursive, whose strategy checks cost seconds here.
values = _nest(_nest(scalars))


def section(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping with some of a section's real field names (so validation gets past "unknown field")
    and, sometimes, a stray key."""
    return st.dictionaries(st.sampled_from(fields) | st.text(max_size=6), values, max_size=len(fields))


def fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


config_like = st.fixed_dictionaries(
    {},
    optional={
        "model": section(fields(config.ModelConfig))
        | st.fixed_dictionaries({}, optional={"layers": st.lists(st.integers(-3, 900), max_size=5)}),
        "training": section(fields(config.TrainingConfig))
        | st.fixed_dictionaries({}, optional={"learning_rate": scalars, "optimizer": section(fields(config.OptimizerConfig)),
                                              "schedule": section(fields(config.ScheduleConfig))}),
        "data": section(fields(config.DataConfig)),
        "name": scalars,
    },
)


def load(text: str, overrides: tuple[str, ...] = ()) -> config.Config | None:
    """config.loads, with ConfigError counted as a clean refusal; a success must be valid."""
    try:
        cfg = config.loads(text, source="c.yaml", overrides=overrides)
    except ConfigError as e:
        assert "\n" not in str(e), str(e)
        return None
    assert len(cfg.model.layers) >= 2 and all(n > 0 for n in cfg.model.layers)
    assert math.isfinite(cfg.training.learning_rate) and cfg.training.learning_rate > 0
    assert cfg.training.epochs > 0 and cfg.training.batch_size > 0
    return cfg


@FAST
@given(config_like)
def test_config_shaped_documents_only_raise_config_error(doc: dict[str, Any]) -> None:
    load(yaml.safe_dump(doc))


@FAST
@given(values)
def test_random_documents_only_raise_config_error(doc: Any) -> None:
    load(yaml.safe_dump(doc))


@FAST
@given(st.text(max_size=200))
def test_random_text_only_raises_config_error(text: str) -> None:
    load(text)


yaml_ish = st.text(alphabet=st.sampled_from(list("ab:-[]{}!&*#|>'\", \n\t?%@`0123456789.e+~")), max_size=80)


@FAST
@given(yaml_ish)
def test_yaml_punctuation_only_raises_config_error(text: str) -> None:
    load(text)


@FAST
@given(st.lists(st.text(max_size=30) | st.builds(lambda k, v: f"{k}={v}",
                                                 st.sampled_from(["training.epochs", "model.layers", "name", "x.y"]),
                                                 yaml_ish), max_size=3))
def test_random_overrides_only_raise_config_error(overrides: list[str]) -> None:
    load("training:\n  epochs: 2\n", tuple(overrides))
