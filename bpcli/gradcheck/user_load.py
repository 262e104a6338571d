"""A learner's own network, found from `--model PATH.py:NAME` (or `module:NAME`), and calls into it.

Loading a model *runs its code*: importing PATH.py executes everything at its top level, and every
later call (feedforward, backprop, loss, grad) runs the learner's functions with bpcli's permissions.
Check only code you would run yourself.

Two protocols, told apart by the attributes the object has:

    book style      `sizes`, `weights` and `biases` (lists of arrays per layer, l = 2..L), `feedforward(a)`
                    and `backprop(x, y) -> (nabla_b, nabla_w)` for one example: the API of the networks in
                    Michael Nielsen's *Neural Networks and Deep Learning*
    function style  `loss(params, x, y)`, `grad(params, x, y)` and `init_params(sizes, rng)`, x with one
                    example per row: a module (or any object) of three functions

NAME may be a class (built from the layer sizes), a factory function (called with them), an instance, or
be left out for a function-style module. An exception inside the learner's code becomes `UserCodeError`
carrying their own traceback frames (exit 2), so it is never mistaken for a failed check (exit 1) or a
bug in bpcli (exit 4).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import json
import os
import sys
import traceback
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

import bpcli
from bpcli.errors import BpcliError, UsageError, show

BOOK = ("sizes", "weights", "biases", "feedforward", "backprop")
FUNCTION = ("loss", "grad", "init_params")
T = TypeVar("T")

_BPCLI_DIR = str(Path(bpcli.__file__).resolve().parent)
_NUMPY_DIR = str(Path(np.__file__).resolve().parent)


class UserCodeError(BpcliError):
    """An exception raised inside the learner's code: their traceback frames only, exit 2."""

    exit_code = 2

    def __init__(self, what: str, error: BaseException) -> None:
        frames = [f for f in traceback.extract_tb(error.__traceback__)
                  if not f.filename.startswith((_BPCLI_DIR, _NUMPY_DIR)) and f.filename != __file__]
        self.error = error
        self.frames = frames
        lines = "".join(traceback.format_list(frames)).rstrip()
        head = f"your code raised {type(error).__name__} in {what}: {error}"
        super().__init__(head + ("\nTraceback (your code only, most recent call last):\n" + lines if lines else ""))


def call(what: str, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args), with any exception it raises reported as the learner's (see `UserCodeError`)."""
    try:
        return fn(*args)
    except (KeyboardInterrupt, BpcliError):
        raise
    except BaseException as e:  # noqa: BLE001 - whatever their code raises is theirs to see
        # SystemExit too: a sys.exit(0) in their backprop ended the check with exit 0, a pass to CI.
        raise UserCodeError(what, e) from None


@dataclass
class Model:
    """A loaded user model: the protocol, the object its attributes are read from, the layer sizes
    n_1..n_L, and for function style the parameter structure `init_params` returned."""

    style: Literal["book", "function"]
    obj: Any
    sizes: tuple[int, ...]
    name: str
    params: Any = None


def parse_args(text: str | None) -> Any:
    """--model-args: JSON, a list of layer sizes ([784, 30, 10]) or an object of keyword arguments."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--model-args {show(text)}: not JSON ({e.msg}); e.g. '[784, 30, 10]'") from None
    except RecursionError:
        raise UsageError(f"--model-args {show(text)}: nested too deeply; e.g. '[784, 30, 10]'") from None


def import_target(spec: str) -> tuple[Any, str]:
    """The object `PATH.py:NAME` or `module:NAME` names (the module itself without `:NAME`). Runs the
    module's top-level code."""
    where, _, name = spec.partition(":") if not _is_drive(spec) else (spec, "", "")
    if not where:  # importlib would raise from its own code, which is no traceback of theirs
        raise UsageError(f"--model {show(spec)}: no file or module before the ':'; expected PATH.py:NAME")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise UsageError(f"--model {show(spec)}: no file {show(where)}")
        module_name = f"bpcli_user_{path.stem}_{abs(hash(str(path.resolve())))}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise UsageError(f"--model {show(spec)}: cannot load {show(where)} as Python")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
        # Their directory first on sys.path, as `python PATH.py` would have it, so their own imports work.
        # Removed by the string inserted: their module may chdir, and a relative path resolves anew.
        # The working directory is restored too: bpcli's own relative paths (--json FILE) mean the user's.
        folder, cwd = str(path.resolve().parent), os.getcwd()
        sys.path.insert(0, folder)
        try:
            call(f"importing {where}", loader_spec.loader.exec_module, module)
        finally:
            os.chdir(cwd)
            with contextlib.suppress(ValueError):  # their code may have removed it itself
                sys.path.remove(folder)
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as e:
            if e.name and where.startswith(e.name):
                raise UsageError(f"--model {show(spec)}: no module {show(where)} on sys.path "
                                 "(give a file as PATH.py:NAME)") from None
            raise UserCodeError(f"importing {where}", e) from None
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001 - SystemExit at import included
            raise UserCodeError(f"importing {where}", e) from None
    if not name:
        return module, where
    if not hasattr(module, name):
        raise UsageError(f"--model {show(spec)}: {show(where)} defines no {show(name)}")
    return getattr(module, name), f"{where}:{name}"


