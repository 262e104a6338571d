"""`bpcli plot` and `bpcli show`: the files are images of the size said whose data is the run's, the
terminal drawings fit 60 and 120 columns, runs that are partial, older, still going or interrupted are
drawn with a note, and a missing plotting library is one line naming the extra."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bpcli import config, pictures, plot
from bpcli.checkpoint import Checkpoint, load as load_checkpoint, save
from bpcli.cli import app, console as cli_console
from bpcli.network import Network
from bpcli.render import pictures as picture_view
from bpcli.render import plot as plot_view
from bpcli.rundir import EpochMetrics, metrics_bytes

from conftest import CONFIGS

TINY = str(CONFIGS / "tiny.yaml")


def layer_rows(epoch: int, sizes: tuple[int, ...] = (784, 6, 5, 10)) -> list[dict]:
    """Per-layer statistics as the monitor logs them, different for every layer and epoch."""
    return [{"l": l, "n": sizes[l - 1], "grad_rms_w": 1e-3 * l / epoch, "grad_rms_b": 10.0 ** -(6 - l) / epoch,
             "weight_norm": 3.0 + l, "update_ratio": 1e-3, "saturated": 0.1 if l < len(sizes) else None, "dead": None}
            for l in range(2, len(sizes) + 1)]


def row(epoch: int, layers: bool = True) -> EpochMetrics:
    return EpochMetrics(epoch=epoch, train_loss=1.0 / epoch, train_accuracy=0.5 + 0.04 * epoch, val_loss=1.2 / epoch,
                        val_accuracy=0.45 + 0.04 * epoch, learning_rate=0.1, seconds=1.0, eval_seconds=0.1,
                        layers=layer_rows(epoch) if layers else None)


def make_run(root: Path, epochs: int, layers: bool = True, planned: int | None = None) -> Path:
    """A run directory with `epochs` rows of metrics (and a config planning `planned` epochs)."""
    root.mkdir(parents=True)
    (root / "metrics.jsonl").write_bytes(metrics_bytes([row(e, layers) for e in range(1, epochs + 1)]))
    cfg = config.load(TINY, [f"training.epochs={planned or epochs}"])
    (root / "config.yaml").write_text(cfg.to_yaml())
    return root


def invoke(*args: str, width: int = 120, monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str]:
    assert monkeypatch is not None
    monkeypatch.setattr(cli_console, "_width", width)
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_fits(output: str, width: int) -> None:
    lines = output.splitlines()
    assert lines, "no output"
    too_long = [line for line in lines if len(line) > width]
    assert not too_long, too_long[:3]
    assert "…" not in output


# -- the files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_the_file_is_an_image_of_the_size_said_whose_lines_are_the_metrics(tmp_path: Path, suffix: str) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("PIL")
    runs = [make_run(tmp_path / "a", 4), make_run(tmp_path / "b", 3, layers=False), make_run(tmp_path / "c", 2)]
    drawing = plot.load(runs)
    figure = plot.write_figure(drawing, tmp_path / f"out{suffix}")
    rows = 1 + 1  # the curves, then the two runs with per-layer statistics side by side
    if suffix == ".png":
        from PIL import Image

        with Image.open(figure.path) as image:
            image.verify()
        assert png_size(figure.path) == (1000, 320 * rows) == (figure.width, figure.height)
    else:
        head = figure.path.read_text()[:600]
        size = re.search(r'<svg[^>]* width="([\d.]+)pt" height="([\d.]+)pt"', head)
        assert size and (float(size[1]), float(size[2])) == (720.0, 230.4 * rows) == (figure.width, figure.height)
    loss = figure.drawn["loss (dashed: train, solid: validation)"]
    accuracy = figure.drawn["accuracy (dashed: train, solid: validation)"]
    for run in runs:
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        epochs = [m["epoch"] for m in metrics]
        for split, what in (("train", "train"), ("val", "validation")):
            assert loss[f"{run.name} {what}"] == (epochs, [m[f"{split}_loss"] for m in metrics])
            assert accuracy[f"{run.name} {what}"] == (epochs, [m[f"{split}_accuracy"] for m in metrics])
        panel = f"{run.name}: RMS of dC/db (speed of learning)"
        if run.name == "b":
            assert panel not in figure.drawn  # no per-layer statistics: no panel, and a note
            continue
        for l in (2, 3, 4):
            n = metrics[0]["layers"][l - 2]["n"]
            assert figure.drawn[panel][f"l={l} (n={n})"] == (epochs, [m["layers"][l - 2]["grad_rms_b"] for m in metrics])


def test_plot_out_through_the_cli_writes_the_file_and_can_show_dC_dw(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("PIL")
    run = make_run(tmp_path / "run", 3)
    code, out = invoke("plot", str(run), "--out", str(tmp_path / "p.png"), "--grad", "w", monkeypatch=monkeypatch)
    assert code == 0 and out.strip() == f"wrote {tmp_path / 'p.png'}"
    assert png_size(tmp_path / "p.png") == (1000, 640)
    drawn = plot.write_figure(plot.load([run], grad="w"), tmp_path / "q.png").drawn
    assert drawn["run: RMS of dC/dw"]["l=3 (n=5)"][1] == [r["grad_rms_w"] for e in (1, 2, 3) for r in layer_rows(e)
                                                         if r["l"] == 3]


@pytest.mark.parametrize("command", ["plot", "show"])
def test_a_missing_plotting_library_is_one_line_naming_the_extra(tmp_path: Path, command: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path / "run", 2)
    save(run / "last.npz", Checkpoint(config.load(TINY), Network.from_config(config.load(TINY).model, 0, "float32")))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    extra = ["--mistakes", "0"] if command == "show" else []
    result = CliRunner().invoke(app, [command, str(run), "--out", str(tmp_path / "x.png"), *extra])
    assert result.exit_code == 2
    assert result.stderr == f"error: bpcli {command} --out needs matplotlib: pip install 'bpcli[plot]'\n"
    assert not (tmp_path / "x.png").exists()


def test_bpcli_imports_no_plotting_library_until_a_file_is_asked_for() -> None:
    code = ("import sys, bpcli.cli, bpcli.plot, bpcli.pictures, bpcli.render.plot, bpcli.render.pictures; "
            "print(sorted(m for m in ('matplotlib', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_lists_both_commands_in_one_sentence_each_at_80_columns() -> None:
    for argv in (["plot", "-h"], ["show", "-h"]):
        result = CliRunner().invoke(app, argv, env={"COLUMNS": "80"}, terminal_width=80)
        assert result.exit_code == 0 and "<bool>" not in result.output and "bpcli[plot]" in result.output
    listing = CliRunner().invoke(app, ["-h"], env={"COLUMNS": "80"}).output
    for name in ("plot", "show"):
        assert re.search(rf"│ {name}\s+\S.*\.\s+│", listing), name


def test_a_wrong_file_suffix_is_refused_before_reading(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "nope"), "--out", str(tmp_path / "x.pdf")])
    assert result.exit_code == 2 and "expected a .png or .svg file name" in result.stderr


# -- the terminal ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [60, 120])
def test_terminal_charts_fit_the_width(tmp_path: Path, width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = [make_run(tmp_path / "deep-sigmoid-with-a-long-name", 5), make_run(tmp_path / "older", 4, layers=False)]
    code, out = invoke("plot", *map(str, runs), width=width, monkeypatch=monkeypatch)
    assert code == 0, out
    assert_fits(out, width)
    assert "loss" in out and "accuracy" in out and "deep-sigmoid-with-a-long-name: RMS of dC/db" in out
    assert "older: no per-layer statistics" in " ".join(out.split())
    assert re.search("[\u2801-\u28ff]", out)  # Braille dots: the lines were drawn
    # Two charts side by side from 100 columns: the loss and accuracy titles share a line.
    assert any("loss" in line and "accuracy" in line for line in out.splitlines()) == (width >= 100)


def test_a_run_with_one_hidden_layer_has_no_empty_slowdown_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The slowdown compares the first hidden layer with the last: a run with one hidden layer (its
    layer 3 is the output) has none, and printed `name (epoch 2):` with nothing after it."""
    one = make_run(tmp_path / "one", 2, layers=False)
    (one / "metrics.jsonl").write_bytes(metrics_bytes([
        EpochMetrics(**{**row(e, False).__dict__, "layers": layer_rows(e, (784, 16, 10))}) for e in (1, 2)]))
    deep = make_run(tmp_path / "deep", 2)
    code, out = invoke("plot", str(one), str(deep), width=80, monkeypatch=monkeypatch)
    assert code == 0, out
    assert "one (epoch 2)" not in out and "deep (epoch 2): layer 2 learns" in out


