"""Issue 11: gradcheck checks the path training uses, with a batch that exposes shape bugs, and exit
codes a CI can rely on (0 pass, 1 a group fails, 2 bad input, 4 the checker itself failed).

Every bug here is planted in the test (monkeypatch), never in the core: in the workspace / scale path
(scale ignored, a stale buffer reused, a wrong rows(k) cut), 1/n_L for 1/m, w for w^T in a square
layer; each through the CLI with the exit code it must give."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bpcli import costs, gradcheck
from bpcli import network as network_module
from bpcli.cli import app
from bpcli.config import OptimizerConfig, ScheduleConfig, TrainingConfig
from bpcli.errors import UsageError
from bpcli.gradcheck import numerical
from bpcli.network import NO_WORKSPACE, Cache, Grads, Network, Workspace

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")
MNIST = str(ROOT / "configs" / "mnist.yaml")
# Small networks for the CLI: fast; non-square everywhere ([20, 7, 5]), or square above layer 2.
SMALL = ["--random-data", "--set", "model.layers=[20, 7, 5]"]
SQUARE = ["--random-data", "--set", "model.layers=[20, 7, 7, 7]"]
real_output_delta = costs.output_delta
real_backward = Network.backward
real_rows = Workspace.rows


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["gradcheck", TINY, *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def backward_variant(*, stale_db: bool = False, transpose: bool = False) -> Callable[..., Grads]:
    """`Network.backward` as written, with one planted bug: stale_db accumulates db^l into the
    workspace's buffer instead of overwriting it (a stale buffer reused); transpose uses w^(l+1) where
    (w^(l+1))^T belongs (examples as rows: delta[l+1] @ w[l+1].T), which only runs for square w."""

    def backward(self: Network, cache: Cache, y: np.ndarray, workspace: Workspace | None = None,
                 scale: float = 1.0) -> Grads:
        ws = workspace or NO_WORKSPACE
        L = self.L
        delta = {L: costs.output_delta(self.cost, self.output, cache.z[L], cache.a[L], y, ws.delta[L], scale)}
        for l in range(L - 1, 1, -1):
            w_next = self.w[l + 1].T if transpose else self.w[l + 1]
            delta[l] = self.sigma(l).chain(np.matmul(delta[l + 1], w_next, out=ws.delta[l]), cache.z[l], cache.a[l])
        dw = {l: np.matmul(delta[l].T, cache.a[l - 1], out=ws.dw[l]) for l in self.layers}
        if stale_db and workspace is not None:
            db = {l: np.add(workspace.db[l], delta[l].sum(axis=0), out=workspace.db[l]) for l in self.layers}
        else:
            db = {l: np.add.reduce(delta[l], axis=0, out=ws.db[l]) for l in self.layers}
        return Grads(dw, db, delta)

    return backward


def test_the_backward_variant_without_bugs_is_network_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Network, "backward", backward_variant())
    assert run(*SMALL)[0] == 0


# -- planted bugs in the workspace / scale path: invisible to the reference path --------------------------


def ignore_scale(cost, output, z, a, y, out=None, scale=1.0):  # type: ignore[no-untyped-def]
    return real_output_delta(cost, output, z, a, y, out)


def aliased_rows(self: Workspace, k: int) -> Workspace:
    """rows(k) with a copy-paste slip: the cut's delta buffers are its a buffers (a[:k] for delta[:k]),
    so delta^l overwrites a^l, which sigma'(z^l) and dC/dw^(l+1) still need. Full batches are right."""
    cut = real_rows(self, k)
    if cut is not self:
        cut.delta = {l: a[:k] for l, a in self.a.items()}
    return cut


@pytest.mark.parametrize(("bug", "target", "name", "value", "args"), [
    ("scale ignored", network_module, "output_delta", ignore_scale, SMALL),
    ("stale buffer reused", Network, "backward", backward_variant(stale_db=True), SMALL),
    ("wrong rows(k) cut", Workspace, "rows", aliased_rows, SMALL),
])
def test_a_bug_in_the_training_path_fails_it_and_only_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bug: str, target: object, name: str, value: object,
    args: list[str],
) -> None:
    monkeypatch.setattr(target, name, value)
    out = tmp_path / "gc.json"
    code, stdout, _ = run(*args, "--json", str(out))
    assert code == 1, (bug, stdout)
    data = json.loads(out.read_text())
    assert data["failed"]["reference"] == [] and data["failed"]["training"], bug
    assert "PASS: backprop agrees" in stdout and "FAIL: the training path (float32) disagrees" in stdout
    assert run(*args, "--path", "reference")[0] == 0  # what gradcheck used to check: blind to it
    assert run(*args, "--path", "training")[0] == 1


