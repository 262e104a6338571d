"""`bpcli predict`: a trained network's top classes for image files of handwritten digits (IDX or `.npz`
files of images already in the dataset's format are bpcli/predict_files.py's).

An image file is brought to MNIST's form first, as MNIST's own digits were made: grayscale; inverted
when its background is light (MNIST is light ink on black); cropped to the ink's bounding box; scaled
so that its longer side is 20 pixels, keeping the aspect ratio (anti-aliased); and placed in the 28×28
frame so that its centre of mass lands where MNIST's does. That point is `MNIST_CENTRE`, measured on
the shipped test set (tests/test_predict.py measures it again), not assumed to be the frame's middle:
MNIST's centres of mass average (13.99, 14.01) in 0-based pixel indices, not 13.5. A network whose
input is another square (n_1 = side²) gets the same recipe scaled to that side.

Pillow is imported only when an image file is read (the `predict` extra). Every file is untrusted:
a file that cannot be read, or an image with no ink in it, is one line naming the file.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bpcli import checkpoint as ckpt_io
from bpcli.errors import DataError, UsageError
from bpcli.extras import need
from bpcli.pictures import image_shape
from bpcli.rundir import RunFiles

Array = np.ndarray

# The centre of mass of MNIST's test digits, (row, column) in 0-based pixel indices of the 28×28
# frame, averaged over the 10,000 images of the shipped test set (row 13.993, column 14.008; standard
# deviation 0.29 each, since MNIST placed each digit by a whole-pixel shift).
MNIST_CENTRE = (13.99, 14.01)
MNIST_SIDE = 28
MNIST_BOX = 20  # the longer side of the digit's bounding box, in pixels of the 28×28 frame
TOP = 3
MAX_PIXELS = 50_000_000  # larger images are refused before they are decoded (a 50 MP photo is ~150 MB)
WORK_SIDE = 2000  # larger images are first reduced (box filter) to about this, which keeps a digit > 20 px
MIN_CONTRAST = 0.08  # ink must differ from the background by this much (of black..white) to count
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm")


class ImageError(DataError):
    """An image file that cannot give a prediction (unreadable, or no ink in it): one line naming it."""


@dataclass
class Model:
    """The network to predict with, where it came from, and how its inputs look."""

    source: Path  # the checkpoint file
    net: Any  # bpcli.network.Network
    epoch: int
    shape: tuple[int, int]  # (side, side) of an input image
    class_names: tuple[str, ...]
    probability: bool  # a softmax output: a^L are probabilities
    dataset: str | None  # the known dataset the run trained on, if it recorded one
    notes: list[str] = field(default_factory=list)


@dataclass
class Prepared:
    """An image file in the network's input form: pixels (side, side) in [0, 1], and what was done."""

    image: Array
    size: tuple[int, int]  # (width, height) of the file's image
    inverted: bool
    box: tuple[int, int, int, int]  # the ink's bounding box in the file's pixels: left, top, right, bottom


@dataclass
class Prediction:
    """The top classes of one image: (label k, class name, a^L_k), best first; or why there are none."""

    source: str
    top: list[tuple[int, str, float]] = field(default_factory=list)
    prepared: Prepared | None = None
    error: str | None = None

    def to_json(self, probability: bool) -> dict[str, Any]:
        if self.error is not None:
            return {"image": self.source, "error": self.error}
        key = "probability" if probability else "output"
        out: dict[str, Any] = {"image": self.source, "class": self.top[0][1],
                               "top": [{"label": k, "class": name, key: score} for k, name, score in self.top]}
        if self.prepared is not None:
            out["inverted"] = self.prepared.inverted
            out["ink_box"] = list(self.prepared.box)
        return out


# -- the network ------------------------------------------------------------------------------------------

def load_model(path: str | Path) -> Model:
    """The network in `path` (a run directory means its last.npz), its input image side and class names;
    a first layer that is not a square image is one line saying so."""
    path = Path(path)
    source = path / "last.npz" if path.is_dir() else path
    ckpt = ckpt_io.load(source)
    net = ckpt.network
    shape = image_shape(net.sizes[0])
    if shape is None:
        raise UsageError(f"{source}: the network's first layer has {net.sizes[0]} inputs, which is not a square "
                         "image (side × side pixels), so images cannot be prepared for it")
    record = RunFiles(source.parent).read_record("dataset.json") or {}
    names = record.get("class_names")
    classes = net.sizes[-1]
    if not (isinstance(names, list) and len(names) == classes and all(isinstance(n, str) for n in names)):
        names = [str(k) for k in range(classes)]
    dataset = record.get("name") if isinstance(record.get("name"), str) else None
    model = Model(source, net, ckpt.epoch, shape, tuple(n[:40] for n in names), net.output.name == "softmax",
                  dataset)
    if dataset not in (None, "mnist"):
        model.notes.append(f"the network was trained on {record.get('title', dataset)!s:.40}; image files are "
                           "prepared the MNIST way (centred digits), which may not suit it")
    if not model.probability:
        model.notes.append(f"the output layer is {net.output.name}, not softmax: the scores are a^L, not "
                           "probabilities")
    return model


