"""Optional dependencies: imported only inside the functions that need them, so that `pip install -e .`
and `bpcli train` never need them; a missing one is one line naming the extra that installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from bpcli.errors import BpcliError


class MissingExtra(BpcliError):
    """An optional dependency is not installed (exit 2, like any input the user can change)."""

    exit_code = 2


# module -> the extra of pyproject.toml that installs it (Pillow is also in `predict`, which callers name)
EXTRAS = {"matplotlib": "plot", "PIL": "plot", "onnx": "onnx", "onnxruntime": "onnx"}


def need(module: str, purpose: str, extra: str | None = None) -> ModuleType:
    """Import `module`, or fail with `{purpose} needs {module}: pip install 'bpcli[extra]'` (`extra`
    when given, else the one EXTRAS names)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        name = {"PIL": "Pillow"}.get(module.split(".")[0], module.split(".")[0])
        extra = extra or EXTRAS.get(module.split(".")[0], "plot")
        raise MissingExtra(f"{purpose} needs {name}: pip install 'bpcli[{extra}]'") from None
