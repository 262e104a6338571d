"""`--set` wins over the file, only for the key it names, and the last `--set` of a key wins.

Why: an override that replaced a whole section, or lost to the file, would train a different network
than the command line says, and only the resolved values show it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bpcli import config
from bpcli.cli import app
from bpcli.errors import ConfigError

# Every value differs from the schema's default, so "from the file" and "a default" are told apart.
FILE = """\
name: precedence
training:
  epochs: 5
  learning_rate: 0.3
  optimizer:
    name: momentum
    momentum: 0.5
data:
  validation_size: 123
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "precedence.yaml"
    path.write_text(FILE)
    return path


def test_set_overrides_the_file_and_only_the_named_key(config_file: Path) -> None:
    cfg = config.load(config_file, ["training.epochs=2", "training.optimizer.name=adam"])
    assert cfg.training.epochs == 2 and cfg.training.optimizer.name == "adam"
    # The sibling keys keep the file's values, not the defaults.
    assert cfg.training.learning_rate == 0.3 and cfg.training.optimizer.momentum == 0.5
    assert cfg.data.validation_size == 123 and cfg.name == "precedence"
    # Without --set the file's values stand.
    plain = config.load(config_file)
    assert (plain.training.epochs, plain.training.optimizer.name) == (5, "momentum")


def test_the_last_set_of_a_key_wins(config_file: Path) -> None:
    assert config.load(config_file, ["training.epochs=2", "training.epochs=4"]).training.epochs == 4


def test_set_can_add_a_section_the_file_lacks(config_file: Path) -> None:
    cfg = config.load(config_file, ["training.schedule.name=step", "training.schedule.gamma=0.5"])
    assert (cfg.training.schedule.name, cfg.training.schedule.gamma) == ("step", 0.5)
    assert cfg.training.schedule.step_epochs == 10  # the rest of the new section: defaults
    assert cfg.training.epochs == 5


def test_errors_point_at_set_or_at_the_files_line(config_file: Path) -> None:
    # A bad value given by --set is blamed on --set; a bad value in the file on its line, even when
    # another key of the same section was overridden.
    with pytest.raises(ConfigError, match=r"^--set: training\.learning_rate: must be >= 1e-10"):
        config.load(config_file, ["training.learning_rate=-1"])
    bad = config_file.with_name("bad.yaml")
    bad.write_text(FILE.replace("momentum: 0.5", "momentum: 1.5"))
    with pytest.raises(ConfigError, match=r"bad\.yaml:7: training\.optimizer\.momentum: must be in \[0, 1\)"):
        config.load(bad, ["training.optimizer.name=sgd"])
    # Overriding the bad key itself fixes the file's mistake.
    assert config.load(bad, ["training.optimizer.momentum=0.25"]).training.optimizer.momentum == 0.25


def test_cli_resolved_config_shows_set_over_file(config_file: Path) -> None:
    result = CliRunner().invoke(app, ["train", str(config_file), "--set", "training.learning_rate=0.05",
                                      "--set", "data.limit=7", "--print-config"])
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load(result.output)
    assert resolved["training"]["learning_rate"] == 0.05 and resolved["data"]["limit"] == 7
    assert resolved["training"]["epochs"] == 5 and resolved["data"]["validation_size"] == 123
    assert resolved["training"]["optimizer"] == {"name": "momentum", "momentum": 0.5, "beta1": 0.9,
                                                 "beta2": 0.999, "epsilon": 1e-08}
