"""Hostile input (issue 10): alias bombs, endless or huge files, duplicate keys, crafted checkpoints,
non-finite weights, sizes no machine can hold.

Each case goes through the command line where it can and checks the contract for user errors: exit
code 2, exactly one line on stderr, starting with `error:`, naming the field or file, and no traceback.
Every case is small and fails fast by design (a budget, a size limit, a header read before any data),
not by luck: nothing here waits for a timeout.
"""

from __future__ import annotations

import io
import json
import os
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from bpcli import checkpoint, config, resources, safe_yaml
from bpcli.checkpoint import Checkpoint
from bpcli.cli import app
from bpcli.errors import CheckpointError, ConfigError, DivergenceError, ResourceError, shorten
from bpcli.network import Network

from conftest import CONFIGS

TINY = str(CONFIGS / "tiny.yaml")
GiB = 2**30


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def one_error(result: Any, *needles: str, code: int = 2) -> str:
    """The single `error:` line of a refused command, checked against the user-error contract."""
    out = result.stdout + result.stderr
    assert result.exit_code == code, out[:2000]
    assert "Traceback" not in out and "RuntimeWarning" not in out, out[:2000]
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[:2000]
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def alias_bomb(levels: int, width: int = 9) -> str:
    """A "billion laughs" document: level i is a list of `width` aliases of level i-1, so the last
    level expands to width^levels strings while the text stays a few hundred bytes."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def flow_bomb(levels: int, width: int = 9) -> str:
    """The same on one line, as one value: [&a0 [x, ...], &a1 [*a0, ...], ...]."""
    items = [f"&a{i} [" + ", ".join([f"*a{i - 1}" if i else "x"] * width) + "]" for i in range(levels)]
    return "[" + ", ".join(items) + "]"


# -- row 1: YAML alias bombs, and values too long for a message ---------------------------------------


@pytest.mark.parametrize("levels", [6, 40])
def test_alias_bomb_in_a_real_field_is_refused_before_expansion(tmp_path: Path, levels: int) -> None:
    """9^6 (half a million) and 9^40 values: both refused by the same budget of 10,000 values, checked
    on the composed nodes, where an alias is one more reference to the same node."""
    # The bomb lives under a key of its own; the real field refers to its top level.
    text = "bomb:\n" + "".join(f"  {line}\n" for line in alias_bomb(levels).splitlines())
    text += f"model:\n  activation: *a{levels - 1}\n"
    path = write(tmp_path, text)
    line = one_error(invoke("train", path, "--print-config"), "cfg.yaml:", "alias", "10,000 values")
    assert len(line) < 200


def test_alias_bomb_in_name_and_in_set(tmp_path: Path) -> None:
    path = write(tmp_path, alias_bomb(6) + "name: *a5\n")
    one_error(invoke("train", path, "--print-config"), "cfg.yaml:5", "alias")  # a4: 9^5 values
    one_error(invoke("train", TINY, "--set", f"name={flow_bomb(6)}", "--print-config"), "--set name:", "alias")


def test_unprintable_characters_are_not_yaml(tmp_path: Path) -> None:
    """PyYAML's reader refuses control characters as it starts, before composing anything."""
    one_error(invoke("train", write(tmp_path, "name: \x1b[31m\n"), "--print-config"), "cfg.yaml", "not valid YAML",
              "special characters")
    # In a --set value such text is not YAML, so it is taken as a string, which validation then judges.
    one_error(invoke("train", TINY, "--set", "name=\x1b", "--print-config"), "--set", "name")


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    one_error(invoke("train", write(tmp_path, "name: &x [1, *x]\n"), "--print-config"), "cfg.yaml:1", "recursive")


def test_a_huge_value_is_quoted_in_one_short_line(tmp_path: Path) -> None:
    """Under the alias budget, a 2,401-item list in a string field, and a 500 KB string: the message
    quotes the start of each, never all of it (a 7-level bomb used to print a 39 MB line)."""
    text = "model:\n  activation: " + flow_bomb(4, width=7) + "\n"
    line = one_error(invoke("train", write(tmp_path, text), "--print-config"), "model.activation", "is not one of")
    assert len(line) < 300
    line = one_error(invoke("train", write(tmp_path, "name: '" + "x" * 500_000 + " /'\n"), "--print-config"),
                     "name", "must be letters")
    assert len(line) < 300
    assert len(shorten(["y" * 10**6] * 10**3)) <= 60 and len(shorten(10**5000)) <= 60