def test_a_gradient_off_by_a_thousandth_fails_the_float32_tolerance(monkeypatch: pytest.MonkeyPatch) -> None:
    """The float32 tolerance is derived from rounding, not just loose: 0.1% is far outside it."""

    def off(cost, output, z, a, y, out=None, scale=1.0):  # type: ignore[no-untyped-def]
        return real_output_delta(cost, output, z, a, y, out, scale * 1.001)

    monkeypatch.setattr(network_module, "output_delta", off)
    code, stdout, _ = run(*SMALL, "--path", "training")
    assert code == 1 and "FAIL" in stdout


# -- bugs that the old default batch (10 examples, 10 classes) hid ----------------------------------------


def n_L_for_m(cost, output, z, a, y, out=None, scale=1.0):  # type: ignore[no-untyped-def]
    """output_delta dividing by n_L (a.shape[1]) where the batch mean needs m (a.shape[0])."""
    delta = real_output_delta(cost, output, z, a, y, out, scale)
    delta *= a.shape[0] / a.shape[1]
    return delta


def test_n_L_for_m_fails_with_the_default_batch_and_hid_behind_the_old_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(network_module, "output_delta", n_L_for_m)
    code, stdout, _ = run("--random-data")
    assert code == 1 and "3 random examples" in stdout
    assert "the smallest prime above 2 that is no layer width (784, 16, 10)" in stdout
    assert run("--random-data", "--batch", "10")[0] == 0  # m = n_L = 10: the bug passes


def test_w_for_its_transpose_in_square_layers_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """[20, 7, 7, 7]: w^3 and w^4 are square, so delta^l = delta^(l+1) w^(l+1) (no transpose, examples as
    rows) runs and is wrong: w^2, b^2, w^3, b^3 fail, on both paths. Where the shapes differ the same
    bug raises inside bpcli's backward pass: an internal error, exit 4, not a verdict."""
    monkeypatch.setattr(Network, "backward", backward_variant(transpose=True))
    out = tmp_path / "gc.json"
    code, _, _ = run(*SQUARE, "--json", str(out))
    assert code == 1
    failed = ["w^2", "b^2", "w^3", "b^3"]
    assert json.loads(out.read_text())["failed"] == {"reference": failed, "training": failed}
    code, _, stderr = run(*SMALL)
    assert code == 4 and "internal error (ValueError" in stderr


# -- exit 4: the checker itself failed -------------------------------------------------------------------


def broken(*args: object, **kwargs: object) -> None:
    raise ZeroDivisionError("planted")


@pytest.mark.parametrize(("target", "name"), [
    (numerical._Restart, "derivatives"),             # the numerical side
    (gradcheck.TrainingSubject, "rounding"),          # the float32 tolerance
    (gradcheck.checker, "summarize"),                 # the comparison
])
def test_a_crash_inside_the_checker_exits_4_in_one_line(monkeypatch: pytest.MonkeyPatch, target: object,
                                                        name: str) -> None:
    monkeypatch.setattr(target, name, broken)
    code, stdout, stderr = run(*SMALL)
    assert code == 4, stdout
    assert "PASS" not in stdout and "FAIL" not in stdout
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error (ZeroDivisionError: planted)" in lines[0] and "bug" in lines[0]
    assert "Traceback" not in stderr


def test_the_traceback_comes_with_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(numerical._Restart, "derivatives", broken)
    result = CliRunner().invoke(app, ["--debug", "gradcheck", TINY, *SMALL])
    assert isinstance(result.exception, ZeroDivisionError)
    assert isinstance(CliRunner().invoke(app, ["gradcheck", TINY, *SMALL], env={"BPCLI_DEBUG": "1"}).exception,
                      ZeroDivisionError)