def test_terminal_chart_places_the_points_where_the_values_are() -> None:
    """A rising series from the bottom-left to the top-right corner, and the axis labels its range."""
    series = [plot.Series("up", (1, 2, 3), (0.0, 0.5, 1.0), "#ff0000")]
    lines = [t.plain for t in plot_view.chart("t", series, 30, lambda v: f"{v:.1f}", height=4)]
    assert lines[1].startswith("1.0 ┤") and lines[4].startswith("0.0 ┤")
    area = [line[5:] for line in lines[1:5]]
    assert area[3][0] != " " and area[0][-1] != " "  # bottom-left and top-right cells have dots
    assert area[0][0] == " " and area[3][-1] == " "


def test_without_colours_each_line_ends_in_its_legend_mark() -> None:
    """Piped or under NO_COLOR the lines were alike; each now ends in a letter that heads its legend entry."""
    series = [plot.Series("up", (1, 2, 3), (0.0, 0.5, 1.0), "#ff0000"),
              plot.Series("down", (1, 2, 3), (1.0, 0.5, 0.0), "#0000ff")]
    plain = [t.plain for t in plot_view.chart("t", series, 30, lambda v: f"{v:.1f}", height=4, colour=False)]
    area = [line[5:] for line in plain[1:5]]
    assert area[0][-1] == "a" and area[3][-1] == "b" and plain[-1] == "a up  b down"
    coloured = [t.plain for t in plot_view.chart("t", series, 30, lambda v: f"{v:.1f}", height=4)]
    assert coloured[-1] == "━ up  ━ down" and "a" not in "".join(line[5:] for line in coloured[1:5])


