"""`input.size = (0, 0)`: the training size taken from the data (the `depth_files` recipes).

A user's frames have whatever size their sensor gives, so those recipes leave the sizes to the
data: after the dataset is built, `resolve(config, data_dir)` returns a copy of the config in
which every size written as (0, 0) is set from the smallest training frame, rounded down to a
multiple of `MULTIPLE` (the encoders' coarsest stride):
  input.size                (H, W)
  "random_crop(0,0)" in input.pp_train -> random_crop(H, W)
  model.encoder.image_size  (H, W), where present and (0, 0)
  loss.otdl.grid_size       (H / 8, W / 8), where (0, 0)
With an explicit input.size, the other (0, 0) sizes follow it. The trainer and eval.py call
it; the trainer writes the resolved config to config.json, which `predict --workdir` reads.
Evaluation sees each frame as read (no dataset crop unless the build was given one).
"""

from __future__ import annotations

import copy

import ml_collections

from dgr_jax.data import datasets
from dgr_jax.data.builders.base import DatasetError

FROM_DATA = (0, 0)
MULTIPLE = 32  # Swin / ResNet stride 32; a multiple of the ViT's patch 16 too
OT_GRID_STRIDE = 8  # the OT grid is 1/8 of the input side (configs/base.py)
CROP_FROM_DATA = "random_crop(0,0)"


def from_data(config: ml_collections.ConfigDict) -> bool:
    return tuple(int(s) for s in config.input.size) == FROM_DATA


def data_size(config: ml_collections.ConfigDict, data_dir: str) -> tuple[int, int]:
    """The training size the data allows: the smallest training frame, rounded down to 32."""
    builder = datasets.ensure_built(
        config.input.dataset,
        data_dir,
        manual_dir=config.input.manual_dir,
        build_args=dict(config.input.build),
    )
    splits = dict(builder.info.metadata or {}).get("splits") or {}
    split = config.input.split
    if split not in splits:
        raise DatasetError(
            f"input.size (0, 0) takes the training size from the data, but "
            f"{config.input.dataset} does not record the frame sizes of its {split!r} split: "
            "set input.size (and the random_crop of input.pp_train) instead"
        )
    h, w = (int(v) for v in splits[split]["min_size"])
    size = (h // MULTIPLE * MULTIPLE, w // MULTIPLE * MULTIPLE)
    if min(size) == 0:
        raise DatasetError(
            f"the smallest {split} frame of {config.input.dataset} is {h}x{w}; training needs "
            f"at least {MULTIPLE}x{MULTIPLE}"
        )
    return size


def _placeholders(config: ml_collections.ConfigDict) -> bool:
    encoder, otdl = config.model.encoder, config.loss.get("otdl")
    return (
        from_data(config)
        or CROP_FROM_DATA in config.input.pp_train
        or ("image_size" in encoder and tuple(encoder.image_size) == FROM_DATA)
        or (otdl is not None and tuple(otdl.grid_size) == FROM_DATA)
    )


def resolve(config: ml_collections.ConfigDict, data_dir: str) -> ml_collections.ConfigDict:
    """`config` itself if no size is (0, 0), else a copy with every (0, 0) size set: from the
    data if input.size is (0, 0), else from input.size (a size given on the command line)."""
    if not _placeholders(config):
        return config
    h, w = data_size(config, data_dir) if from_data(config) else tuple(config.input.size)
    out = copy.deepcopy(config)
    with out.unlocked():
        out.input.size = (h, w)
        out.input.pp_train = out.input.pp_train.replace(CROP_FROM_DATA, f"random_crop({h},{w})")
        encoder = out.model.encoder
        if "image_size" in encoder and tuple(encoder.image_size) == FROM_DATA:
            encoder.image_size = (h, w)
        otdl = out.loss.get("otdl")
        if otdl is not None and tuple(otdl.grid_size) == FROM_DATA:
            otdl.grid_size = (h // OT_GRID_STRIDE, w // OT_GRID_STRIDE)
    return out
