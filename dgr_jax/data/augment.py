"""Preprocessing ops, composed from a string named in the config ("rotate(2.5)|flip|...").

Every op is `op(example, rng) -> example` on numpy arrays: `image` (H, W, 3) uint8 or float32
in [0, 1] and `depth` (H, W) float32 metres with 0 = invalid. Paired geometric ops draw their
randomness once and apply it to image and depth alike; depth is always resampled with nearest
neighbour so no depth value is invented, and pixels that leave the frame become invalid (0).

Op arguments are Python literals, positional or by keyword: "cutdepth(swap_rows_cols=True)".

Ops (registered in `dgr_jax.registry.PP_OPS`):
  kb_crop                   KITTI benchmark crop 352x1216 (bottom-aligned, centred)
  rotate(degrees)           uniform angle in [-degrees, degrees]; PIL bilinear / nearest, as the
                            NeWCRFs/BTS loaders do
  flip(p=0.5)               horizontal flip
  random_crop(h, w)         uniform crop offsets
  center_crop(h, w)
  resize(h, w, method="bilinear")
                            image bilinear or "bicubic" (PIL), depth nearest
  resize_keep_aspect(min_h, min_w, multiple=1, method="bilinear")
                            aspect kept, both sides at least min_h / min_w and multiples of
                            `multiple` (Depth Anything V2's training resize: 518, 518, 14,
                            bicubic; its cv2 INTER_CUBIC is close to PIL's, not equal)
  nyu_train_box             zero the depth outside NYU's valid training box (NeWCRFs loader)
  cutdepth(swap_rows_cols=False, p=1.0)
                            CutDepth: paste the depth (metres, on all 3 channels) into a random
                            rectangle of the image; swap_rows_cols=True reproduces PixelFormer's
                            loader exactly (its rectangle's row start comes from the width draw
                            and its column start from the height draw; see the op)
  gamma(lo, hi, p=0.5)      image ** U(lo, hi)                       each with its own coin
  brightness(lo, hi, p=0.5) image * U(lo, hi)
  colour(lo, hi, p=0.5)     image * U(lo, hi) per channel
  photometric(b_lo, b_hi)   the hosts' joint version: ONE coin (p=0.5) then gamma U(0.9, 1.1),
                            brightness U(b_lo, b_hi), colour U(0.9, 1.1), clip (NeWCRFs
                            `augment_image`); use it for parity runs
  normalize                 float32, ImageNet mean/std (must be the last op)
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from dgr_jax import protocol
from dgr_jax.registry import PP_OPS

Example = dict[str, Any]
Op = Callable[[Example, np.random.Generator], Example]


def _as_float(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return image.astype(np.float32, copy=False)


def kb_crop_offsets(height: int, width: int) -> tuple[int, int]:
    """(top, left) of the KITTI benchmark crop: bottom-aligned, horizontally centred."""
    if height < protocol.KB_CROP_HEIGHT or width < protocol.KB_CROP_WIDTH:
        raise ValueError(
            f"KB crop needs images of at least {protocol.KB_CROP_HEIGHT}x{protocol.KB_CROP_WIDTH}, "
            f"got {height}x{width}"
        )
    return height - protocol.KB_CROP_HEIGHT, int((width - protocol.KB_CROP_WIDTH) / 2)


def _crop(ex: Example, top: int, left: int, h: int, w: int) -> Example:
    ex = dict(ex)
    ex["image"] = ex["image"][top : top + h, left : left + w]
    ex["depth"] = ex["depth"][top : top + h, left : left + w]
    return ex


@PP_OPS.register("kb_crop")
def kb_crop() -> Op:
    def op(ex: Example, rng: np.random.Generator) -> Example:
        top, left = kb_crop_offsets(*ex["depth"].shape)
        return _crop(ex, top, left, protocol.KB_CROP_HEIGHT, protocol.KB_CROP_WIDTH)

    return op


def _rotate_image(image: np.ndarray, angle: float) -> np.ndarray:
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).rotate(angle, resample=Image.BILINEAR))
    channels = [
        np.asarray(Image.fromarray(image[..., c], mode="F").rotate(angle, resample=Image.BILINEAR))
        for c in range(image.shape[-1])
    ]
    return np.stack(channels, axis=-1)


@PP_OPS.register("rotate")
def rotate(degrees: float) -> Op:
    def op(ex: Example, rng: np.random.Generator) -> Example:
        angle = float(rng.uniform(-degrees, degrees))
        ex = dict(ex)
        ex["image"] = _rotate_image(ex["image"], angle)
        depth = Image.fromarray(np.ascontiguousarray(ex["depth"], dtype=np.float32), mode="F")
        ex["depth"] = np.asarray(depth.rotate(angle, resample=Image.NEAREST), dtype=np.float32)
        return ex

    return op


@PP_OPS.register("flip")
def flip(p: float = 0.5) -> Op:
    def op(ex: Example, rng: np.random.Generator) -> Example:
        if rng.uniform() < p:
            ex = dict(ex)
            ex["image"] = ex["image"][:, ::-1]
            ex["depth"] = ex["depth"][:, ::-1]
        return ex

    return op


def _check_fits(ex: Example, h: int, w: int, name: str) -> tuple[int, int]:
    H, W = ex["depth"].shape
    if h > H or w > W:
        raise ValueError(
            f"{name}({h},{w}) needs images of at least {h}x{w}, got {H}x{W}: lower the crop "
            "size in config.input.pp_train / config.input.size, or resize first"
        )
    return H, W


@PP_OPS.register("random_crop")
def random_crop(h: int, w: int) -> Op:
    def op(ex: Example, rng: np.random.Generator) -> Example:
        H, W = _check_fits(ex, h, w, "random_crop")
        top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        return _crop(ex, top, left, h, w)

    return op


@PP_OPS.register("center_crop")
def center_crop(h: int, w: int) -> Op:
    def op(ex: Example, rng: np.random.Generator) -> Example:
        H, W = _check_fits(ex, h, w, "center_crop")
        return _crop(ex, (H - h) // 2, (W - w) // 2, h, w)

    return op


_IMAGE_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def _resize_pair(ex: Example, h: int, w: int, method: str) -> Example:
    """Image with `method` (PIL; uint8 images are clipped to 0..255), depth nearest."""
    if method not in _IMAGE_RESAMPLE:
        raise ValueError(f"resize method must be one of {sorted(_IMAGE_RESAMPLE)}, got {method!r}")
    resample = _IMAGE_RESAMPLE[method]
    ex = dict(ex)
    image = ex["image"]
    if image.dtype == np.uint8:
        ex["image"] = np.asarray(Image.fromarray(image).resize((w, h), resample))
    else:
        ex["image"] = np.stack(
            [
                np.asarray(Image.fromarray(image[..., c], mode="F").resize((w, h), resample))
                for c in range(image.shape[-1])
            ],
            axis=-1,
        )
    depth = Image.fromarray(np.ascontiguousarray(ex["depth"], dtype=np.float32), mode="F")
    ex["depth"] = np.asarray(depth.resize((w, h), Image.NEAREST), dtype=np.float32)
    return ex


@PP_OPS.register("resize")
def resize(h: int, w: int, method: str = "bilinear") -> Op:
    def op(ex: Example, rng: np.random.Generator) -> Example:
        return _resize_pair(ex, h, w, method)

    return op


def keep_aspect_size(
    size: tuple[int, int], min_h: int, min_w: int, multiple: int = 1
) -> tuple[int, int]:
    """(H, W) of `size` scaled, aspect kept, until both sides reach (min_h, min_w), each side
    then rounded to a multiple of `multiple` (up where rounding would go below the minimum).

    The "lower_bound" rule of Depth Anything V2's `Resize(keep_aspect_ratio=True,
    ensure_multiple_of=14)` (DPT's transform): NYU 480x640 -> 518x686 for 518x518.
    """
    h, w = size
    scale = max(min_h / h, min_w / w)

    def fit(x: float, lo: int) -> int:
        y = int(np.round(x / multiple) * multiple)
        return y if y >= lo else int(np.ceil(x / multiple) * multiple)

    return fit(scale * h, min_h), fit(scale * w, min_w)


@PP_OPS.register("resize_keep_aspect")
def resize_keep_aspect(min_h: int, min_w: int, multiple: int = 1, method: str = "bilinear") -> Op:
    """Resize keeping the aspect ratio to at least min_h x min_w, sides multiples of
    `multiple` (`keep_aspect_size`); image with `method`, depth nearest."""

    def op(ex: Example, rng: np.random.Generator) -> Example:
        h, w = keep_aspect_size(ex["depth"].shape, min_h, min_w, multiple)
        return _resize_pair(ex, h, w, method)

    return op


@PP_OPS.register("nyu_train_box")
def nyu_train_box() -> Op:
    top, bottom, left, right = protocol.NYU_TRAIN_VALID_BOX

    def op(ex: Example, rng: np.random.Generator) -> Example:
        ex = dict(ex)
        keep = np.zeros(ex["depth"].shape, dtype=bool)
        keep[top:bottom, left:right] = True
        ex["depth"] = np.where(keep, ex["depth"], 0.0).astype(np.float32)
        return ex

    return op


@PP_OPS.register("cutdepth")
def cutdepth(swap_rows_cols: bool = False, p: float = 1.0) -> Op:
    """CutDepth (Ishii & Yamashita, arXiv 2107.07684): replace a random rectangle of the RGB by
    the depth map, so the network sees depth-consistent edges early.

    [authors' code] PixelFormer bb0ae9f, dataloaders/dataloader.py, NYU only, on every training
    sample, after rotation and before crop / flip / colour: with a, b, c, d ~ U(0, 1) drawn in
    that order, l = int(a W), u = int(b H), w = int(max((W - a W) c 0.75, 1)),
    h = int(max((H - b H) d 0.75, 1)), it sets `img[l:l+h, u:u+w] = depth` (metres, repeated
    over the 3 channels). The row range starts at the WIDTH-derived l and the column range at
    the height-derived u: rows and columns are swapped relative to the CutDepth paper, so on a
    480x640 frame nothing is pasted when l >= 480 (a >= 0.75) and the rectangle is cut at the
    bottom edge more often. The pasted values stay in metres (up to 10 on NYU): they are
    clipped to [0, 1] only if the colour augmentation fires, then ImageNet-normalised.

    [ours] `swap_rows_cols=True` reproduces that exactly (configs/nyu_pixelformer.py uses it);
    the default is the paper's rectangle, rows [u, u + h) and columns [l, l + w). `p` < 1
    applies it with that probability (one extra draw); the official loader uses p = 1. The
    image becomes float32 in [0, 1] outside the rectangle.
    """
    factor = protocol.CUTDEPTH_SIZE_FACTOR

    def op(ex: Example, rng: np.random.Generator) -> Example:
        if p < 1.0 and rng.uniform() >= p:
            return ex
        height, width = ex["depth"].shape
        a, b, c, d = rng.uniform(size=4)
        left, top = int(a * width), int(b * height)
        w = int(max((width - a * width) * c * factor, 1))
        h = int(max((height - b * height) * d * factor, 1))
        if swap_rows_cols:  # PixelFormer: img[l:l+h, u:u+w]
            rows, cols = slice(left, left + h), slice(top, top + w)
        else:  # the paper's rectangle at (top, left)
            rows, cols = slice(top, top + h), slice(left, left + w)
        ex = dict(ex)
        image = _as_float(ex["image"]).copy()
        image[rows, cols, :] = ex["depth"][rows, cols, None]
        ex["image"] = image
        return ex

    return op


def _photometric(ex: Example, factor: Callable[[np.ndarray], np.ndarray]) -> Example:
    ex = dict(ex)
    ex["image"] = np.clip(factor(_as_float(ex["image"])), 0.0, 1.0).astype(np.float32)
    return ex


@PP_OPS.register("gamma")
def gamma(
    lo: float = protocol.GAMMA_RANGE[0],
    hi: float = protocol.GAMMA_RANGE[1],
    p: float = protocol.AUG_PROBABILITY,
) -> Op:
    def op(ex: Example, rng: np.random.Generator) -> Example:
        if rng.uniform() >= p:
            return ex
        g = rng.uniform(lo, hi)
        return _photometric(ex, lambda x: x**g)

    return op


@PP_OPS.register("brightness")
def brightness(
    lo: float = protocol.NYU_BRIGHTNESS_RANGE[0],
    hi: float = protocol.NYU_BRIGHTNESS_RANGE[1],
    p: float = protocol.AUG_PROBABILITY,
) -> Op:
    def op(ex: Example, rng: np.random.Generator) -> Example:
        if rng.uniform() >= p:
            return ex
        b = rng.uniform(lo, hi)
        return _photometric(ex, lambda x: x * b)

    return op


@PP_OPS.register("colour")
def colour(
    lo: float = protocol.COLOUR_RANGE[0],
    hi: float = protocol.COLOUR_RANGE[1],
    p: float = protocol.AUG_PROBABILITY,
) -> Op:
    def op(ex: Example, rng: np.random.Generator) -> Example:
        if rng.uniform() >= p:
            return ex
        c = rng.uniform(lo, hi, size=3).astype(np.float32)
        return _photometric(ex, lambda x: x * c)

    return op


@PP_OPS.register("photometric")
def photometric(b_lo: float, b_hi: float) -> Op:
    def op(ex: Example, rng: np.random.Generator) -> Example:
        if rng.uniform() < protocol.AUG_PROBABILITY:
            return ex
        g = rng.uniform(*protocol.GAMMA_RANGE)
        b = rng.uniform(b_lo, b_hi)
        c = rng.uniform(*protocol.COLOUR_RANGE, size=3).astype(np.float32)
        return _photometric(ex, lambda x: (x**g) * b * c)

    return op


@PP_OPS.register("normalize")
def normalize() -> Op:
    mean = np.asarray(protocol.IMAGENET_MEAN, np.float32)
    std = np.asarray(protocol.IMAGENET_STD, np.float32)

    def op(ex: Example, rng: np.random.Generator) -> Example:
        ex = dict(ex)
        ex["image"] = (_as_float(ex["image"]) - mean) / std
        return ex

    return op


def _literal_arguments(text: str, spec: str, pp: str) -> tuple[tuple, dict[str, Any]]:
    """ "2.5" / "352, 1120" / "swap_rows_cols=True" -> (args, kwargs), literals only."""
    try:
        call = ast.parse(f"op({text})", mode="eval").body
        if not isinstance(call, ast.Call) or any(k.arg is None for k in call.keywords):
            raise ValueError
        args = tuple(ast.literal_eval(a) for a in call.args)
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except (SyntaxError, ValueError):
        raise ValueError(
            f"bad preprocessing op {spec!r} in {pp!r}: arguments must be Python literals, "
            "positional or name=value"
        ) from None
    return args, kwargs


def parse(pp: str) -> list[Op]:
    """ "rotate(2.5)|flip|random_crop(240,320)|normalize" -> list of ops (validated)."""
    ops = []
    names = []
    for spec in filter(None, (s.strip() for s in pp.split("|"))):
        name, paren, rest = spec.partition("(")
        args: tuple = ()
        kwargs: dict[str, Any] = {}
        if paren:
            if not rest.endswith(")"):
                raise ValueError(f"bad preprocessing op {spec!r} in {pp!r}: missing ')'")
            args, kwargs = _literal_arguments(rest[:-1], spec, pp)
        try:
            factory = PP_OPS.get(name.strip())
        except KeyError as e:
            raise ValueError(f"{e.args[0]} (in pp string {pp!r})") from None
        try:
            ops.append(factory(*args, **kwargs))
        except TypeError as e:
            raise ValueError(f"bad arguments in {spec!r} (pp string {pp!r}): {e}") from None
        names.append(name.strip())
    if not names or names[-1] != "normalize":
        raise ValueError(f"pp string {pp!r} must end with 'normalize'")
    return ops


class Preprocess:
    """Picklable callable applying a pp string to one record; drops everything but the arrays.

    Output: {"image": float32 (H, W, 3) normalised, "depth": float32 (H, W)}.
    """

    def __init__(self, pp: str):
        self.pp = pp
        parse(pp)  # validate eagerly so a typo fails at start-up
        self._ops: list[Op] | None = None

    def __getstate__(self):
        return {"pp": self.pp}

    def __setstate__(self, state):
        self.pp, self._ops = state["pp"], None

    def __call__(self, record: Example, rng: np.random.Generator) -> Example:
        if self._ops is None:
            self._ops = parse(self.pp)
        ex = {
            "image": np.asarray(record["image"]),
            "depth": np.asarray(record["depth"], np.float32),
        }
        for op in self._ops:
            ex = op(ex, rng)
        return {
            "image": np.ascontiguousarray(ex["image"], dtype=np.float32),
            "depth": np.ascontiguousarray(ex["depth"], dtype=np.float32),
        }
