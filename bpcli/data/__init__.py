"""Datasets: what they are (`registry`), how their files are read (`idx`, `source`), how they become a
split `Dataset` (`load`), their own checksum lists (`sums`), checking a copy (`check`) and fetching one
(`download`, `mirrors`).

The names most callers need are re-exported here; `download` is not, so that loading data never
imports the HTTP code.
"""

from __future__ import annotations

from bpcli.data.idx import MAX_LABEL, decompress, parse_idx, read_blob, read_idx
from bpcli.data.load import Dataset, Split, load_dataset, load_test, one_hot
from bpcli.data.registry import DATASETS, FILES, Identity, dataset_spec
from bpcli.data.sums import CHECKSUM_FILE
from bpcli.errors import DataError

# The loader's earlier name, kept for callers that predate other datasets.
load_mnist = load_dataset

__all__ = [
    "CHECKSUM_FILE", "DATASETS", "FILES", "MAX_LABEL", "DataError", "Dataset", "Identity", "Split", "dataset_spec",
    "decompress", "load_dataset", "load_mnist", "load_test", "one_hot", "parse_idx", "read_blob", "read_idx",
]