def test_log_chart_labels_the_powers_of_ten() -> None:
    series = [plot.Series("g", (1, 2), (1e-4, 1e-1), "#00ff00")]
    lines = [t.plain for t in plot_view.chart("t", series, 40, plot_view._sci, log=True, height=10)]
    labels = [line.split("┤")[0].strip() for line in lines[1:11] if "┤" in line]
    assert labels == ["1e-01", "1e-02", "1e-03", "1e-04"]


# -- partial, older, growing and interrupted runs ----------------------------------------------------------


def test_a_cut_off_last_line_is_a_note_and_the_rows_before_it_are_drawn(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path / "cut", 3)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 4, "train_loss": 0.2, "train_acc')
    drawing = plot.load([run])
    assert [s.x for s in drawing.loss] == [(1, 2, 3), (1, 2, 3)]
    assert drawing.notes == ["cut: metrics.jsonl line 4 is cut off or not a metrics row; drawing the 3 epochs before it"]
    code, out = invoke("plot", str(run), width=60, monkeypatch=monkeypatch)
    assert code == 0 and "line 4 is cut off" in out
    assert_fits(out, 60)


def test_a_run_without_epochs_is_a_note_beside_others_and_an_error_alone(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.yaml").write_text(config.load(TINY).to_yaml())
    good = make_run(tmp_path / "good", 2)
    code, out = invoke("plot", str(empty), str(good), monkeypatch=monkeypatch)
    assert code == 0 and "empty: no epoch has finished yet (metrics.jsonl is not there)" in " ".join(out.split())
    assert "good: RMS of dC/db" in out
    result = CliRunner().invoke(app, ["plot", str(empty)])
    assert result.exit_code == 2 and result.stderr.strip() == "error: nothing to plot: no run has finished an epoch yet"
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "missing")])
    assert result.exit_code == 2 and result.stderr.strip() == f"error: {tmp_path / 'missing'}: no such run directory"