# -- row 14: endless or huge config files ---------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_dev_zero_as_config_is_refused_after_one_mebibyte() -> None:
    one_error(invoke("train", "/dev/zero", "--print-config"), "/dev/zero", "larger than 1 MiB", "not a regular file")


def test_a_config_over_one_mebibyte_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"name: x\n" + b"#" * (safe_yaml.MAX_BYTES + 10))
    one_error(invoke("train", str(path), "--print-config"), "big.yaml", "larger than 1 MiB")


def test_an_endless_pipe_is_read_only_up_to_the_limit(tmp_path: Path) -> None:
    """A FIFO whose writer never stops: the loader reads 1 MiB + 1 byte and gives up, and the writer
    then sees its reader gone."""
    fifo = tmp_path / "endless.yaml"
    os.mkfifo(fifo)
    written = [0]

    def writer() -> None:
        try:
            with open(fifo, "wb") as f:
                while written[0] < 64 * safe_yaml.MAX_BYTES:  # a bound so that a bug cannot hang the test run
                    f.write(b"# " * 32768)
                    written[0] += 65536
        except (BrokenPipeError, OSError):
            pass

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    one_error(invoke("train", str(fifo), "--print-config"), "endless.yaml", "larger than 1 MiB")
    thread.join(timeout=10)
    assert written[0] < 4 * safe_yaml.MAX_BYTES  # stopped by the reader closing, not by the bound


def test_many_small_values_stop_composing_at_the_budget(tmp_path: Path) -> None:
    path = write(tmp_path, "name: [" + ", ".join(["1"] * 300_000) + "]\n")
    one_error(invoke("train", path, "--print-config"), "cfg.yaml:1", "more than 10,000 values")


# -- row 15: duplicate keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("training:\n  epochs: 3\nmodel:\n  activation: relu\ntraining:\n  batch_size: 5\n",
         ("cfg.yaml:5", "duplicate key 'training'", "first at line 1")),
        ("training:\n  epochs: 3\n  batch_size: 4\n  epochs: 5\n", ("cfg.yaml:4", "duplicate key 'epochs'", "line 2")),
        ("training: {epochs: 1, epochs: 2}\n", ("cfg.yaml:1", "duplicate key 'epochs'", "first at line 1")),
    ],
)
def test_duplicate_keys_name_both_lines(tmp_path: Path, text: str, needles: tuple[str, ...]) -> None:
    one_error(invoke("train", write(tmp_path, text), "--print-config"), *needles)


def test_a_merge_key_may_repeat_what_it_merges(tmp_path: Path) -> None:
    """`<<: *base` then an override of one of base's keys is what merging is for, not a duplicate."""
    text = "base: &b {epochs: 3, batch_size: 4}\n"
    with pytest.raises(ConfigError, match="base: unknown field"):  # the merge itself was accepted
        config.loads(text + "training:\n  <<: *b\n  epochs: 5\n")


# -- row 16: --set errors name --set ---------------------------------------------------------------------


def test_an_unknown_section_from_set_blames_set() -> None:
    line = one_error(invoke("train", TINY, "--set", "foo.bar=1", "--print-config"), "--set", "foo: unknown field")
    assert "tiny.yaml" not in line
    line = one_error(invoke("train", TINY, "--set", "training.foo=1", "--print-config"), "--set", "training.foo")
    assert "tiny.yaml" not in line


def test_a_file_error_still_names_the_file_when_set_is_used(tmp_path: Path) -> None:
    path = write(tmp_path, "foo:\n  x: 1\n")
    one_error(invoke("train", path, "--set", "foo.bar=1", "--print-config"), "cfg.yaml:1", "foo: unknown field")


# -- row 17: a config that is a directory or cannot be read ----------------------------------------------