def _is_drive(spec: str) -> bool:
    return len(spec) > 2 and spec[1] == ":" and spec[2] in "/\\"  # C:\... on Windows


def style_of(obj: Any) -> Literal["book", "function"] | None:
    if all(hasattr(obj, a) for a in ("weights", "biases", "feedforward", "backprop")):
        return "book"
    if all(hasattr(obj, a) for a in ("loss", "grad")):
        return "function"
    return None


def missing(obj: Any, label: str) -> UsageError:
    """The one-line error for an object that fits neither protocol, naming what the closer one lacks."""
    book = [a for a in BOOK if not hasattr(obj, a)]
    function = [a for a in FUNCTION if not hasattr(obj, a)]
    closer, lacks = (("book style", book) if len(book) / len(BOOK) <= len(function) / len(FUNCTION)
                     else ("function style", function))
    need = ("sizes, weights, biases, feedforward(a), backprop(x, y)" if closer == "book style"
            else "loss(params, x, y), grad(params, x, y), init_params(sizes, rng)")
    names = ", ".join(repr(a) for a in lacks)
    return UsageError(f"{label} is neither a book-style nor a function-style network: as {closer} it lacks "
                      f"{names} (it needs {need})")


def load_model(spec: str, args: Any = None, sizes: Sequence[int] | None = None, seed: int = 0) -> Model:
    """Import, build and classify the model `spec` names. A class or factory is called with `args`
    (a list: the layer sizes; a dict: keyword arguments) or else with `sizes`."""
    target, label = import_target(spec)
    return build(target, label, args, sizes, seed)


def build(target: Any, label: str, args: Any = None, sizes: Sequence[int] | None = None, seed: int = 0) -> Model:
    """A `Model` from an object already in hand (see `load_model`)."""
    obj = target
    if (inspect.isclass(target) or (inspect.isfunction(target) and style_of(target) is None)) and \
            not isinstance(target, types.ModuleType):
        if args is None and sizes is None:
            raise UsageError(f"{label} is a {'class' if inspect.isclass(target) else 'factory'}: give its layer "
                             "sizes with --model-args '[784, 30, 10]' or a CONFIG with model.layers (from Python: "
                             "check_gradients(..., sizes=[784, 30, 10]))")
        given = args if args is not None else list(sizes or [])
        what = f"{label}({show(json.dumps(given))})"
        obj = call(what, lambda: target(**given) if isinstance(given, dict) else target(given))
        label = what
    style = style_of(obj)
    if style is None:
        raise missing(obj, label)
    if style == "function":
        if not hasattr(obj, "init_params"):
            raise missing(obj, label)
        layer_sizes = args if isinstance(args, list) else sizes
        if layer_sizes is None:
            raise UsageError(f"{label} is function style: give the layer sizes for init_params with "
                             "--model-args '[784, 30, 10]' or a CONFIG with model.layers")
        rng = np.random.default_rng(seed)
        params = call("init_params", obj.init_params, list(layer_sizes), rng)
        return Model("function", obj, _sizes(layer_sizes, label), label, params)
    declared = getattr(obj, "sizes", None)
    if declared is None:
        weights = list(obj.weights)
        declared = [np.shape(weights[0])[1], *(np.shape(w)[0] for w in weights)] if weights else []
    return Model("book", obj, _sizes(declared, label), label)


def _sizes(value: Any, label: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(n) for n in value)
    except (TypeError, ValueError):
        raise UsageError(f"{label}: layer sizes {show(value)} are not a list of whole numbers") from None
    if len(sizes) < 2 or any(n < 1 for n in sizes):
        raise UsageError(f"{label}: layer sizes {list(sizes)} need at least 2 layers of at least 1 neuron")
    return sizes