def top_classes(model: Model, x: Array, k: int = TOP) -> tuple[Array, Array]:
    """For rows x (m, n_1): the k best labels (m, k) and their a^L (m, k), best first (ties: lower label)."""
    a = model.net.predict(np.ascontiguousarray(x, dtype=model.net.dtype)).astype(np.float64)
    k = min(k, a.shape[1])
    order = np.argsort(-a, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(a, order, axis=1)


# -- image files ------------------------------------------------------------------------------------------

def read_gray(path: str | Path) -> tuple[Array, tuple[int, int]]:
    """An image file as gray levels (h, w) in [0, 1] (0 black, 1 white), and its (width, height).

    Any mode Pillow reads: 1-bit, 8- and 16-bit gray, 32-bit integer or float, palette, RGB, CMYK. A
    transparent image is laid on the background its ink stands out from: white under dark ink, black
    under light ink. A phone photo is first turned upright as its EXIF orientation says. Unreadable,
    truncated and oversized files are one line."""
    Image = need("PIL.Image", "reading image files", "predict")
    from PIL import ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                size = im.size
                if size[0] * size[1] > MAX_PIXELS:
                    raise ImageError(f"{path}: {size[0]:,}×{size[1]:,} pixels is more than the "
                                     f"{MAX_PIXELS // 1_000_000} megapixels bpcli reads; scale it down first")
                if size[0] < 1 or size[1] < 1:
                    raise ImageError(f"{path}: the image has no pixels ({size[0]}×{size[1]})")
                im.seek(0)  # the first frame of an animation
                if max(size) > 2 * WORK_SIDE:
                    im.draft("L", (WORK_SIDE, WORK_SIDE))  # JPEG: decode at a reduced scale
                im.load()
                im = ImageOps.exif_transpose(im) or im
                gray = _gray_levels(im, Image)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: a directory, not an image file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read (PNG, JPEG, BMP, GIF, TIFF, ...); for a "
                         "file of many images give an IDX or .npz file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path}: declares more pixels than bpcli reads ({MAX_PIXELS // 1_000_000} megapixels); "
                         "scale it down first") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as e:
        reason = " ".join(str(e).split())[:120] or type(e).__name__
        raise ImageError(f"{path}: damaged or unreadable image ({reason})") from None
    return gray, size


