"""bpcli as an installed tool: built-in configs by name, `bpcli init`, data found wherever bpcli keeps
it, and the wheel itself installed into a fresh virtual environment and used from an empty directory,
with no repository on the path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bpcli import builtin, config
from bpcli.cli import app

from conftest import CONFIGS, ROOT


def test_every_package_of_the_source_tree_is_listed_for_the_build() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "bpcli").rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


def test_a_bare_name_is_a_built_in_config_and_a_file_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert config.load("tiny").model.layers == (784, 16, 10)
    assert builtin.lookup("tiny.yaml") == CONFIGS / "tiny.yaml"
    (tmp_path / "tiny").write_text("model:\n  layers: [784, 8, 10]\n")
    assert config.load("tiny").model.layers == (784, 8, 10)  # the file named tiny, not the built-in
    result = CliRunner().invoke(app, ["train", "nosuch"])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: nosuch: no such config file, and no built-in config of that name; "
                                     f"built-in: {', '.join(builtin.names())} (bpcli configs lists them)")


def test_configs_lists_each_with_its_network_and_what_it_reaches() -> None:
    result = CliRunner().invoke(app, ["configs"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len([line for line in lines if line.split(" ")[0] in builtin.names()]) == len(builtin.names()) >= 7
    assert any(line.startswith("mnist") and "[784, 512, 256, 10] relu: 98.48% test accuracy" in line for line in lines)


def test_init_writes_a_portable_copy_and_never_overwrites_without_force(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(app, ["init", "tiny"]).exit_code == 0
    text = (tmp_path / "tiny.yaml").read_text()
    assert "  path: mnist" in text and "../data" not in text and text.startswith("# A tiny network")
    cfg = config.load(tmp_path / "tiny.yaml")
    assert Path(cfg.data.path) in {p.path for p in builtin.places("mnist", tmp_path) if p.found}
    (tmp_path / "tiny.yaml").write_text("mine")
    again = CliRunner().invoke(app, ["init", "tiny"])
    assert again.exit_code == 2 and "tiny.yaml exists; pass --force" in again.output
    assert (tmp_path / "tiny.yaml").read_text() == "mine"
    assert CliRunner().invoke(app, ["init", "tiny", "--force"]).exit_code == 0
    assert CliRunner().invoke(app, ["init", "mnist", str(tmp_path / "sub.yaml")]).exit_code == 0
    assert CliRunner().invoke(app, ["init", "nosuch"]).exit_code == 2
    os.mkfifo(tmp_path / "fifo.yaml")  # --force replaced a device or FIFO with a plain file
    refused = CliRunner().invoke(app, ["init", "tiny", str(tmp_path / "fifo.yaml"), "--force"])
    assert refused.exit_code == 2 and "not a regular file" in refused.stderr


def test_data_is_found_in_the_per_user_directory_then_in_bpclis_own_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mnist_dir: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    user = tmp_path / "xdg" / "bpcli" / "datasets" / "mnist"
    assert builtin.user_data_dir() == user.parent
    shipped = builtin.shipped_mnist()
    assert shipped is not None and config.resolve_data_path("mnist", tmp_path) == str(shipped)
    user.mkdir(parents=True)
    for p in mnist_dir.glob("*.gz"):
        (user / p.name).symlink_to(p)
    assert config.resolve_data_path("mnist", tmp_path) == str(user)  # the user's copy comes first
    where = CliRunner().invoke(app, ["data", "where", "mnist"])
    assert where.exit_code == 0
    assert [line.split()[1] for line in where.output.splitlines()[:3]] == ["-", "used", "found"]


def test_a_built_in_configs_missing_dataset_belongs_in_the_per_user_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Next to a shipped config is inside the installed package: the error sent users to download there
    (`--dir .../site-packages/bpcli/data/fashion-mnist`)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    result = CliRunner().invoke(app, ["train", "fashion-mnist", "-q"])
    assert result.exit_code == 2
    expected = tmp_path / "xdg" / "bpcli" / "datasets" / "fashion-mnist"
    assert f"error: data path {expected} not found" in result.stderr
    assert "get the data with `bpcli data download fashion-mnist`," in result.stderr and "--dir" not in result.stderr


@pytest.mark.slow
def test_the_wheel_works_from_an_empty_directory_in_a_fresh_environment(tmp_path: Path) -> None:
    dist, venv, empty = tmp_path / "dist", tmp_path / "venv", tmp_path / "empty"
    empty.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(dist)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("bpcli-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {"bpcli/configs/mnist.yaml", "bpcli/_mnist/train-images-idx3-ubyte.gz",
            "bpcli-" + wheel.name.split("-")[1] + ".dist-info/licenses/LICENSE"} <= set(names)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, capture_output=True,
                   timeout=600)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"XDG_DATA_HOME": str(tmp_path / "xdg"), "PATH": f"{venv / 'bin'}:{env.get('PATH', '')}",
            "COLUMNS": "100"}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(venv / "bin" / "bpcli"), *argv], cwd=empty, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"bpcli {' '.join(argv)}: {done.stdout}{done.stderr}"
        return done

    where = subprocess.run([str(python), "-c", "import bpcli; print(bpcli.__file__)"], cwd=empty, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert str(venv) in where and str(ROOT) not in where
    assert "mnist" in run("configs").stdout
    run("init", "tiny")
    trained = json.loads(run("train", "tiny", "--set", "training.epochs=1", "--json").stdout)
    assert trained["status"] == "finished" and trained["test_accuracy"] > 0.5
    assert "PASS" in run("gradcheck", "tiny").stdout
    assert "Notation" in run("explain", "tiny").stdout
    assert "shipped with bpcli" in run("data", "where").stdout
    assert run("--version").stdout.startswith("bpcli ")


def test_data_verify_finds_a_dataset_by_name_as_train_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a clone `data verify` looked only for ./data/mnist, where train found bpcli's own copy."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    for argv in (["data", "verify"], ["data", "verify", "mnist"]):
        result = CliRunner().invoke(app, argv, env={"COLUMNS": "120"})
        assert result.exit_code == 0, result.output
        assert "MNIST (verified): all 4 files match published checksums" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written anywhere here
    missing = CliRunner().invoke(app, ["data", "verify", "build/mnist"])  # a path is not looked for by name
    assert missing.exit_code == 2 and "data path build/mnist not found" in missing.stderr
