"""Config loading: the shipped configs, overrides, and one-line errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bpcli import config
from bpcli.cli import app
from bpcli.errors import ConfigError

from conftest import CONFIGS


@pytest.mark.parametrize("name", ["tiny", "nielsen", "nielsen-ce", "mnist"])
def test_shipped_configs_load(name: str) -> None:
    cfg = config.load(CONFIGS / f"{name}.yaml")
    assert cfg.name == name
    assert cfg.model.layers[0] == 784 and cfg.model.layers[-1] == 10


def test_every_shipped_field_has_a_comment() -> None:
    for path in CONFIGS.glob("*.yaml"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#") and not line.rstrip().endswith(":"):
                assert "#" in line, f"{path.name}:{n} has no comment: {line!r}"


def test_nielsen_is_the_classic_setup() -> None:
    cfg = config.load(CONFIGS / "nielsen.yaml")
    assert cfg.model.layers == (784, 30, 10)
    assert (cfg.model.activation, cfg.model.cost, cfg.model.init) == ("sigmoid", "quadratic", "normal")
    t = cfg.training
    assert (t.optimizer.name, t.learning_rate, t.batch_size, t.epochs) == ("sgd", 3.0, 10, 30)


def test_overrides_are_type_checked() -> None:
    cfg = config.load(CONFIGS / "tiny.yaml", ["training.epochs=3", "model.layers=[784, 20, 10]", "training.optimizer.name=adam"])
    assert cfg.training.epochs == 3 and cfg.model.layers == (784, 20, 10) and cfg.training.optimizer.name == "adam"
    with pytest.raises(ConfigError, match=r"--set: training\.epochs: expected an integer"):
        config.load(CONFIGS / "tiny.yaml", ["training.epochs=three"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        config.load(CONFIGS / "tiny.yaml", ["training.epochs"])


@pytest.mark.parametrize(
    "text,message",
    [
        ("model:\n  layrs: [784, 10]\n", r"cfg\.yaml:2: model\.layrs: unknown field; did you mean 'layers'\?"),
        ("training:\n  epochs: 0\n", r"cfg\.yaml:2: training\.epochs: must be in 1\.\.100,000, got 0"),
        ("training:\n  learning_rate: -0.1\n", r"training\.learning_rate: must be >= 1e-10"),
        ("training:\n  learning_rate: .nan\n", r"training\.learning_rate: must be a finite number"),
        ("model:\n  layers: [784, 0, 10]\n", r"model\.layers\[1\]: layer sizes must be positive"),
        ("model:\n  layers: []\n", r"model\.layers: needs at least two sizes"),
        ("model:\n  activation: softplus\n", r"model\.activation: 'softplus' is not one of sigmoid \| tanh \| relu"),
        ("model:\n  activation: sigmod\n", r"did you mean 'sigmoid'"),
        ("training:\n  batch_size: 3.5\n", r"training\.batch_size: expected an integer, got a number 3.5"),
        ("- 1\n- 2\n", r"a config must be a YAML mapping"),
        ("model: [1, 2\n", r"cfg\.yaml:\d+: not valid YAML"),
        ("model:\n  output: identity\n  cost: cross_entropy\n", r"cross_entropy needs a softmax or sigmoid output"),
    ],
)
def test_config_errors_name_the_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        config.loads(text, source="cfg.yaml")
    assert "\n" not in str(info.value)


def test_yaml_number_without_dot_is_accepted() -> None:
    assert config.loads("training:\n  optimizer:\n    epsilon: 1e-7\n").training.optimizer.epsilon == 1e-7


def test_cli_reports_config_errors_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  layers: [784, 10]\ntraining:\n  lerning_rate: 0.1\n")
    result = CliRunner().invoke(app, ["train", str(bad)])
    assert result.exit_code == 2
    assert "bad.yaml:4: training.lerning_rate: unknown field; did you mean 'learning_rate'?" in result.output
    assert "Traceback" not in result.output


def test_cli_print_config_shows_the_resolved_config() -> None:
    result = CliRunner().invoke(app, ["train", str(CONFIGS / "tiny.yaml"), "--set", "training.epochs=7", "--print-config"])
    assert result.exit_code == 0
    resolved = config.loads(result.output)
    assert resolved.training.epochs == 7 and resolved.model.layers == (784, 16, 10)


def test_missing_config_file() -> None:
    result = CliRunner().invoke(app, ["train", "nope.yaml"])
    assert result.exit_code == 2 and "nope.yaml: no such config file" in result.output


def test_run_name_cannot_escape_the_runs_directory() -> None:
    with pytest.raises(ConfigError, match="name: '../x' must be letters"):
        config.loads("name: ../x\n")
    assert config.loads("", name="my config").name == "my-config"
    # Letters of any script name a run (a file ünï 日本.yaml gave the run name n-----).
    assert config.loads("", name="ünï 日本").name == "ünï-日本" and config.loads("name: 日本\n").name == "日本"
    for bad in ("a/b", "..", "a b", ".x"):
        with pytest.raises(ConfigError, match="must be letters"):
            config.loads(f"name: '{bad}'\n")


HELPS = [[], ["train"], ["evaluate"], ["explain"], ["gradcheck"], ["plot"], ["show"], ["configs"], ["init"],
         ["predict"], ["runs"], ["export"], ["data"], ["data", "download"], ["data", "verify"], ["data", "where"],
         ["sweep"], ["sweep", "run"], ["sweep", "show"]]


@pytest.mark.parametrize("argv", HELPS, ids=[" ".join(a) or "bpcli" for a in HELPS])
def test_every_help_fits_60_columns_whole(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Below 80 columns help is Click's plain layout: Typer's boxes cut option names ('--print-con…')."""
    from bpcli.cli import console

    monkeypatch.setattr(console, "_width", 60)
    result = CliRunner().invoke(app, [*argv, "--help"], env={"COLUMNS": "60"}, terminal_width=60)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("Usage: bpcli") and max(map(len, lines)) <= 60, result.output
    assert "…" not in result.output and "\\[" not in result.output and "╭" not in result.output


@pytest.mark.parametrize("columns", ["60", "100"])
@pytest.mark.parametrize("argv", [[], ["data"], ["sweep"]], ids=["bpcli", "data", "sweep"])
def test_a_group_alone_prints_its_help_once(argv: list[str], columns: str) -> None:
    """Typer's no-args help was drawn twice (once when the error was made, once more by main), and not
    at all below 80 columns."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": columns}
    done = subprocess.run([sys.executable, "-m", "bpcli", *argv], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and (done.stdout + done.stderr).count("Usage: ") == 1, done.stdout + done.stderr
