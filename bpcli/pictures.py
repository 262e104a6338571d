"""What `bpcli show` draws: the first layer's weight vectors w^2_j as images, and the test images the
network gets wrong, from a checkpoint and its dataset; and the PNG it writes (matplotlib, imported only
when a file is asked for).

A hidden neuron j of layer 2 computes z^2_j = w^2_j . x + b^2_j, so w^2_j has one weight per pixel and,
reshaped like the image, shows which strokes excite (w > 0) or inhibit (w < 0) it. Each neuron's image
is divided by its own largest |w|, so the pattern shows whatever its scale; the scale is kept beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bpcli import checkpoint as ckpt_io
from bpcli.data import Dataset, load_dataset
from bpcli.errors import UsageError
from bpcli.extras import need
from bpcli.network import Network
from bpcli.plot import DPI, save
from bpcli.train import evaluate

Array = np.ndarray

# How many pictures of each kind, when not asked: a terminal screen's worth, or a page for the file.
TERMINAL_COUNTS = (8, 8)
FILE_COUNTS = (100, 24)
FILE_COLUMNS = (10, 8)  # weight images and mistakes per row in the file
WIDTH_IN = 10.0


@dataclass
class WeightImages:
    """images (k, h, w): w^2_j / max|w^2_j| for j = 0..k-1, in [-1, 1]; scales (k,): max|w^2_j|."""

    images: Array
    scales: Array
    neurons: int  # n_2: all of layer 2 (k may be fewer)


@dataclass
class Mistake:
    index: int  # in the test set
    image: Array  # (h, w) pixels in [0, 1]
    true: str
    predicted: str
    confidence: float  # a^L of the predicted class: a probability for a softmax output


@dataclass
class Mistakes:
    shown: list[Mistake]  # the most confident first
    wrong: int
    total: int
    accuracy: float
    probability: bool  # softmax output: `confidence` is the network's probability


@dataclass
class Pictures:
    source: Path
    epoch: int
    sizes: list[int]
    activation: str
    output: str
    shape: tuple[int, int]
    weights: WeightImages
    mistakes: Mistakes | None
    notes: list[str] = field(default_factory=list)


def image_shape(n_1: int, stored: tuple[int, ...] = ()) -> tuple[int, int] | None:
    """(height, width) of an input: the dataset's own image shape when it has one, else a square of
    side sqrt(n_1) when n_1 is a square number, else None."""
    if len(stored) == 2 and stored[0] * stored[1] == n_1:
        return int(stored[0]), int(stored[1])
    side = math.isqrt(n_1)
    return (side, side) if side * side == n_1 else None


def weight_images(net: Network, shape: tuple[int, int], count: int) -> WeightImages:
    """The first `count` neurons of layer 2: rows of w^2 (shape (n_2, n_1)) as images, each scaled to
    its largest |w| (a neuron with all weights 0 stays 0)."""
    w = np.asarray(net.w[2], dtype=np.float64)[:count]
    scales = np.abs(w).max(axis=1)
    images = w / np.where(scales > 0, scales, 1.0)[:, None]
    return WeightImages(images.reshape(len(w), *shape), scales, net.sizes[1])


def mistakes(net: Network, data: Dataset, shape: tuple[int, int], count: int) -> Mistakes:
    """The test images `net` gets wrong, the ones it was surest of first (ties by index)."""
    test = data.test
    result = evaluate(net, test)
    a = net.predict(test.x)
    predicted = a.argmax(axis=1)
    wrong = np.flatnonzero(predicted != test.labels)
    confidence = a[wrong, predicted[wrong]].astype(np.float64)
    order = wrong[np.argsort(-confidence, kind="stable")][:count]
    names = data.class_names
    shown = [Mistake(int(i), np.clip(test.x[i].reshape(shape).astype(np.float64), 0.0, 1.0),
                     names[int(test.labels[i])], names[int(predicted[i])], float(a[i, predicted[i]]))
             for i in order]
    return Mistakes(shown, len(wrong), len(test), result.accuracy, net.output.name == "softmax")


def load(path: Path, data_path: Path | None, counts: tuple[int, int]) -> Pictures:
    """The pictures of the network in `path` (a run directory means its last.npz): `counts` = (weight
    images, mistakes). The test data is the run's own (or `data_path`); when it is not there, the
    weights are still drawn and a note says why the mistakes are not."""
    path = Path(path)
    source = path / "last.npz" if path.is_dir() else path
    ckpt = ckpt_io.load(source)
    net, cfg = ckpt.network, ckpt.config
    notes: list[str] = []
    data = None
    where = Path(data_path) if data_path is not None else Path(cfg.data.path)
    if counts[1] > 0 and where.exists():
        data = load_dataset(where, validation_size=0, dtype=cfg.training.dtype, verify=cfg.data.verify)
        if data.input_size != net.sizes[0] or data.classes != net.sizes[-1]:
            raise UsageError(f"{source}: the network is {net.sizes} but {where} has {data.input_size} inputs and "
                             f"{data.classes} classes")
    elif counts[1] > 0:
        notes.append(f"the data it was trained on, {where}, is not there (moved or deleted): no test mistakes "
                     "to show; give the dataset with --data PATH")
    shape = image_shape(net.sizes[0], data.image_shape if data is not None else ())
    if shape is None:
        raise UsageError(f"{source}: the first layer's {net.sizes[0]} inputs are not a square image (and the data "
                         "gives no image shape), so its weights and examples cannot be drawn as pictures")
    return Pictures(source, ckpt.epoch, list(net.sizes), net.hidden.name, net.output.name, shape,
                    weight_images(net, shape, counts[0]),
                    mistakes(net, data, shape, counts[1]) if data is not None else None, notes)


def probability_text(p: float) -> str:
    """A probability as `show` and `predict` write it: two decimals near certainty, where most confident
    mistakes are (99.97% is not 100%, and what would round to 100.00% is >99.99%), and near zero (0.42%,
    <0.01%); one decimal between (41.3%, 99.4%)."""
    if p >= 0.99995:
        return ">99.99%"
    if p < 0.0001:
        return "<0.01%"
    return f"{100 * p:.2f}%" if p >= 0.995 or p < 0.01 else f"{100 * p:.1f}%"


def caption(m: Mistake, probability: bool) -> tuple[str, str]:
    """Two short lines under a mistake: the truth, and what the network said and how sure it was."""
    sure = probability_text(m.confidence) if probability else f"a={m.confidence:.2f}"
    return f"#{m.index} true {m.true}", f"said {m.predicted} {sure}"


# -- the file -------------------------------------------------------------------------------------------

@dataclass
class Figure:
    """What was written: the file, its size in pixels, and the data drawn (the weight mosaic as shown,
    and the mistakes in their order), so a test can hold the picture to the network."""

    path: Path
    width: int
    height: int
    weights: Array  # (k, h, w) as drawn
    mistakes: list[Mistake]


def mosaic(images: Array, columns: int, gap: int = 2) -> Array:
    """(k, h, w) images on a grid `columns` wide with `gap` pixels of NaN (drawn as background) between."""
    k, h, w = images.shape
    rows = max(1, math.ceil(k / columns))
    out = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap), np.nan)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = image
    return out


def write_figure(p: Pictures, path: Path) -> Figure:
    """A PNG: the weight images in a grid (red positive, blue negative, white 0), then the mistakes in
    gray with their captions."""
    if Path(path).suffix.lower() != ".png":
        raise UsageError(f"--out {path}: expected a .png file name")
    need("matplotlib", "bpcli show --out")
    need("PIL.Image", "bpcli show --out")
    import matplotlib
    from matplotlib.figure import Figure as MplFigure  # no pyplot: no global state, no GUI backend

    k = len(p.weights.images)
    w_cols = min(FILE_COLUMNS[0], max(1, k))
    w_rows = math.ceil(k / w_cols) if k else 0
    shown = p.mistakes.shown if p.mistakes is not None else []
    m_cols, m_rows = FILE_COLUMNS[1], math.ceil(len(shown) / FILE_COLUMNS[1])
    tile = WIDTH_IN / FILE_COLUMNS[0]  # inches per weight image
    top = (0.45 + w_rows * tile * 0.92) if k else 0.0
    bottom = (0.5 + m_rows * 1.55) if m_rows else 0.0
    height = max(1.0, top + bottom)
    fig = MplFigure(figsize=(WIDTH_IN, height), dpi=DPI)
    fig.patch.set_facecolor("white")
    if k:
        ax = fig.add_axes((0.02, 1 - (top - 0.05) / height, 0.96, (top - 0.45) / height))
        cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="white")
        ax.imshow(mosaic(p.weights.images, w_cols), cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(_weights_title(p, k), fontsize=10)
    for i, m in enumerate(shown):
        r, c = divmod(i, m_cols)
        box_w, box_h = 1 / m_cols, 1.55 / height
        y0 = bottom / height - 0.5 / height - (r + 1) * box_h
        ax = fig.add_axes((c * box_w + 0.012, y0 + 0.42 / height, box_w - 0.024, box_h - 0.47 / height))
        ax.imshow(m.image, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        first, second = caption(m, p.mistakes.probability if p.mistakes else True)
        ax.set_xlabel(f"{first}\n{second}", fontsize=8, labelpad=2)
    if shown and p.mistakes is not None:
        fig.text(0.5, (bottom - 0.12) / height, _mistakes_title(p.mistakes), ha="center", va="top", fontsize=10)
    save(fig, path, "png", "bpcli show --out")
    return Figure(Path(path), round(WIDTH_IN * DPI), round(height * DPI), p.weights.images, shown)


def _weights_title(p: Pictures, k: int) -> str:
    return (f"layer 2's weights w^2_j as {p.shape[0]}x{p.shape[1]} images, neurons j = 0..{k - 1} of "
            f"{p.weights.neurons} (each scaled to its largest |w|: red +, blue -)")


def _mistakes_title(m: Mistakes) -> str:
    return (f"test images it gets wrong: {m.wrong:,} of {m.total:,} (accuracy {100 * m.accuracy:.2f}%); "
            f"the {len(m.shown)} it was surest of")