def test_a_crashing_gradient_is_not_a_verdict() -> None:
    """gradcheck's own code lets an exception through: no group is marked failed for it."""
    net = Network.create([4, 3, 2], rng=np.random.default_rng(0))
    x, y, _ = gradcheck.batch_for((4, 3, 2), "softmax", 3, 0, None)

    def gradient(net: Network, x: np.ndarray, y: np.ndarray) -> tuple[dict, dict]:
        raise KeyError("w")

    with pytest.raises(KeyError):
        gradcheck.check(net, x, y, gradient=gradient)


# -- input and output checked before the work -------------------------------------------------------------


@pytest.mark.parametrize("where", ["missing/gc.json", "file/gc.json", "."])
def test_an_unwritable_json_path_fails_before_the_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        where: str) -> None:
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setattr(gradcheck, "check_paths", broken)  # would exit 4 if reached
    code, stdout, stderr = run("--random-data", "--json", str(tmp_path / where))
    assert code == 2 and stdout == "" and "--json" in stderr
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize(("args", "needle"), [(["--path", "train"], "--path"), (["--path", ""], "--path")])
def test_bad_path_exits_2(args: list[str], needle: str) -> None:
    code, _, stderr = run("--random-data", *args)
    assert code == 2 and needle in stderr


# -- what the report says ------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [60, 80, 120])
def test_the_report_names_each_path_and_how_the_training_path_ran(width: int) -> None:
    result = CliRunner().invoke(app, ["gradcheck", TINY, "--random-data"], env={"COLUMNS": str(width)})
    text = " ".join(result.stdout.split())
    assert result.exit_code == 0
    assert "reference path: Network.backward in float64, no workspace, scale 1" in text
    assert ("training path: Network.backward as training calls it: float32, a Workspace of 32 rows "
            "(training.batch_size) that a full batch of other examples went through first, cut with rows(3)") in text
    assert "scale = eta = 0.5 (sgd), divided back out" in text
    assert "50 x the RMS of 16 simulated float32 rounding deviations" in text
    assert "PASS: backprop agrees" in text and "PASS: the training path (float32) agrees" in text
    assert "…" not in result.stdout


def test_mnist_config_checks_its_float32_training_path(mnist_dir: Path, tmp_path: Path) -> None:
    """configs/mnist.yaml: ReLU 784-512-256-10, float32, batches of 256, momentum, cosine from 0.2."""
    out = tmp_path / "gc.json"
    result = CliRunner().invoke(app, ["gradcheck", MNIST, "--set", f"data.path={mnist_dir}", "--entries", "200",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    training = data["paths"]["training"]
    assert data["examples"] == 3 and training["dtype"] == "float32" and training["passed"]
    assert training["training"] == {"dtype": "float32", "batch_size": 256, "workspace_rows": 256, "rows": 3,
                                    "optimizer": "momentum", "eta": 0.2, "scale": 0.2}


# -- the default batch -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sizes", "batch_size", "m"), [
    ((784, 16, 10), 32, 3), ((784, 512, 256, 10), 128, 3), ((784, 3, 10), 32, 5), ((3, 5, 7), 11, 13),
    ((784, 30, 10), 3, 5), ((5, 3, 2), None, 7),
])
def test_default_batch_is_the_smallest_prime_above_2_that_is_no_width(
    sizes: tuple[int, ...], batch_size: int | None, m: int
) -> None:
    got, why = gradcheck.default_batch(sizes, batch_size)
    assert got == m and f"batch of {m}" in why


# -- the training path through the API ---------------------------------------------------------------------------


def setup(dtype: str = "float32", batch_size: int = 16, eta: float = 0.3, optimizer: str = "sgd") -> gradcheck.TrainingSetup:
    t = TrainingConfig(epochs=1, batch_size=batch_size, learning_rate=eta, optimizer=OptimizerConfig(name=optimizer),
                       schedule=ScheduleConfig(), dtype=dtype)
    return gradcheck.TrainingSetup.from_config(t)


def test_training_setup_reads_what_training_uses() -> None:
    assert setup(optimizer="sgd").scale == 0.3 and setup(optimizer="momentum").scale == 0.3
    assert setup(optimizer="adam").scale == 1.0  # Adam needs g itself: training passes scale 1


