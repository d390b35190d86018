"""ViT-B/16 + DPT + DGR, SILog + OTDL on the KITTI Eigen split (method.md section 5 recipe).

    python -m dgr_jax.data.build kitti_depth_eigen --manual_dir M --data_dir D
    python train.py --config configs/kitti_vit_dgr.py --workdir runs/kitti_vit_dgr \
        --config.data_dir=D

The manual-dir layout (KITTI raw, data_depth_annotated, the Eigen lists) and where to get the
files: docs/datasets.md; `--config.input.manual_dir=M` builds on first use instead.

Recipe (NeWCRFs / PixelFormer KITTI): KB crop to 352x1216, rotate +-1 deg, h-flip, random crop
352x1120, gamma / brightness U(0.9, 1.1) / colour jitter with one p=0.5 coin, SILog (variance
focus 0.85) on gt > 1 m plus OTDL on a 44x140 grid; Adam, poly-0.9 decay to 0.1 x lr, batch 8,
PixelFormer's lr and 20 epochs of the 23,158 training frames. Evaluation on the 652 test
images with ground truth, KB-cropped input, 1e-3 < gt < 80 m, flip TTA; `test` applies the Garg
crop to the KB-cropped ground truth (NeWCRFs, PixelFormer, AdaBins: the numbers they publish),
`test_bts_full_res` to the full-resolution ground truth with the prediction pasted back (BTS
eval_with_pngs). Meant for a GPU/TPU host. `:smoke` is a tiny model for tests.
"""

from __future__ import annotations

import ml_collections

from configs import base
from dgr_jax import protocol

DATASET = "kitti_depth_eigen"


def _kitti_eval(crop: str) -> ml_collections.ConfigDict:
    # BTS pytorch/arguments_test_eigen.txt (and NeWCRFs / PixelFormer arguments_eval_kittieigen):
    # --input_height 352 --input_width 1216 --do_kb_crop: the model sees the KB-cropped
    # 352x1216 frame unchanged (a multiple of the patch, 16), in the evaluation during training
    # too (BTS arguments_train_eigen.txt online eval, same dataloader path). input_size None.
    return base.depth_eval(DATASET, crop=crop, max_depth=protocol.KITTI_MAX_DEPTH, kb_crop=True)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.base_config()
    c.input.dataset = DATASET
    crop_h, crop_w = protocol.KITTI_TRAIN_CROP
    c.input.size = (crop_h, crop_w)
    c.input.pp_train = (
        f"kb_crop|rotate({protocol.KITTI_ROTATE_DEGREES})|flip|random_crop({crop_h},{crop_w})"
        f"|photometric({protocol.KITTI_BRIGHTNESS_RANGE[0]},{protocol.KITTI_BRIGHTNESS_RANGE[1]})"
        "|normalize"
    )
    c.input.workers = 8
    c.batch_size = 8
    c.total_steps = protocol.PIXELFORMER_EPOCHS * (protocol.KITTI_EIGEN_TRAIN_COUNT // c.batch_size)
    c.log_every = 100
    c.ckpt_every = 2000
    c.eval_every = 2000
    c.model.encoder = ml_collections.ConfigDict(
        {"name": "vit", "variant": "B", "patch_size": 16, "readout": "project"}
    )
    c.model.decoder.features = 256
    c.model.head.max_depth = protocol.KITTI_MAX_DEPTH
    c.loss.min_depth = protocol.KITTI_MIN_DEPTH_LOSS
    c.loss.otdl.grid_size = (crop_h // 8, crop_w // 8)
    c.optim.lr = protocol.PIXELFORMER_LR
    c.evals.test = _kitti_eval("garg")
    c.evals.test_bts_full_res = _kitti_eval("garg_full_res")
    if arg == "smoke":
        c.total_steps = 4
        c.input.size = (64, 96)
        c.input.pp_train = "flip|random_crop(64,96)|normalize"
        c.model.encoder.update({"variant": "tiny_test"})
        c.model.decoder.features = 16
        c.loss.otdl.grid_size = (8, 12)
        for ev in c.evals.values():
            ev.input_size = c.input.size  # tiny model, tiny evaluation (tests only)
    c.lock()
    return c
