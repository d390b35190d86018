"""The evaluation frame: what the model sees at evaluation, computable without data.

What is whose:
- The frame is the hosts' (NeWCRFs / PixelFormer `eval.py` with `configs/arguments_eval_*.txt`,
  BTS `bts_eval.py`): the test image as read, after the KITTI KB crop where the protocol has one
  (`--do_kb_crop`), whatever the training crop: NYU 480x640, KITTI 352x1216. Their dataloaders do
  no resize in `online_eval` / `test` mode, so `config.evals.<name>.input_size` defaults to None
  (that frame). Setting it resizes every frame to it (bilinear) and the prediction back.
- When the frame is not a multiple of what the model needs (`input_multiple`: Swin hosts 32, a
  ViT its patch), `fit` says what happens, and metrics.json's protocol says it in words:
  "resize" (default): bilinear to the nearest multiple per side and the prediction back, as the
  hosts do for frames of any size (NeWCRFs / PixelFormer `demo.py` resize every frame to
  `--input_height x --input_width`; DPT `run_monodepth.py` resizes to a multiple of 32 and
  back); "pad": zeros after the ImageNet normalisation at the bottom / right up to the next
  multiple and the prediction cropped back (what the Swin backbone of both hosts does inside
  `PatchEmbed` and every window partition); "none": refuse such a frame. The hosts' standard
  frames (480x640, 352x1216) are multiples of 32 and of 16, so none of this applies to them.
- Ours: the frame of a dataset is known from the protocol constants (`dgr_jax/protocol.py`) or,
  for the synthetic renderer, from its build arguments, so an ahead-of-time compiler can use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from dgr_jax import protocol

FITS = ("resize", "pad", "none")
# Swin (patch 4, three 2x patch mergings) feeding the NeWCRFs / PixelFormer decoders, which
# concatenate stage maps and upsample by 2 per level: their input sides must be multiples of 32.
SWIN_HOST_MULTIPLE = 32


def configured_size(value: Any) -> tuple[int, int] | None:
    """`config.evals.<name>.input_size` as (H, W), or None for the frame as read. The command
    line gives `--config.evals.test.input_size=None` as (None,); that means None too."""
    if value is None or not tuple(value) or any(v is None for v in value):
        return None
    if len(value) != 2:
        raise ValueError(f"input_size must be (H, W) or None, got {tuple(value)}")
    return int(value[0]), int(value[1])


def input_multiple(model_cfg: Mapping[str, Any]) -> int:
    """What the model's input sides must be multiples of (1: any size).

    Swin encoders: 32 (the NeWCRFs / PixelFormer decoders; the official models fail otherwise).
    ViT: its patch size (ours refuses other sizes). ResNet + DPT: 1 (the DPT decoder resizes
    stage maps of sides that are not multiples of 32 itself).
    """
    encoder = model_cfg["encoder"]
    name = encoder["name"]
    if name == "swin":
        return SWIN_HOST_MULTIPLE
    if name == "vit":
        return int(encoder.get("patch_size", 16))
    return 1


def dataset_frame(
    dataset: str, *, kb_crop: bool, build_args: Mapping[str, Any] | None = None
) -> tuple[int, int]:
    """The test frame (H, W) of a dataset as the evaluator reads it (after the KB crop).

    NYU (BTS official test set): 480x640. KITTI: the 352x1216 KB crop, or without it the
    375x1242 frame of the 2011_09_26 drives (other days' frames, 370x1224 to 376x1241, are
    resized to it and the protocol says so). Synthetic: its build height x width.

    Raises:
        ValueError: for a dataset whose frame is not known without reading it.
    """
    base = dataset.split("/")[0]
    if kb_crop:
        return protocol.KB_CROP_HEIGHT, protocol.KB_CROP_WIDTH
    if base.startswith("nyu_depth_v2"):
        return protocol.NYU_HEIGHT, protocol.NYU_WIDTH
    if base.startswith("kitti"):
        return protocol.KITTI_FULL_FRAME
    if base.startswith("synthetic_depth") and build_args is not None:
        return int(build_args["height"]), int(build_args["width"])
    raise ValueError(
        f"the evaluation frame of dataset {dataset!r} is not known without its data: "
        "set config.evals.<name>.input_size=(H, W)"
    )


def fitted_size(frame: Sequence[int], multiple: int, fit: str) -> tuple[int, int]:
    """The model input size for a frame: the frame itself when its sides are multiples.

    Args:
        frame: (H, W) of the evaluation frame.
        multiple: what the model's sides must be multiples of (`input_multiple`).
        fit: "resize" (nearest multiple per side, at least one multiple), "pad" (next multiple)
            or "none" (a frame that does not fit is an error).
    """
    h, w = int(frame[0]), int(frame[1])
    if fit not in FITS:
        raise ValueError(f"unknown fit {fit!r}; valid: {', '.join(FITS)}")
    if h % multiple == 0 and w % multiple == 0:
        return h, w
    if fit == "pad":
        return math.ceil(h / multiple) * multiple, math.ceil(w / multiple) * multiple
    if fit == "resize":
        return tuple(max(multiple, math.floor(s / multiple + 0.5) * multiple) for s in (h, w))
    raise ValueError(
        f"the {h}x{w} evaluation frame is not a multiple of {multiple}, which the model needs; "
        "set fit='resize' or 'pad', or input_size to a multiple"
    )


def describe(frame: Sequence[int], model_size: Sequence[int], fit: str, *, explicit: bool) -> str:
    """metrics.json's `input` entry: how the frame reaches the model, in words."""
    fh, fw = frame
    mh, mw = model_size
    if explicit:
        words = f"frames resized (bilinear) to the configured input_size {fh}x{fw}"
        if (fh, fw) != (mh, mw):
            how = "zero-padded" if fit == "pad" else "resized (bilinear)"
            words += f", then {how} to {mh}x{mw}"
        return words + ", prediction back to the ground truth"
    if (fh, fw) == (mh, mw):
        return f"the {fh}x{fw} frame as read, unchanged"
    if fit == "pad":
        return (
            f"the {fh}x{fw} frame zero-padded after normalisation at the bottom/right to "
            f"{mh}x{mw}, prediction cropped back (no resampling)"
        )
    return f"the {fh}x{fw} frame resized (bilinear) to {mh}x{mw}, prediction resized back"


def describe_resize(
    input_size: tuple[int, int],
    resized_images: int,
    resized_predictions: bool,
    *,
    image_method: str = "bilinear",
    align_corners: bool = False,
) -> str:
    """metrics.json's `resize`: "none", or how the images and the prediction were resized."""
    parts = []
    if resized_images:
        h, w = input_size
        parts.append(f"image -> {h}x{w} model input ({resized_images} images)")
    if resized_predictions:
        parts.append("prediction -> ground-truth size")
    if not parts:
        return "none"
    if image_method == "bilinear" and not align_corners:
        return "bilinear (half-pixel centres, no antialiasing): " + "; ".join(parts)
    pred_kind = "align corners" if align_corners else "half-pixel centres"
    return (
        f"image {image_method}, prediction bilinear ({pred_kind}), no antialiasing: "
        + "; ".join(parts)
    )