def test_both_paths_share_one_point_and_one_set_of_numerical_derivatives(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = numerical.probe
    monkeypatch.setattr(gradcheck.checker, "probe", lambda *a, **k: calls.append(1) or real(*a, **k))
    net = Network.create([6, 5, 4], "tanh", rng=np.random.default_rng(0))
    x, y, _ = gradcheck.batch_for((6, 5, 4), "softmax", 3, 0, None)
    report = gradcheck.check_paths(net, x, y, training=setup())
    assert [r.path for r in report.results] == ["reference", "training"] and report.passed
    assert len(calls) == 1
    assert report.results[0].cost == report.results[1].cost  # the float32 point, evaluated in float64


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=2, max_size=5),
    m=st.integers(1, 9),
    batch_size=st.integers(1, 12),
    hidden=st.sampled_from(["sigmoid", "tanh", "relu"]),
    pair=st.sampled_from([("softmax", "cross_entropy"), ("sigmoid", "cross_entropy"), ("sigmoid", "quadratic"),
                          ("identity", "quadratic"), ("softmax", "quadratic")]),
    dtype=st.sampled_from(["float32", "float64"]),
    optimizer=st.sampled_from(["sgd", "momentum", "adam"]),
    eta=st.floats(0.01, 3.0),
    seed=st.integers(0, 2**16),
    method=st.sampled_from(["central", "directional"]),
)
def test_both_paths_pass_for_random_architectures_and_batches(
    sizes: list[int], m: int, batch_size: int, hidden: str, pair: tuple[str, str], dtype: str, optimizer: str,
    eta: float, seed: int, method: str,
) -> None:
    """The batch size m is drawn independently of the widths (so it equals some, and not others), as is
    the training batch size (the workspace is cut, filled exactly, or sized up for m)."""
    init = "he" if hidden == "relu" else "xavier"
    net = Network.create(sizes, hidden, *pair, init, np.random.default_rng(seed))
    x, y, _ = gradcheck.batch_for(tuple(sizes), pair[0], m, seed, None)
    report = gradcheck.check_paths(net, x, y, training=setup(dtype, batch_size, eta, optimizer), method=method,
                                   seed=seed)
    for r in report.results:
        assert r.passed, (r.path, [(g.name, g.max_tol_ratio, g.worst) for g in r.groups])
    assert report.results[1].training["workspace_rows"] == max(m, batch_size)  # type: ignore[index]


def test_check_subjects_takes_any_subject() -> None:
    """The protocol without a bpcli network: least squares C(w) = |X w - t|^2 / 2m, its gradient by hand."""
    rng = np.random.default_rng(3)
    X, t = rng.standard_normal((5, 3)), rng.standard_normal(5)

    class LeastSquares:
        path, dtype = "user", "float64"

        def __init__(self, w: np.ndarray) -> None:
            self.w = w

        def parameters(self) -> list[gradcheck.Parameter]:
            return [gradcheck.Parameter("w^2", 2, "w", self.w.reshape(1, 3))]

        def cost(self, theta: list[np.ndarray]) -> float:
            r = X.astype(theta[0].dtype) @ theta[0].ravel() - t
            return np.dot(r, r) / (2 * len(t))

        def gradient(self) -> list[np.ndarray]:
            return [(X.T @ (X @ self.w - t) / len(t)).reshape(1, 3)]

        def layered(self) -> None:
            return None

        def rounding(self, runs: int, rng: np.random.Generator) -> None:
            return None

    subject = LeastSquares(rng.standard_normal(3))
    for method in ("central", "complex", "directional"):
        result = gradcheck.check_subjects([subject], method).results[0]
        assert result.passed and result.path == "user" and result.groups[0].checked == (3 if method != "directional" else 10)
    subject.gradient = lambda: [np.zeros((1, 3))]  # type: ignore[method-assign]
    assert not gradcheck.check_subjects([subject]).passed


def test_unwritable_check_is_fast_and_leaves_nothing(tmp_path: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(UsageError):
        gradcheck.check_writable(tmp_path / "no" / "gc.json")
    gradcheck.check_writable(tmp_path / "gc.json")
    assert time.perf_counter() - started < 1 and os.listdir(tmp_path) == []
