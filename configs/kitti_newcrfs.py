"""NeWCRFs (Swin-L window 7 + FC-CRF decoder) on the KITTI Eigen split: the official recipe.

    python -m dgr_jax.convert --swin-ckpt swin_large_patch4_window7_224_22k.pth --out W/swin_l22k
    python -m dgr_jax.data.build kitti_depth_eigen --manual_dir M --data_dir D
    python train.py --config configs/kitti_newcrfs.py --workdir runs/kitti_newcrfs \
        --config.data_dir=D --config.init_from=W/swin_l22k

Released checkpoint: `python -m dgr_jax.convert --newcrfs-ckpt model_kittieigen.ckpt
--variant kitti --out W/newcrfs_kitti`, then `eval.py --config configs/kitti_newcrfs.py
--config.init_from=W/newcrfs_kitti`; expected abs_rel 0.0520, rmse 2.0716, d1 0.975 on the 652
test images with ground truth (NeWCRFs README; paper 0.052 / 2.129 / 0.974).

Recipe (aliyun/NeWCRFs d327bf7, configs/arguments_train_kittieigen.txt): KB crop to
352x1216, rotate +-1 deg, h-flip, random crop 352x1120, photometric jitter with brightness
U(0.9, 1.1); batch 8, 50 epochs of the 23,158 Eigen training frames; Adam lr 2e-5, poly-0.9 to
0.1 x lr; SILog on gt > 1 m; max depth 80 m. Evaluation: KB-cropped input (352x1216),
1e-3 < gt < 80 m, Garg crop applied to the KB-cropped ground truth (what NeWCRFs publishes),
flip TTA. Meant for a GPU/TPU host. `:smoke` is a tiny model for tests.
"""

from __future__ import annotations

import ml_collections

from configs import base
from configs.nyu_newcrfs import newcrfs_model
from dgr_jax import protocol

DATASET = "kitti_depth_eigen"


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
    c.total_steps = protocol.NEWCRFS_EPOCHS * (protocol.KITTI_EIGEN_TRAIN_COUNT // c.batch_size)
    c.log_every = 100
    c.ckpt_every = 2000
    c.eval_every = 1000  # NeWCRFs eval_freq
    c.model = newcrfs_model(protocol.KITTI_MAX_DEPTH, smoke=arg == "smoke")
    c.loss.terms = ml_collections.ConfigDict({"silog": 1.0})
    c.loss.min_depth = protocol.KITTI_MIN_DEPTH_LOSS
    c.loss.otdl.grid_size = (crop_h // 8, crop_w // 8)  # used by the +DGR/OTDL variant
    c.optim.name = "adam"
    c.optim.lr = protocol.NEWCRFS_LR
    c.optim.weight_decay = 0.0
    # NeWCRFs configs/arguments_eval_kittieigen.txt: --input_height 352 --input_width 1216
    # --do_kb_crop --garg_crop --min_depth_eval 1e-3 --max_depth_eval 80; eval.py feeds the
    # KB-cropped 352x1216 frame unchanged (the dataloader does not resize in online_eval mode),
    # and so does the evaluation during training (arguments_train_kittieigen.txt: the same
    # eval arguments, online_eval mode, whatever the 352x1120 training crop). input_size None.
    c.evals.test = base.depth_eval(
        DATASET, crop="garg", max_depth=protocol.KITTI_MAX_DEPTH, kb_crop=True
    )
    if arg == "smoke":
        c.total_steps = 4
        c.input.size = (64, 96)
        c.input.pp_train = "flip|random_crop(64,96)|normalize"
        c.loss.otdl.grid_size = (8, 12)
        c.evals.test.input_size = c.input.size  # tiny model, tiny evaluation (tests only)
    c.lock()
    return c
