"""Evaluation crops of the BTS-family protocol (NYU Eigen, KITTI Garg / Eigen, KITTI KB crop).

What is whose:
- The boxes are the PyTorch hosts' (BTS `utils/eval_with_pngs.py`, NeWCRFs `newcrfs/eval.py`):
  NYU Eigen = rows 45:471, cols 41:601 of the 480x640 ground truth; KITTI Garg / KITTI Eigen =
  `int(fraction * size)` of the ground-truth size; KB crop = a 352x1216 window whose bottom edge
  is the frame's bottom edge, centred horizontally. The numbers live in `dgr_jax/protocol.py`.
- Ours: the NYU Eigen box is given in pixels at 480x640 only; at other sizes (tiny smoke data,
  resized test sets) it scales with integer floor division, which reproduces the published box
  exactly at 480x640. Masks are NumPy constants: they depend only on the static (H, W), so they
  enter jitted code as constants or arguments.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dgr_jax import protocol

CROPS = ("eigen", "garg", "garg_full_res", "kitti_eigen", "none")


def _box_mask(h: int, w: int, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def _fraction_box(h: int, w: int, fractions: tuple[float, float, float, float]) -> tuple:
    # int() of fraction x size, exactly as the hosts write it (Python floats, truncation).
    top, bottom, left, right = fractions
    return int(top * h), int(bottom * h), int(left * w), int(right * w)


def eigen_crop_box(h: int, w: int) -> tuple[int, int, int, int]:
    """NYU Eigen crop box `(top, bottom, left, right)` (end exclusive) for an (h, w) map.

    At 480x640 this is rows 45:471, cols 41:601 (NeWCRFs `--eigen_crop`). Other sizes scale the
    box proportionally with floor division.
    """
    top, bottom, left, right = protocol.EIGEN_CROP_NYU
    ref_h, ref_w = protocol.NYU_HEIGHT, protocol.NYU_WIDTH
    return top * h // ref_h, bottom * h // ref_h, left * w // ref_w, right * w // ref_w


def eigen_crop_mask(h: int, w: int) -> np.ndarray:
    """Bool (h, w) mask of the NYU Eigen crop (see `eigen_crop_box`)."""
    return _box_mask(h, w, *eigen_crop_box(h, w))


def garg_crop_box(h: int, w: int) -> tuple[int, int, int, int]:
    """KITTI Garg crop box `(top, bottom, left, right)`: `int(fraction * size)` of the GT size.

    E.g. 352x1216 -> rows 143:349, cols 43:1172; 375x1242 -> rows 153:371, cols 44:1197.
    """
    return _fraction_box(h, w, protocol.GARG_CROP_FRACTIONS)


def garg_crop_mask(h: int, w: int) -> np.ndarray:
    """Bool (h, w) mask of the KITTI Garg crop (see `garg_crop_box`)."""
    return _box_mask(h, w, *garg_crop_box(h, w))


def kitti_eigen_crop_box(h: int, w: int) -> tuple[int, int, int, int]:
    """KITTI "eigen crop" variant box (BTS `--eigen_crop` with `--dataset kitti`)."""
    return _fraction_box(h, w, protocol.KITTI_EIGEN_CROP_FRACTIONS)


def kitti_eigen_crop_mask(h: int, w: int) -> np.ndarray:
    """Bool (h, w) mask of the KITTI Eigen crop variant (see `kitti_eigen_crop_box`)."""
    return _box_mask(h, w, *kitti_eigen_crop_box(h, w))


def crop_mask(name: str, h: int, w: int) -> np.ndarray:
    """The evaluation mask of crop `name` (one of `CROPS`) for an (h, w) ground truth.

    "garg" and "garg_full_res" use the same fractions; they differ in which ground truth they are
    applied to (KB-cropped vs full resolution), which is the evaluator's business.
    """
    if name == "eigen":
        return eigen_crop_mask(h, w)
    if name in ("garg", "garg_full_res"):
        return garg_crop_mask(h, w)
    if name == "kitti_eigen":
        return kitti_eigen_crop_mask(h, w)
    if name == "none":
        return np.ones((h, w), dtype=bool)
    raise ValueError(f"unknown crop {name!r}; valid crops: {', '.join(CROPS)}")


def kb_crop_box(h: int, w: int) -> tuple[int, int]:
    """Top-left corner `(top, left)` of the KITTI benchmark (KB) crop of an (h, w) frame.

    top = h - 352, left = int((w - 1216) / 2); e.g. 375x1242 -> (23, 13), 370x1224 -> (18, 4).

    Raises:
        ValueError: if the frame is smaller than 352x1216.
    """
    ch, cw = protocol.KB_CROP_HEIGHT, protocol.KB_CROP_WIDTH
    if h < ch or w < cw:
        raise ValueError(f"KB crop needs a frame of at least {ch}x{cw}, got {h}x{w}")
    return h - ch, int((w - cw) / 2)


def kb_crop(x: np.ndarray) -> np.ndarray:
    """Crop an (H, W, ...) array (image or depth) to its 352x1216 KB window."""
    top, left = kb_crop_box(x.shape[0], x.shape[1])
    return x[top : top + protocol.KB_CROP_HEIGHT, left : left + protocol.KB_CROP_WIDTH]


def kb_uncrop(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """Paste a 352x1216 (..., 352, 1216) map into zeros of the full (h, w) frame (BTS style).

    Works on NumPy or JAX arrays with any leading axes; the window is `kb_crop_box(h, w)`.
    """
    top, left = kb_crop_box(h, w)
    ch, cw = x.shape[-2], x.shape[-1]
    pad = [(0, 0)] * (x.ndim - 2) + [(top, h - top - ch), (left, w - left - cw)]
    if isinstance(x, np.ndarray):
        return np.pad(x, pad)
    return jnp.pad(x, pad)