def _gray_levels(im: Any, Image: Any) -> Array:
    """Pillow image -> float64 gray levels in [0, 1], reduced by one factor (the aspect ratio is the digit's
    shape) to about WORK_SIDE on its longer side, the factor never above the shorter side (a 5000 x 1
    image reduced by 3 was 0 pixels high)."""
    fx = fy = min(max(1, math.ceil(max(im.size) / WORK_SIDE)), min(im.size))
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        if fx > 1 or fy > 1:
            rgba = rgba.reduce((fx, fy))
        a = np.asarray(rgba, dtype=np.float64) / 255.0
        gray = (a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114)
        alpha = a[..., 3]
        if alpha.min() < 1.0:
            shown = alpha > 0.5
            ink_dark = gray[shown].mean() < 0.5 if shown.any() else True
            under = 1.0 if ink_dark else 0.0
            gray = alpha * gray + (1 - alpha) * under
        return np.clip(gray, 0.0, 1.0)
    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.asarray(im).astype(np.float64)
        scale = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        gray = np.clip(a / scale, 0.0, 1.0)
    elif im.mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        top = a.max(initial=0)
        gray = np.clip(a / top if top > 1 else a, 0.0, 1.0)
    else:
        gray = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
    if fx > 1 or fy > 1:
        h, w = (gray.shape[0] // fy) * fy, (gray.shape[1] // fx) * fx
        gray = gray[:h, :w].reshape(h // fy, fy, w // fx, fx).mean(axis=(1, 3))
    return gray


def prepare(gray: Array, side: int = MNIST_SIDE, size: tuple[int, int] | None = None,
            source: str = "image") -> Prepared:
    """MNIST's preprocessing of gray levels (h, w) in [0, 1] for a side × side input.

    The background is the median of the border pixels: light means dark ink on paper, so the image is
    inverted. Ink is what stands out from the background by more than the border's own noise; its
    levels are stretched so that the strongest ink is 1 and the background 0. The ink's bounding box is
    scaled to 20/28 of the side on its longer side, and shifted (by whole pixels, as MNIST was) so that
    its centre of mass is MNIST's, scaled to the side."""
    Image = need("PIL.Image", "preparing images", "predict")
    h, w = gray.shape
    size = size or (w, h)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    inverted = background > 0.5
    g = 1.0 - gray if inverted else gray
    bg = 1.0 - background if inverted else background
    top = float(g.max())
    if top - bg < MIN_CONTRAST:
        shade = "white" if background > 0.9 else "black" if background < 0.1 else "one shade of gray"
        raise ImageError(f"{source}: no ink to read: the image is {'all ' if shade != 'one shade of gray' else ''}"
                         f"{shade} (every pixel within {MIN_CONTRAST:.0%} of the background)")
    # Noise of the background (JPEG, scanner): the border's spread above its median, at the 95th percentile.
    noise = float(np.percentile(np.abs((1.0 - border if inverted else border) - bg), 95))
    threshold = bg + min(2 * noise, (top - bg) / 2)
    ink = g > threshold
    g = np.where(ink, np.clip((g - bg) / (top - bg), 0.0, 1.0), 0.0)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    crop = g[r0:r1, c0:c1]
    box = max(1, round(MNIST_BOX * side / MNIST_SIDE))
    ch, cw = crop.shape
    scale = box / max(ch, cw)
    th, tw = max(1, min(box, round(ch * scale))), max(1, min(box, round(cw * scale)))
    if (th, tw) != (ch, cw):
        resized = Image.fromarray(crop.astype(np.float32), mode="F").resize((tw, th), Image.Resampling.LANCZOS)
        crop = np.clip(np.asarray(resized, dtype=np.float64), 0.0, 1.0)
    mass = crop.sum()
    if mass > 0:
        com_r = float((crop.sum(axis=1) * np.arange(th)).sum() / mass)
        com_c = float((crop.sum(axis=0) * np.arange(tw)).sum() / mass)
    else:  # nothing left after scaling (cannot happen for ink > 0, but never divide by it): the box's middle
        com_r, com_c = (th - 1) / 2, (tw - 1) / 2
    # MNIST's centre in continuous coordinates (pixel i spans i..i+1), scaled to this side.
    target_r, target_c = ((c + 0.5) * side / MNIST_SIDE - 0.5 for c in MNIST_CENTRE)
    top_row = min(max(round(target_r - com_r), 0), side - th)
    left = min(max(round(target_c - com_c), 0), side - tw)
    image = np.zeros((side, side))
    image[top_row:top_row + th, left:left + tw] = crop
    # The box in the file's pixels (the gray levels may have been reduced from a large image).
    fx, fy = size[0] / w, size[1] / h
    file_box = (math.floor(c0 * fx), math.floor(r0 * fy), math.ceil(c1 * fx), math.ceil(r1 * fy))
    return Prepared(image, size, inverted, file_box)


def centre_of_mass(images: Array) -> tuple[float, float]:
    """The mean centre of mass (row, column) of images (N, h, w), in 0-based pixel indices: how
    MNIST_CENTRE was measured."""
    x = np.asarray(images, dtype=np.float64)
    mass = x.sum(axis=(1, 2))
    keep = mass > 0
    rows = (x.sum(axis=2) * np.arange(x.shape[1])).sum(axis=1)[keep] / mass[keep]
    cols = (x.sum(axis=1) * np.arange(x.shape[2])).sum(axis=1)[keep] / mass[keep]
    return float(rows.mean()), float(cols.mean())


def predict_images(model: Model, paths: list[Path]) -> list[Prediction]:
    """Each image file prepared and classified; a file that cannot be gives a Prediction with its error."""
    out: list[Prediction] = []
    prepared: list[tuple[int, Prepared]] = []
    for i, path in enumerate(paths):
        try:
            gray, size = read_gray(path)
            prepared.append((i, prepare(gray, model.shape[0], size, str(path))))
            out.append(Prediction(str(path)))
        except ImageError as e:
            out.append(Prediction(str(path), error=str(e)))
    if prepared:
        x = np.stack([p.image.reshape(-1) for _, p in prepared])
        labels, scores = top_classes(model, x)
        for (i, p), ks, ss in zip(prepared, labels, scores):
            out[i].prepared = p
            out[i].top = [(int(k), model.class_names[int(k)], float(s)) for k, s in zip(ks, ss)]
    return out
