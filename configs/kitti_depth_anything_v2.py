"""Depth Anything V2 (DINOv2 ViT + DPT) fine-tuned for metric depth on KITTI (Eigen split).

    python -m dgr_jax.convert --depth-anything-ckpt depth_anything_v2_vitl.pth --encoder vitl \
        --out W/da2_vitl
    python -m dgr_jax.data.build kitti_depth_eigen --manual_dir M --data_dir D
    python train.py --config configs/kitti_depth_anything_v2.py:vitl \
        --workdir runs/kitti_da2_vitl --config.data_dir=D --config.init_from=W/da2_vitl

`:vits | :vitb | :vitl` (default vitl), `:smoke` a tiny model for tests; `_dgr` adds DGR and
OTDL. The recipe is `configs/nyu_depth_anything_v2.py`'s (the official metric_depth/
fine-tuning: AdamW, encoder lr 5e-6 and 10x for the rest, poly 0.9 to 0, SILog lambda 0.5 on
1e-3 < gt <= 80 m, 518x518 random crops after the aspect-keeping resize to multiples of 14,
flip) with max_depth 80 m (the official Virtual KITTI setting) on the KB-cropped KITTI
frames: 352x1216 -> 518x1792 for training crops and for evaluation (bicubic), prediction back
to the ground truth (bilinear, align corners), Garg crop, 1e-3 < gt < 80 m, no flip TTA.
Pixels without LiDAR ground truth (0) never enter the loss (gt > 1e-3). Ours: 10 epochs of the
23,158-frame Eigen list. The report prints Depth Anything V1's metric KITTI numbers
(0.046 / 1.896 / 0.982, ViT-L, ZoeDepth head) beside ours as a reference.
"""

from __future__ import annotations

import ml_collections

from configs import base
from configs.nyu_depth_anything_v2 import SMOKE_SIZE, da2_eval, da2_pp, da2_recipe, parse_arg
from dgr_jax import protocol

DATASET = "kitti_depth_eigen"
EPOCHS = 10  # ours


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    encoder, smoke = parse_arg(arg)
    c = base.base_config()
    c.input.dataset = DATASET
    c.input.workers = 8
    da2_recipe(c, encoder=encoder, max_depth=protocol.KITTI_MAX_DEPTH, smoke=smoke)
    c.input.pp_train = da2_pp(c.input.size, first="kb_crop|")
    c.total_steps = EPOCHS * (protocol.KITTI_EIGEN_TRAIN_COUNT // c.batch_size)
    c.log_every = 100
    c.ckpt_every = 2000
    c.eval_every = 2000
    frame = (protocol.KB_CROP_HEIGHT, protocol.KB_CROP_WIDTH)
    with c.ignore_type():
        c.evals.test = da2_eval(
            DATASET, frame, crop="garg", max_depth=protocol.KITTI_MAX_DEPTH, kb_crop=True
        )
    if smoke:
        c.total_steps = 4
        c.input.pp_train = "flip|random_crop(56,84)|normalize"
        c.evals.test.input_size = SMOKE_SIZE
    c.lock()
    return c