def test_a_run_still_training_is_drawn_as_far_as_it_got_and_grows(tmp_path: Path) -> None:
    run = make_run(tmp_path / "live", 2, planned=5)
    (run / ".bpcli.lock").write_text(f"{os.getpid()}\n")  # held by a live process (this one)
    drawing = plot.load([run])
    assert drawing.notes == [f"live: training, epoch 2 of 5 so far (process {os.getpid()})"]
    assert drawing.loss[0].x == (1, 2)
    with open(run / "metrics.jsonl", "ab") as f:  # the next epoch is committed
        f.write(metrics_bytes([row(3)]))
    assert plot.load([run]).loss[0].x == (1, 2, 3)


def test_an_interrupted_run_says_how_to_resume(tmp_path: Path) -> None:
    run = make_run(tmp_path / "stopped", 2, planned=5)
    (run / ".bpcli.lock").write_text("")  # released
    assert plot.load([run]).notes == [f"stopped: stopped after epoch 2 of 5; resume with: bpcli train --resume {run}"]


def test_two_runs_with_one_name_are_told_apart_by_their_paths(tmp_path: Path) -> None:
    a, b = make_run(tmp_path / "x" / "run", 1), make_run(tmp_path / "y" / "run", 1)
    assert plot.run_names([a, b]) == [str(a), str(b)]