@pytest.mark.parametrize("command", [["train"], ["explain"], ["gradcheck", "--random-data"]])
def test_a_directory_as_config_is_one_line(tmp_path: Path, command: list[str]) -> None:
    one_error(invoke(command[0], str(tmp_path), *command[1:]), str(tmp_path), "is a directory")


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs /proc")
def test_a_file_that_fails_to_read_is_one_line() -> None:
    """/proc/self/mem opens but its first read fails (EIO): an unreadable file even for root."""
    one_error(invoke("train", "/proc/self/mem", "--print-config"), "/proc/self/mem", "cannot read config file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_a_file_without_read_permission_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text("name: x\n")
    path.chmod(0)
    for command in (["train", str(path), "--print-config"], ["explain", str(path)], ["gradcheck", str(path)]):
        one_error(invoke(*command), "secret.yaml", "cannot read config file", "denied")


# -- row 2: sizes no machine can hold ---------------------------------------------------------------------


@pytest.fixture
def eight_gib(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with 8 GiB available, whatever this one has, so the verdicts do not depend on it."""
    monkeypatch.setattr(resources, "available_bytes", lambda: 8 * GiB)


@pytest.mark.parametrize("layers", ["[784, 1000000000000, 10]", f"[784, {10**41}, 10]", "[784, 50000, 50000, 10]"])
@pytest.mark.parametrize("command", [["explain"], ["gradcheck", "--random-data"]])
def test_huge_layers_are_refused_before_allocating(eight_gib: None, layers: str, command: list[str]) -> None:
    line = one_error(invoke(command[0], TINY, *command[1:], "--set", f"model.layers={layers}"),
                     "needs about", "use smaller model.layers")
    assert "[784, 50000" not in layers or "8.0 GiB available" in line


def test_training_estimate_refuses_what_cannot_fit_and_passes_what_can(eight_gib: None) -> None:
    big = config.loads("", overrides=["model.layers=[784, 50000, 50000, 10]"])
    with pytest.raises(ResourceError, match=r"training \[784, 50000, 50000, 10\] in float32 needs about .* GiB .*; "
                                            r"this machine has 8.0 GiB available; use smaller model.layers"):
        resources.check_training(big, 60_000, 10_000)
    with pytest.raises(ResourceError, match="more than any machine has"):
        resources.check_training(config.loads("", overrides=[f"model.layers=[784, {10**41}, 10]"]), 60_000, 10_000)
    batch = config.loads("", overrides=["training.batch_size=5000000"])
    with pytest.raises(ResourceError, match="lower training.batch_size"):
        resources.check_training(batch, 6_000_000, 10_000)
    resources.check_training(config.load(CONFIGS / "mnist.yaml"), 50_000, 10_000)  # the real config fits


def test_the_training_estimate_counts_what_training_allocates() -> None:
    """[784, 100, 10] float32, momentum, batch 10, 1,000 examples: the parts, by hand."""
    cfg = config.loads("", overrides=["training.optimizer.name=momentum", "training.batch_size=10"])
    P = (784 * 100 + 100 + 100 * 10 + 10) * 4
    est = resources.training_estimate(cfg, 1000, 500)
    assert est.parts["parameters"] == P and est.parts["optimizer state"] == P and est.parts["gradients"] == P
    assert est.parts["batch buffers"] == 3 * 10 * 110 * 4 + 10 * 784 * 4 + 1000 * (16 + 10 * 4)
    assert est.parts["evaluation buffers"] == 3 * 500 * 110 * 4 + P + 500 * 8


def test_eval_batch_size_bounds_the_evaluation_buffers() -> None:
    assert resources.eval_batch_size((784, 512, 256, 10), "float32") == resources.EVAL_BATCH  # ordinary: unchanged
    wide = resources.eval_batch_size((784, 200_000, 10), "float32")
    assert wide == resources.EVAL_BUDGET_BYTES // (3 * 200_010 * 4) == 111
    assert resources.eval_batch_size((784, 10**12, 10), "float64", budget_bytes=1) == 1
    for sizes in [(784, 30, 10), (784, 200_000, 10), (5, 3_000_000, 7)]:
        m = resources.eval_batch_size(sizes, "float64", 64 * 2**20)
        assert 3 * m * sum(sizes[1:]) * 8 <= 64 * 2**20 or m == 1


def test_available_memory_is_read_and_units_are_human() -> None:
    available = resources.available_bytes()
    assert available is None or available > 0
    assert resources.human(int(18.6 * GiB)) == "18.6 GiB" and resources.human(10**45).startswith("10^45")


# -- row 13: gradcheck's seed and batch ------------------------------------------------------------------


def test_gradcheck_negative_seed_is_one_line() -> None:
    one_error(invoke("gradcheck", TINY, "--random-data", "--seed", "-1"), "--seed -1", ">= 0")


def test_gradcheck_huge_batch_is_refused_before_allocating(eight_gib: None) -> None:
    one_error(invoke("gradcheck", TINY, "--random-data", "--batch", "100000000"),
              "gradcheck of [784, 16, 10] on 100,000,000 examples", "use a smaller --batch")


# -- rows 3, 4, 18: crafted checkpoints ----------------------------------------------------------------


def tiny_checkpoint(tmp_path: Path, optimizer: str = "momentum") -> Path:
    """A valid checkpoint as training writes it: [784, 6, 10], momentum state, a full position."""
    cfg = config.loads("", overrides=["model.layers=[784, 6, 10]", f"training.optimizer.name={optimizer}",
                                      "training.epochs=3"])
    net = Network.from_config(cfg.model, 0, "float32")
    rng = np.random.default_rng(0)
    state = {"rng": rng.bit_generator.state, "optimizer_t": 40,
             "position": {"epoch": 1, "batch": 0, "step": 40, "loss_sum": 0.0, "correct": 0, "seen": 0,
                          "epoch_rng_state": {}}}
    opt = {f"v{i}": np.zeros_like(p) for i, p in enumerate(net.params())} if optimizer == "momentum" else {}
    run = tmp_path / "run"
    run.mkdir()
    checkpoint.save(run / "last.npz", Checkpoint(cfg, net, opt, epoch=1, step=40, rng_state=state, best_accuracy=0.5))
    return run / "last.npz"


def rewrite(path: Path, **changes: Any) -> Path:
    """The checkpoint at `path` with some arrays replaced (None removes one), written back in place."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = np.asarray(value)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())
    return path


def replace_member(path: Path, name: str, data: bytes) -> None:
    """Write `data` as the member `name` of the .npz at `path`, as a crafted file would have it."""
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    members[name] = data
    with zipfile.ZipFile(path, "w") as zf:
        for key, value in members.items():
            zf.writestr(key, value)


def state_with(path: Path, edit: Any) -> str:
    with np.load(path, allow_pickle=False) as npz:
        state = json.loads(str(npz["rng_state"]))
    edit(state)
    return json.dumps(state)


def test_a_valid_checkpoint_round_trips(tmp_path: Path) -> None:
    ckpt = checkpoint.load(tiny_checkpoint(tmp_path))
    assert ckpt.epoch == 1 and ckpt.step == 40 and ckpt.network.sizes == (784, 6, 10)
    assert set(ckpt.optimizer_state) == {"v0", "v1", "v2", "v3"} and ckpt.rng_state["position"]["step"] == 40


CRAFTED = [
    ("version", "1", "version must be an integer"),
    ("epoch", "two", "epoch must be an integer"),
    ("epoch", [1, 2, 3], "epoch must be an integer"),
    ("epoch", -1, "epoch is -1"),
    ("step", 10**18, "step is 1000000000000000000, outside"),
    ("best_accuracy", float("nan"), "best_accuracy is nan"),
    ("format", "something-else", "not a bpcli checkpoint"),
    ("w2", np.zeros((6, 783), np.float32), "w2 has shape (6, 783)"),
    ("b3", np.zeros(10, np.int64), "b3 has dtype int64"),
    ("w3", None, "missing 'w3'"),
    ("opt_v1", np.zeros((6, 784), np.float32), "opt_v1 has shape (6, 784)"),
    ("opt_m0", np.zeros((6, 784), np.float32), "opt_m0 is not part of the state of a momentum optimizer"),
    ("config", "training: {epochs: 1, epochs: 2}", "stored config is not valid"),
    ("config", alias_bomb(8), "alias"),
    ("rng_state", "", "rng_state is not valid JSON"),
    ("rng_state", "[]", "rng_state must be a JSON object"),
    ("rng_state", '{"rng": {}, "position": {}, "optimizer_t": 0}', "rng_state.rng is not a PCG64 generator state"),
]


@pytest.mark.parametrize(("field", "value", "needle"), CRAFTED, ids=[f"{c[0]}-{i}" for i, c in enumerate(CRAFTED)])
def test_crafted_field_is_refused_naming_it(tmp_path: Path, field: str, value: Any, needle: str) -> None:
    path = rewrite(tiny_checkpoint(tmp_path), **{field: value})
    line = one_error(invoke("evaluate", str(path)), str(path), needle)
    assert len(line) < 400


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda s: s["position"].update(batch=10**30), "rng_state.position.batch is 1000000000000000000000000000000"),
        (lambda s: s["position"].update(batch=41), "is impossible after 40 updates"),
        (lambda s: s["position"].update(batch=3), "epoch_rng_state is not a PCG64 generator state"),
        (lambda s: s["position"].update(epoch=7), "disagrees with epoch 1"),
        (lambda s: s["position"].update(loss_sum=-1), "loss_sum is -1"),
        (lambda s: s["position"].update(extra=1), "rng_state.position must be an object"),
        (lambda s: s.update(position=[]), "rng_state.position must be an object"),
        (lambda s: s["rng"]["state"].update(state="x"), "rng_state.rng is not a PCG64 generator state"),
        (lambda s: s.pop("optimizer_t"), "rng_state lacks optimizer_t"),
        (lambda s: s.update(optimizer_t=-3), "optimizer_t is -3"),
    ],
)
def test_crafted_position_is_refused_on_resume(tmp_path: Path, edit: Any, needle: str) -> None:
    path = tiny_checkpoint(tmp_path)
    rewrite(path, rng_state=state_with(path, edit))
    one_error(invoke("train", "--resume", str(path.parent)), "rng_state", needle)


