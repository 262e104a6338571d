"""`bpcli explain` at 60, 80 and 120 columns: every line within the width, no cell cut by Rich.

Rich cuts a cell it cannot fit to '…' ('sigm…', 'theta[0:1254…') or, if the column is one character
wide, to a lone '…'; it crops a panel title that does not fit with no mark at all. The explanation's own
ellipses ('… 12 more, wired the same way', 'z^3_0 … z^3_9') stand between words and are not cuts.
Each section is rendered through the CLI with the console's width set, as a terminal of that width would.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.cells import cell_len
from typer.testing import CliRunner

import bpcli.cli
from bpcli.cli import app
from bpcli.explain import SECTIONS, TITLES

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"tiny": ROOT / "configs" / "tiny.yaml", "mnist": ROOT / "configs" / "mnist.yaml"}
WIDTHS = [60, 80, 120]
WIDE_LAYER = ["--set", "model.layers=[784, 2048, 2048, 10]"]  # counts of 4,194,304: wider than mnist's

CUT_WORD = re.compile(r"\w…")  # a word with its end replaced by '…'
LONE_CUT = re.compile(r"(?:^\s*|\s{2,}|│\s*)…(?:\s{2,}|\s*│|\s*$)")  # a cell shrunk to '…': column gaps around
CROPPED_TITLE = re.compile(r"[^\s─╭╰]─+[╮╯]$")  # a panel title or subtitle running into the corner


def explain(width: int, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    monkeypatch.setattr(bpcli.cli.console, "_width", width)
    result = CliRunner().invoke(app, ["explain", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def assert_readable(out: str, width: int) -> None:
    for line in out.splitlines():
        assert cell_len(line) <= width, f"wider than {width} columns:\n{line}"
        assert not CUT_WORD.search(line), f"a cell cut to '…':\n{line}"
        assert not LONE_CUT.search(line), f"a cell shrunk to '…':\n{line}"
        assert not CROPPED_TITLE.search(line.rstrip()), f"a panel title cropped:\n{line}"


def title_of(name: str) -> str:
    return f"{SECTIONS.index(name) + 1} · {TITLES[name]}"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("section", [s for s in SECTIONS if s != "trace"])
def test_each_section_fits_without_cuts(section: str, config: str, width: int,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = explain(width, monkeypatch, str(CONFIGS[config]), "--section", section)
    assert_readable(out, width)
    assert title_of(section) in out


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("config", CONFIGS)
def test_every_count_and_range_is_printed_whole(config: str, width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The narrow layouts keep every number of the wide ones: per-layer counts, totals and theta's ranges."""
    out = explain(width, monkeypatch, str(CONFIGS[config]), "--section", "layers", "--section", "cost")
    data = json.loads(explain(width, monkeypatch, str(CONFIGS[config]), "--section", "cost", "--format", "json"))
    for row in data["layers"]:
        assert f"{row['weights']:,}" in out and f"{row['biases']:,}" in out and f"{row['params']:,}" in out
    assert f"{data['n_w']:,}" in out and f"{data['n_b']:,}" in out and f"{data['n_params']:,}" in out
    for block in data["cost"]["blocks"]:
        assert f"theta[{block['theta_offset']}:{block['theta_end']}]" in out
        assert block["index"] in out


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("section", ["layers", "cost"])
def test_wider_counts_change_layout_at_their_own_width(section: str, width: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The layers and cost tables are chosen by their natural width, not a fixed threshold: 7-digit
    counts still fit without cuts."""
    out = explain(width, monkeypatch, str(CONFIGS["tiny"]), *WIDE_LAYER, "--section", section)
    assert_readable(out, width)
    assert "4,194,304" in out


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("config,weight", [("tiny", "2,0,0"), ("tiny", "3,1,5"), ("mnist", "2,3,354"),
                                           ("mnist", "4,1,5")])
def test_trace_fits_without_cuts(config: str, weight: str, width: int, mnist_dir: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = explain(width, monkeypatch, str(CONFIGS[config]), "--set", f"data.path={mnist_dir}",
                  "--section", "trace", "--weight", weight)
    assert_readable(out, width)
    assert title_of("trace") in out
    for quantity in ("dC/dw^", "central difference", "difference"):
        assert quantity in out


def test_the_wide_layouts_stay_at_120_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 120 columns tiny's tables all fit, so it is drawn exactly as before the narrow layouts."""
    out = explain(120, monkeypatch, str(CONFIGS["tiny"]))
    for header in ("z^l a^l delta^l", "one entry", "computes", "meaning  ·  in the code (m = 32)"):
        assert header in out
    assert f"{title_of('equations')} · why an induction" in out


def test_layers_drop_a_column_before_they_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """80 columns: the table without z^l a^l delta^l (it repeats n_l); 60: one block of lines per layer."""
    at_80 = explain(80, monkeypatch, str(CONFIGS["mnist"]), "--section", "layers")
    assert "(m, n_l)" in at_80 and "z^l a^l delta^l" not in at_80
    at_60 = explain(60, monkeypatch, str(CONFIGS["mnist"]), "--section", "layers")
    assert "l = 2" in at_60 and "401,408 weights + 512 biases = 401,920 params" in at_60