# -- show -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import _mnist_dir

    out = tmp_path_factory.mktemp("show") / "run"
    sets = [f"data.path={_mnist_dir()}", "data.limit=600", "data.validation_size=200", "training.epochs=1"]
    result = CliRunner().invoke(app, ["train", TINY, *[a for s in sets for a in ("--set", s)], "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("width", [60, 120])
def test_show_in_the_terminal_fits_the_width(trained: Path, width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = invoke("show", str(trained), width=width, monkeypatch=monkeypatch)
    assert code == 0, out
    assert_fits(out, width)
    assert "layer 2's weights" in out and "test images it gets wrong" in out
    assert out.count("true ") == 8 and out.count("said ") == 8  # the default 8 mistakes, captioned
    blocks = [line for line in out.splitlines() if set(line.strip()) <= set(picture_view.SHADES) and line.strip()]
    assert len(blocks) >= 14  # at least one 28-pixel image, two pixels a line


def test_show_on_a_terminal_with_no_color_draws_shades_not_blocks(trained: Path) -> None:
    """NO_COLOR on a terminal: Rich keeps a colour system but drops the colours, so coloured half blocks
    would all look alike; the shade characters are drawn instead, as when piped."""
    import io

    from rich.console import Console

    drawn = pictures.load(trained, None, (2, 2))
    for no_color in (False, True):
        buffer = io.StringIO()
        picture_view.render(Console(file=buffer, force_terminal=True, color_system="truecolor", no_color=no_color,
                                    width=80), drawn)
        out = buffer.getvalue()
        assert ("\x1b[38;2" in out) is not no_color  # truecolor foreground: the colours are drawn
        assert bool(set(out) & set(picture_view.SHADES[1:4])) is no_color


@pytest.mark.parametrize(("p", "text"), [(0.99996, ">99.99%"), (0.99994, "99.99%"), (0.995, "99.50%"),
                                         (0.9949, "99.5%"), (0.413, "41.3%"), (0.0042, "0.42%"), (0.00009, "<0.01%")])
def test_a_probability_near_certainty_is_never_written_100_percent(p: float, text: str) -> None:
    assert pictures.probability_text(p) == text


def test_show_picks_the_mistakes_the_network_is_surest_of(trained: Path) -> None:
    p = pictures.load(trained, None, (5, 12))
    net = load_checkpoint(trained / "last.npz").network
    from bpcli.data import load_dataset

    test = load_dataset(load_checkpoint(trained).config.data.path, validation_size=0).test
    a = net.predict(test.x)
    wrong = np.flatnonzero(a.argmax(1) != test.labels)
    assert p.mistakes is not None and p.mistakes.wrong == len(wrong) and p.mistakes.total == len(test)
    confidences = [m.confidence for m in p.mistakes.shown]
    assert confidences == sorted(confidences, reverse=True) and len(confidences) == 12
    for m in p.mistakes.shown:
        assert m.index in wrong and m.true == str(test.labels[m.index]) and m.predicted == str(a[m.index].argmax())
        np.testing.assert_allclose(m.image.ravel(), test.x[m.index], atol=1e-6)
    assert confidences[0] == pytest.approx(a[wrong].max(axis=1).max(), rel=1e-6)
    w = net.w[2][:5].astype(np.float64)
    np.testing.assert_allclose(p.weights.images.reshape(5, -1), w / np.abs(w).max(axis=1, keepdims=True))


def test_show_out_writes_a_png_of_the_size_said_with_the_network_in_it(trained: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("PIL")
    code, out = invoke("show", str(trained), "--out", str(tmp_path / "s.png"), "--weights", "16", "--mistakes", "8",
                       monkeypatch=monkeypatch)
    assert code == 0 and out.strip() == f"wrote {tmp_path / 's.png'}"
    p = pictures.load(trained, None, (16, 8))
    figure = pictures.write_figure(p, tmp_path / "t.png")
    assert png_size(tmp_path / "s.png") == png_size(figure.path) == (figure.width, figure.height)
    assert figure.weights.shape == (16, 28, 28) and len(figure.mistakes) == 8
    assert (tmp_path / "s.png").read_bytes() == figure.path.read_bytes()  # no date in the file


def test_half_blocks_carry_the_upper_pixel_as_colour_and_the_lower_as_background() -> None:
    image = np.array([[0.0, 1.0], [1.0, 0.5], [0.25, 0.0]])
    lines = picture_view.image_lines(image, picture_view.gray, lambda v: v, 28)
    assert [t.plain for t in lines] == ["▀▀", "▀▀"]
    styles = [span.style for span in lines[0].spans]
    assert styles[0].color.triplet == (0, 0, 0) and styles[0].bgcolor.triplet == (255, 255, 255)
    assert styles[1].color.triplet == (255, 255, 255) and styles[1].bgcolor.triplet == (128, 128, 128)
    last = [span.style for span in lines[1].spans]
    assert last[0].color.triplet == (64, 64, 64) and last[0].bgcolor is None  # odd height: no lower pixel


def test_a_network_whose_input_is_not_a_square_image_is_refused_clearly(tmp_path: Path) -> None:
    assert pictures.image_shape(784) == (28, 28) and pictures.image_shape(600, (20, 30)) == (20, 30)
    assert pictures.image_shape(10) is None
    cfg = config.load(TINY, ["model.layers=[10, 4, 3]", f"data.path={tmp_path / 'no-data'}"])
    save(tmp_path / "c.npz", Checkpoint(cfg, Network.from_config(cfg.model, 0, "float32")))
    result = CliRunner().invoke(app, ["show", str(tmp_path / "c.npz")])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {tmp_path / 'c.npz'}: the first layer's 10 inputs are not a square image "
                                     "(and the data gives no image shape), so its weights and examples cannot be "
                                     "drawn as pictures")


def test_show_without_the_data_still_draws_the_weights(trained: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = invoke("show", str(trained), "--data", str(tmp_path / "moved"), width=80, monkeypatch=monkeypatch)
    assert code == 0 and "is not there (moved or deleted)" in " ".join(out.split())
    assert "layer 2's weights" in out and "gets wrong" not in out