def test_a_huge_declared_shape_is_refused_from_the_header(tmp_path: Path) -> None:
    """A .npy header that declares 10^6 x 10^6 floats (3.6 TiB) over a few bytes of data: refused
    before any of it is read (this asked for 37 GiB and died with a MemoryError)."""
    path = tiny_checkpoint(tmp_path)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
    replace_member(path, "w2.npy", header.getvalue() + b"\0" * 64)
    one_error(invoke("evaluate", str(path)), "w2 declares shape (1000000, 1000000)", "TiB")


def test_a_checkpoint_too_large_for_memory_is_refused_before_reading(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tiny_checkpoint(tmp_path)
    monkeypatch.setattr(resources, "available_bytes", lambda: 10_000)
    one_error(invoke("evaluate", str(path)), "the network in", "needs about", "9.8 KiB available")


def test_an_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = tiny_checkpoint(tmp_path)
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    replace_member(path, "epoch.npy", buffer.getvalue())
    one_error(invoke("evaluate", str(path)), "epoch has dtype object")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("command", [["evaluate", "{ckpt}"], ["gradcheck", "--checkpoint", "{ckpt}", "--random-data"],
                                     ["train", "--resume", "{run}"], ["explain", "--checkpoint", "{ckpt}"]])
def test_non_finite_weights_are_not_a_good_checkpoint(tmp_path: Path, bad: float, command: list[str]) -> None:
    path = tiny_checkpoint(tmp_path)
    with np.load(path) as npz:
        w3 = npz["w3"].copy()
    w3[2, 1] = bad
    rewrite(path, w3=w3)
    args = [a.format(ckpt=path, run=path.parent) for a in command]
    one_error(invoke(*args), str(path), "w3 has 1 non-finite value (NaN or inf)", "not a good checkpoint")


def test_save_refuses_non_finite_parameters_and_keeps_the_last_good_file(tmp_path: Path) -> None:
    path = tiny_checkpoint(tmp_path)
    before = path.read_bytes()
    good = checkpoint.load(path)
    good.network.b[2][0] = np.nan
    with pytest.raises(DivergenceError, match=r"last.npz: not saved: b2 has 1 non-finite value "):
        checkpoint.save(path, good)
    good.network.b[2][0] = 0.0
    good.optimizer_state["v2"][0, 0] = np.inf
    with pytest.raises(DivergenceError, match="opt_v2 has 1 non-finite value"):
        checkpoint.save(path, good)
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == ["last.npz"]


def test_not_a_zip_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "x.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(CheckpointError, match="x.npz"):
        checkpoint.load(tmp_path / "x.npz")
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint.load(tmp_path / "nope.npz")


def test_a_checkpoint_without_a_position_loads_but_is_not_resumable(tmp_path: Path) -> None:
    """rng_state {} is what tools and tests write: fine to evaluate, nothing to resume from."""
    path = tiny_checkpoint(tmp_path)
    rewrite(path, rng_state="{}")
    ckpt = checkpoint.load(path)
    assert ckpt.rng_state == {}
    with pytest.raises(CheckpointError, match="no training position"):
        checkpoint.check_resumable(ckpt, path)
    (tmp_path / "ok").mkdir()
    checkpoint.check_resumable(checkpoint.load(tiny_checkpoint(tmp_path / "ok")), path)


# -- what the machine refuses, and what the command line itself refuses --------------------------------


def _bpcli(*args: str, cwd: Path, stdout: Any = None) -> Any:
    """The real entry point (`main`, as the installed script runs it), not CliRunner: usage errors and
    output errors are shaped there."""
    import subprocess
    import sys

    from conftest import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "bpcli", *args], cwd=cwd, env=env, text=True, timeout=60,
                          stdout=stdout if stdout is not None else subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize(("args", "needle"), [
    (["train", "--bogus"], "No such option: --bogus"),
    (["bogus"], "No such command 'bogus'"),
    (["show", "x", "--weights", "-1"], "'--weights'"),
    (["gradcheck", "--batch", "0"], "'--batch'"),
    (["train", TINY, "extra"], "unexpected extra argument"),
])
def test_a_usage_error_is_one_line_naming_the_option_and_the_help(tmp_path: Path, args: list[str], needle: str) -> None:
    """Typer drew these as a six-line box."""
    done = _bpcli(*args, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and needle in done.stderr, done.stderr
    assert "-h shows the usage" in done.stderr


@pytest.mark.parametrize("args", [["evaluate", "a" * 300], ["init", "tiny", "b" * 300 + ".yaml"],
                                  ["train", TINY, "--set", "data.path=" + "c" * 300]])
def test_a_name_too_long_for_the_file_system_is_a_user_error(tmp_path: Path, args: list[str]) -> None:
    done = _bpcli(*args, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: ") and "File name too long" in done.stderr and "bug" not in done.stderr


def test_an_output_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full (a device whose writes fail with ENOSPC) on this system")
    for args in (["configs"], ["--help"], ["data", "where"]):
        with open("/dev/full", "w") as full:
            done = _bpcli(*args, cwd=tmp_path, stdout=full)
        assert done.returncode == 2 and done.stderr == "error: writing the output: No space left on device\n", args


def test_escape_sequences_and_emoji_codes_in_a_path_are_shown_as_text(tmp_path: Path) -> None:
    """A path from a file or the command line must not clear the screen or retitle the window, and
    `x:x:` is a name, not an emoji."""
    result = invoke("evaluate", str(tmp_path / "\x1b[2J\x1b]0;PWNED\x07"))
    line = one_error(result)
    assert "\x1b" not in line and "\x07" not in line and "\\x1b[2J\\x1b]0;PWNED\\x07" in line
    assert "x:x:" in one_error(invoke("evaluate", str(tmp_path / "x:x:")))


@pytest.fixture(scope="module")
def small_run(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import train_tiny

    return train_tiny(tmp_path_factory.mktemp("hostile") / "run", mnist_dir, "data.limit=600",
                      "data.validation_size=100", "training.epochs=2", "model.layers=[784, 6, 5, 10]")


def _second_row(run: Path, edit: Any) -> bytes:
    first, second = run.joinpath("metrics.jsonl").read_text().splitlines()[:2]
    return (first + "\n" + edit(json.loads(second)) + "\n").encode()


@pytest.mark.parametrize("edit", [
    lambda row: "[" * 100_000 + "]" * 100_000,                      # deeper than the JSON parser goes
    lambda row: json.dumps({**row, "val_accuracy": 512}),            # an accuracy of 51200%
    lambda row: json.dumps({**row, "val_loss": float("nan")}),
    lambda row: json.dumps({**row, "epoch": -1}),
    lambda row: json.dumps({**row, "layers": [5, *row["layers"]]}),  # a layer that is no mapping
    lambda row: json.dumps({**row, "layers": [{**row["layers"][0], "l": "two"}]}),
    lambda row: json.dumps({**row, "learning_rate": True}),
], ids=["deep", "accuracy", "nan", "epoch", "layer", "layer-index", "bool"])
def test_a_crafted_metrics_row_ends_the_rows_read_in_every_reader(small_run: Path, tmp_path: Path, edit: Any) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    (run / "metrics.jsonl").write_bytes(_second_row(small_run, edit))
    listed = invoke("runs", str(tmp_path), "--json")
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert row["best_epoch"] == 1 and 0 <= row["best_val_accuracy"] <= 1  # from the one row read
    drawn = invoke("plot", str(run))
    assert drawn.exit_code == 0 and "metrics.jsonl line 2 is cut off or not a metrics row" in " ".join(
        drawn.stdout.split()), drawn.output
    assert invoke("runs", "compare", str(run), str(small_run)).exit_code == 0


def test_plot_of_a_bad_first_line_says_so_not_that_the_file_is_empty(small_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    (run / "metrics.jsonl").write_text("null\n")
    drawn = invoke("plot", str(run))
    assert "metrics.jsonl line 1 is cut off or not a metrics row; nothing to draw for it" in " ".join(drawn.output.split())


def test_a_directory_where_the_lock_file_should_be_breaks_no_listing(small_run: Path, tmp_path: Path) -> None:
    import shutil

    for name in ("a", "b"):
        shutil.copytree(small_run, tmp_path / name)
    (tmp_path / "b" / ".bpcli.lock").unlink()
    (tmp_path / "b" / ".bpcli.lock").mkdir()
    listed = invoke("runs", str(tmp_path), "--json")
    assert listed.exit_code == 0, listed.output
    assert sorted(r["name"] for r in json.loads(listed.stdout)) == ["a", "b"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--model", ":X"], "no file or module before the ':'"),         # importlib raised from its own code
    (["--entries", "3", "--eps", "1e308"], "use at most 0.1"),        # θ ± h overflowed: a FAIL, exit 1
])
def test_gradcheck_refuses_what_cannot_be_checked_in_one_line(args: list[str], needle: str) -> None:
    one_error(invoke("gradcheck", TINY, *args), needle)


def test_a_closed_standard_output_is_one_line_not_a_silent_success(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "bpcli", "configs"], cwd=tmp_path, env=env, stderr=subprocess.PIPE,
                          text=True, timeout=60, preexec_fn=lambda: os.close(1))  # as `bpcli configs >&-`
    assert done.returncode == 2 and done.stderr.startswith("error: standard output is closed")
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize("name", ["result.json", ".commit.json", ".bpcli.lock", "dataset.json"])
def test_a_fifo_in_a_run_directory_hangs_nothing(small_run: Path, tmp_path: Path, name: str) -> None:
    """Opening a FIFO waits for a writer: `bpcli runs` waited forever on a FIFO result.json, .commit.json
    or .bpcli.lock, and evaluate/--resume hit 'Illegal seek' (exit 4) on a FIFO lock."""
    import shutil
    import subprocess
    import sys

    from conftest import ROOT

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    (run / name).unlink(missing_ok=True)
    os.mkfifo(run / name)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for argv in (["runs", str(tmp_path), "--json"], ["evaluate", str(run)], ["runs", "compare", str(run), str(small_run)]):
        done = subprocess.run([sys.executable, "-m", "bpcli", *argv], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode in (0, 2) and "internal error" not in done.stderr, (argv, done.stderr)
        assert done.returncode == 0 or done.stderr.count("\n") == 1, done.stderr
