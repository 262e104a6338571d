"""Learners' own networks: both protocols, the examples' planted bugs diagnosed by equation, bitwise
restoration of their arrays, their exceptions and wrong return structures, biases (n,) and (n, 1), the
Python API and the command line. Small seeded networks ([6, 5, 4, 3]) on random data: fast."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

from bpcli import check_gradients
from bpcli.errors import UsageError
from bpcli.gradcheck.user_load import UserCodeError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SIZES = [6, 5, 4, 3]


@pytest.fixture(autouse=True)
def _examples_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the buggy examples import the correct ones


def example(name: str) -> types.ModuleType:
    import importlib

    return importlib.import_module(name)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bpcli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={"COLUMNS": "120", "PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{EXAMPLES}"}, timeout=120)


# -- the protocols -------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["examples/book_network.py:Network", "examples/function_network.py"])
@pytest.mark.parametrize("method", ["central", "complex", "directional"])
def test_correct_examples_pass(spec: str, method: str) -> None:
    report = check_gradients(str(ROOT / spec.split(":")[0]) + (":" + spec.split(":")[1] if ":" in spec else ""),
                             sizes=SIZES, method=method)
    assert report.passed, report.errors
    assert report.diagnosis is None
    assert report.result.method == method  # both accept complex arrays: no fallback
    assert report.forward is not None and report.forward.agrees


def test_instance_class_factory_and_module_name() -> None:
    book = example("book_network")
    assert check_gradients(book.Network(SIZES, seed=3)).passed                  # an instance
    assert check_gradients(book.Network, sizes=SIZES).passed                    # a class
    assert check_gradients(lambda sizes: book.Network(sizes, seed=1), sizes=SIZES).passed  # a factory
    assert check_gradients("book_network:Network", sizes=SIZES).passed          # module:NAME on sys.path
    assert check_gradients(example("function_network"), sizes=SIZES).passed    # a function-style module


@pytest.mark.parametrize("column", [True, False])
def test_biases_as_columns_and_as_vectors(column: bool) -> None:
    """(n, 1) biases take examples as columns, (n,) biases as vectors; both are checked as b^l (n,)."""

    class Vectors:
        def __init__(self, sizes: list[int]) -> None:
            rng = np.random.default_rng(0)
            self.sizes = sizes
            self.weights = [rng.standard_normal((n, p)) for p, n in zip(sizes[:-1], sizes[1:])]
            self.biases = [rng.standard_normal((n, 1) if column else n) for n in sizes[1:]]

        def feedforward(self, a: np.ndarray) -> np.ndarray:
            assert a.ndim == (2 if column else 1)
            for w, b in zip(self.weights, self.biases):
                a = 1 / (1 + np.exp(-(w @ a + b)))
            return a

        def backprop(self, x: np.ndarray, y: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
            acts, zs = [x], []
            for w, b in zip(self.weights, self.biases):
                zs.append(w @ acts[-1] + b)
                acts.append(1 / (1 + np.exp(-zs[-1])))
            sp = [a * (1 - a) for a in acts[1:]]
            delta = (acts[-1] - y) * sp[-1]
            nb, nw = [delta], [np.outer(delta, acts[-2])]
            for i in range(len(self.weights) - 2, -1, -1):
                delta = (self.weights[i + 1].T @ delta) * sp[i]
                nb.insert(0, delta)
                nw.insert(0, np.outer(delta, acts[i]))
            return nb, nw

    report = check_gradients(Vectors(SIZES))
    assert report.passed, report.errors
    assert [g.shape for g in report.groups if g.kind == "b"] == [(5,), (4,), (3,)]


# -- the planted bugs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "equation", "failing"), [
    ("buggy_bp1.py:Network", "BP1", {"w^2", "b^2", "w^3", "b^3", "w^4", "b^4"}),
    ("buggy_bp2.py:Network", "BP2", {"w^2", "b^2", "w^3", "b^3"}),
    ("buggy_bp4.py", "BP4", {"w^2", "w^3", "w^4"}),
])
def test_each_planted_bug_is_diagnosed_as_its_equation(spec: str, equation: str, failing: set[str]) -> None:
    report = check_gradients(str(EXAMPLES / spec), sizes=SIZES, batch=7)
    assert not report.passed
    assert set(report.result.failed_groups) == failing
    assert report.diagnosis is not None and report.diagnosis.equation == equation
    assert report.forward is not None and report.forward.agrees  # the forward pass is right in all three


def test_the_missing_one_over_m_prints_the_factor_m() -> None:
    report = check_gradients(str(EXAMPLES / "buggy_bp4.py"), sizes=SIZES, batch=7)
    assert report.diagnosis is not None and report.diagnosis.factor == pytest.approx(7, rel=1e-6)
    assert any("missing 1/m" in e and "m = 7" in e for e in report.diagnosis.evidence)


def test_a_gradient_off_by_one_factor_everywhere_is_a_scale() -> None:
    fn = example("function_network")
    doubled = types.SimpleNamespace(init_params=fn.init_params, loss=fn.loss,
                                    grad=lambda p, x, y: {k: -v for k, v in fn.grad(p, x, y).items()})
    report = check_gradients(doubled, sizes=SIZES)
    assert report.diagnosis is not None and report.diagnosis.equation == "scale"
    assert report.diagnosis.factor == pytest.approx(-1)


def test_bp3_every_w_right_some_b_wrong() -> None:
    fn = example("function_network")
    stale = types.SimpleNamespace(init_params=fn.init_params, loss=fn.loss,
                                  grad=lambda p, x, y: {**fn.grad(p, x, y), "b2": np.zeros(4)})
    report = check_gradients(stale, sizes=SIZES)
    assert report.diagnosis is not None and report.diagnosis.equation == "BP3"


def test_a_forward_pass_unlike_any_bpcli_network_is_reported_apart() -> None:
    book = example("book_network")
    net = book.Network(SIZES)
    net.feedforward = lambda a: book.Network.feedforward(net, a) ** 2  # their a^L, not a sigmoid's
    report = check_gradients(net)
    assert report.forward is not None and report.forward.agrees is False
    assert "forward-pass mismatch" in report.forward.text


# -- restoration, errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["central", "complex", "directional"])
def test_their_arrays_are_restored_bitwise(method: str) -> None:
    book = example("buggy_bp2")
    net = book.Network(SIZES, seed=5)
    net.weights[0][0, 0] = np.nextafter(net.weights[0][0, 0], 1.0)  # a value no rounding would reproduce
    objects = [id(a) for a in net.weights + net.biases]
    before = [a.tobytes() for a in net.weights + net.biases]
    check_gradients(net, method=method)
    assert [id(a) for a in net.weights + net.biases] == objects
    assert [a.tobytes() for a in net.weights + net.biases] == before

    fn = example("function_network")
    params = fn.init_params(SIZES, np.random.default_rng(0))
    holder = types.SimpleNamespace(init_params=lambda sizes, rng: params, loss=fn.loss, grad=fn.grad)
    saved = {k: v.tobytes() for k, v in params.items()}
    ids = {k: id(v) for k, v in params.items()}
    check_gradients(holder, sizes=SIZES, method=method)
    assert {k: v.tobytes() for k, v in params.items()} == saved
    assert {k: id(v) for k, v in params.items()} == ids


def test_an_exception_in_their_code_is_theirs(tmp_path: Path) -> None:
    f = tmp_path / "broken.py"
    f.write_text(textwrap.dedent("""\
        import numpy as np
        from book_network import Network as Base

        class Network(Base):
            def backprop(self, x, y):
                return helper(self, x)

        def helper(net, x):
            return np.dot(net.weights[1], net.weights[1])  # shapes (4, 5) and (4, 5)
        """))
    with pytest.raises(UserCodeError) as caught:
        check_gradients(f"{f}:Network", sizes=SIZES)
    message = str(caught.value)
    assert "ValueError in backprop" in message
    assert "in backprop" in message and "in helper" in message and str(f) in message
    assert "bpcli/gradcheck" not in message  # their frames only

    result = run("gradcheck", "--model", f"{f}:Network", "--model-args", "[6, 5, 4, 3]")
    assert result.returncode == 2, result.stderr
    assert "in helper" in result.stderr and "internal error" not in result.stderr


@pytest.mark.parametrize("where", ["backprop", "import"])
def test_sys_exit_in_their_code_is_theirs_never_a_pass(tmp_path: Path, where: str) -> None:
    """sys.exit(0) in their backprop ended gradcheck with exit 0 and no output: a pass, to a CI job."""
    f = tmp_path / "quits.py"
    body = "    def backprop(self, x, y):\n        sys.exit(0)\n" if where == "backprop" else "    pass\nsys.exit(0)\n"
    f.write_text(f"import sys\nfrom book_network import Network as Base\n\nclass Network(Base):\n{body}")
    result = run("gradcheck", "--model", f"{f}:Network", "--model-args", "[6, 5, 4, 3]", "--json",
                 str(tmp_path / "out.json"))
    assert result.returncode == 2 and "your code raised SystemExit" in result.stderr, result.stderr
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("option", [["--atol", "inf"], ["--entries", "0"], ["--rtol", "-1"], ["--eps", "0"],
                                    ["--eps", "nan"]])
def test_settings_that_would_pass_any_gradient_are_refused_for_their_network(option: list[str]) -> None:
    """--atol inf passed buggy_bp2 (true error 0.94); --entries 0 passed on no entry; --eps 0 was exit 4."""
    result = run("gradcheck", "--model", "examples/buggy_bp2.py:Network", "--model-args", "[6, 5, 4, 3]", *option)
    assert result.returncode == 2 and result.stderr.startswith("error: --") and result.stderr.count("\n") == 1


def test_their_module_may_change_directory_at_import(tmp_path: Path) -> None:
    """A module that chdirs at import broke the removal of its folder from sys.path (exit 4), and would
    have moved bpcli's own relative paths (--json FILE)."""
    (tmp_path / "sub").mkdir()
    source = (EXAMPLES / "book_network.py").read_text()
    (tmp_path / "sub" / "net.py").write_text("import os\nos.chdir(os.path.dirname(os.path.abspath(__file__)))\n"
                                             + source)
    result = subprocess.run([sys.executable, "-m", "bpcli", "gradcheck", "--model", "sub/net.py:Network",
                             "--model-args", "[6, 5, 4, 3]", "--json", "out.json"], capture_output=True, text=True,
                            cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.json").is_file() and not (tmp_path / "sub" / "out.json").exists()


@pytest.mark.parametrize(("returned", "words"), [
    ("None", "returned a NoneType"),
    ("(1, 2, 3)", "a tuple of length 3"),
    ("([], [])", "nabla_b is 0 items"),
    ("tuple(reversed(Base.backprop(self, x, y)))", "(nabla_w, nabla_b)"),
])
def test_wrong_return_structures_are_one_line(tmp_path: Path, returned: str, words: str) -> None:
    f = tmp_path / "odd.py"
    f.write_text(f"from book_network import Network as Base\n\nclass Network(Base):\n"
                 f"    def backprop(self, x, y):\n        return {returned}\n")
    with pytest.raises(UsageError, match=words.replace("(", r"\(").replace(")", r"\)")) as caught:
        check_gradients(f"{f}:Network", sizes=SIZES)
    assert "\n" not in str(caught.value)


def test_a_wrong_gradient_shape_fails_its_group_and_a_wrong_grad_structure_is_refused() -> None:
    fn = example("function_network")
    flipped = types.SimpleNamespace(init_params=fn.init_params, loss=fn.loss,
                                    grad=lambda p, x, y: {**fn.grad(p, x, y), "W2": fn.grad(p, x, y)["W2"].T})
    report = check_gradients(flipped, sizes=SIZES)
    assert report.result.failed_groups == ["w^3"]
    assert any("transpose" in e for e in report.diagnosis.evidence)  # type: ignore[union-attr]
    missing = types.SimpleNamespace(init_params=fn.init_params, loss=fn.loss,
                                    grad=lambda p, x, y: {"W1": p["W1"]})
    with pytest.raises(UsageError, match="structure of params"):
        check_gradients(missing, sizes=SIZES)


def test_neither_protocol_names_the_missing_attribute() -> None:
    class Almost:
        sizes = SIZES
        weights: list[np.ndarray] = []
        biases: list[np.ndarray] = []

        def feedforward(self, a: np.ndarray) -> np.ndarray:
            return a

    with pytest.raises(UsageError, match="lacks 'backprop'"):
        check_gradients(Almost())


def test_parameters_that_do_not_fit_the_sizes_are_one_line() -> None:
    net = example("book_network").Network(SIZES)
    net.weights[1] = net.weights[1].T.copy()
    with pytest.raises(UsageError, match=r"weights\[1\] has shape \(5, 4\).*need \(4, 5\)"):
        check_gradients(net)


def test_complex_step_falls_back_and_says_why() -> None:
    class NormCost:
        @staticmethod
        def fn(a: np.ndarray, y: np.ndarray) -> float:
            return 0.5 * np.linalg.norm(a - y) ** 2  # norm() takes absolute values: real for complex input

    net = example("book_network").Network(SIZES)
    net.cost = NormCost()
    report = check_gradients(net, method="complex")
    assert report.passed and report.result.method == "central"
    assert any("fell back to central" in n and "real" in n for n in report.notes)


# -- the command line ----------------------------------------------------------------------------------


def test_cli_buggy_example_exit_1_with_diagnosis_and_json(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = run("gradcheck", "--model", "examples/buggy_bp2.py:Network", "--model-args", "[6, 5, 4, 3]",
                 "--entries", "3", "--batch", "5", "--json", str(out))
    assert result.returncode == 1, result.stderr
    assert "diagnosis" in result.stdout and "(BP2)" in result.stdout
    import json

    data = json.loads(out.read_text())
    assert data["diagnosis"]["equation"] == "BP2" and data["style"] == "book style"
    assert data["examples"] == 5 and data["paths"]["yours"]["groups"][0]["checked"] == 3


def test_cli_correct_example_exit_0_and_bad_input_exit_2() -> None:
    assert run("gradcheck", "--model", "examples/function_network.py", "--model-args", "[6, 5, 4, 3]").returncode == 0
    bad = run("gradcheck", "--model", "examples/book_network.py:Network")
    assert bad.returncode == 2 and "--model-args" in bad.stderr
    assert run("gradcheck", "--model", "examples/nothing.py:X").returncode == 2


def test_explain_model_traces_one_derivative_to_the_first_differing_equation() -> None:
    from bpcli.gradcheck import api, trace, user_load

    model = user_load.load_model(str(EXAMPLES / "buggy_bp2.py") + ":Network", SIZES)
    subject = api.subject_for(model, np.random.default_rng(0).random((1, 6)), np.full((1, 3), 0.5))
    traced = trace.trace(subject, (2, 1, 3))
    assert traced.first_difference is not None and traced.first_difference.equation == "BP2"
    assert [r.agrees for r in traced.rows if r.equation == "BP1"] == [True, True, True]
    result = run("explain", "--model", "examples/book_network.py:Network", "--model-args", "[6, 5, 4, 3]",
                 "--weight", "3,1,2")
    assert result.returncode == 0 and "every step agrees" in result.stdout


def test_values_bpcli_cannot_use_are_one_line_and_a_loss_bpcli_lacks_is_still_checked(tmp_path: Path) -> None:
    """Read-only weights were an internal error (exit 4); a function-style loss with an L2 term made the
    forward comparison try cross-entropy on an identity output and crash (exit 4)."""
    tuples = tmp_path / "tuples.py"
    tuples.write_text("from book_network import Network as Base\n\nclass Network(Base):\n"
                      "    def __init__(self, sizes):\n        super().__init__(sizes)\n"
                      "        for w in self.weights:\n            w.setflags(write=False)\n")
    result = run("gradcheck", "--model", f"{tuples}:Network", "--model-args", "[6, 5, 4, 3]")
    assert result.returncode == 2 and "bpcli cannot use what your network gave it" in result.stderr
    assert result.stderr.count("\n") == 1
    l2 = tmp_path / "l2.py"
    l2.write_text("import numpy as np\nfrom function_network import *  # noqa: F403\n"
                  "from function_network import loss as _loss\n\n"
                  "def loss(params, x, y):\n"
                  "    return _loss(params, x, y) + 1e-3 * sum(np.sum(v * v) for k, v in params.items() if k.startswith('W'))\n")
    checked = run("gradcheck", "--model", str(l2), "--model-args", "[6, 5, 4, 3]")
    assert "internal error" not in checked.stderr and checked.returncode in (0, 1), checked.stderr


def test_explain_model_refuses_what_it_would_ignore_and_claims_no_agreement_it_did_not_see(tmp_path: Path) -> None:
    for option in (["--format", "json"], ["--checkpoint", "x.npz"], ["--example", "3"], ["--graph", "dot"]):
        result = run("explain", "--model", "examples/book_network.py:Network", "--model-args", "[6, 5, 4, 3]",
                     "--weight", "2,1,3", *option)
        assert result.returncode == 2 and f"{option[0]} explain bpcli's own network" in result.stderr
    transposed = tmp_path / "transposed.py"
    transposed.write_text("from book_network import Network as Base\n\nclass Network(Base):\n"
                          "    def backprop(self, x, y):\n        nb, nw = super().backprop(x, y)\n"
                          "        return nb, [w.T for w in nw]\n")
    traced = run("explain", "--model", f"{transposed}:Network", "--model-args", "[6, 5, 4, 3]", "--weight", "2,1,3")
    assert "every step agrees" not in traced.stdout and "nothing compared at dC/dw^2_13" in traced.stdout
