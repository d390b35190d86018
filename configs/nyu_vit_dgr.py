"""ViT-B/16 + DPT + DGR, SILog + OTDL on NYU-Depth-v2 at 480x640 (method.md section 5 recipe).

    python -m dgr_jax.data.build nyu_depth_v2_bts --manual_dir M --data_dir D
    python train.py --config configs/nyu_vit_dgr.py --workdir runs/nyu_vit_dgr \
        --config.data_dir=D

`:dense` trains on NeWCRFs/PixelFormer's 36,253-frame list (dataset `nyu_depth_v2_bts/dense`,
build it with that name) instead of BTS's 24,231; `:smoke` is a tiny model for tests. The
manual-dir layout and where to get the files: docs/datasets.md. Instead of building first,
`--config.input.manual_dir=M` builds on first use.

Recipe: Adam, poly-0.9 decay to 0.1 x lr, batch 8, ground truth zeroed outside NeWCRFs' valid
training box, rotate +-2.5 deg, h-flip, gamma / brightness / colour jitter (p=0.5), SILog
(variance focus 0.85) on gt > 0.1 m plus OTDL on a 60x80 grid; evaluation on the official 654
test images with the Eigen crop, 1e-3 < gt < 10 m, flip TTA (NeWCRFs post_process_depth). Meant
for a GPU/TPU host.
"""

from __future__ import annotations

import ml_collections

from configs import base
from dgr_jax import protocol


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.base_config()
    dataset = "nyu_depth_v2_bts/dense" if arg == "dense" else "nyu_depth_v2_bts"
    c.input.dataset = dataset
    c.input.size = (protocol.NYU_HEIGHT, protocol.NYU_WIDTH)
    # NeWCRFs' loader zeroes the GT outside the valid box before the geometric augmentation.
    c.input.pp_train = (
        f"nyu_train_box|rotate({protocol.NYU_ROTATE_DEGREES})|flip|random_crop({protocol.NYU_HEIGHT},"
        f"{protocol.NYU_WIDTH})|photometric({protocol.NYU_BRIGHTNESS_RANGE[0]},"
        f"{protocol.NYU_BRIGHTNESS_RANGE[1]})|normalize"
    )
    c.input.workers = 8
    c.batch_size = 8
    train_count = protocol.NYU_TRAIN_COUNT_DENSE if arg == "dense" else protocol.NYU_TRAIN_COUNT_BTS
    steps_per_epoch = train_count // c.batch_size
    c.total_steps = 25 * steps_per_epoch
    c.log_every = 100
    c.ckpt_every = 2000
    c.eval_every = 2000
    c.model.encoder = ml_collections.ConfigDict(
        {
            "name": "vit",
            "variant": "B",
            "patch_size": 16,
            "readout": "project",
            "image_size": (protocol.NYU_HEIGHT, protocol.NYU_WIDTH),
        }
    )
    c.model.decoder.features = 256
    c.model.head.max_depth = protocol.NYU_MAX_DEPTH
    c.loss.min_depth = protocol.NYU_MIN_DEPTH_LOSS
    c.loss.otdl.grid_size = (protocol.NYU_HEIGHT // 8, protocol.NYU_WIDTH // 8)
    c.loss.terms.otdl = protocol.OTDL_WEIGHT  # one weight for every config (dgr_jax/protocol.py)
    c.optim.lr = protocol.PIXELFORMER_LR
    # BTS pytorch/arguments_test_nyu.txt (--input_height 480 --input_width 640) with the
    # NeWCRFs eval arguments (--eigen_crop, 1e-3 < gt < 10): the 480x640 frame as read, a
    # multiple of the patch (16); the evaluation during training is the same. input_size None.
    c.evals.test = base.depth_eval(dataset, crop="eigen", max_depth=protocol.NYU_MAX_DEPTH)
    if arg == "smoke":
        c.total_steps = 4
        c.batch_size = 8
        c.input.size = (64, 96)
        c.input.pp_train = "flip|random_crop(64,96)|normalize"
        c.model.encoder.update({"variant": "tiny_test", "image_size": c.input.size})
        c.model.decoder.features = 16
        c.loss.otdl.grid_size = (8, 12)
        c.evals.test.input_size = c.input.size  # tiny model, tiny evaluation (tests only)
    c.lock()
    return c
