"""PixelFormer (Swin-L window 7 + skip attention + adaptive bins) on NYU-Depth-v2: the official
recipe.

Train (from the ImageNet-22k Swin-L, as PixelFormer does):

    python -m dgr_jax.convert --swin-ckpt swin_large_patch4_window7_224_22k.pth --out W/swin_l22k
    python -m dgr_jax.data.build nyu_depth_v2_bts/dense --manual_dir M --data_dir D
    python train.py --config configs/nyu_pixelformer.py --workdir runs/nyu_pixelformer \
        --config.data_dir=D --config.init_from=W/swin_l22k

Reproduce the released checkpoint's numbers (no training; `nyu.pth` from the PixelFormer README's
Google Drive folder, which cannot be fetched here):

    python -m dgr_jax.convert --pixelformer-ckpt nyu.pth --variant nyu --out W/pixelformer_nyu
    python eval.py --config configs/nyu_pixelformer.py --workdir runs/pixelformer_nyu_released \
        --config.data_dir=D --config.init_from=W/pixelformer_nyu

Expected (654 images, Eigen crop, 1e-3 < gt < 10 m, flip TTA blend): abs_rel 0.090, rmse 0.322,
d1 0.929 (paper, WACV 2023; the README publishes no numbers). What the converter and init_from
check: docs/convert.md.

Recipe (ashutosh1807/PixelFormer bb0ae9f, configs/arguments_train_nyu.txt, train.py,
dataloaders/dataloader.py): the 36,253-frame "dense" list at 480x640, batch 8, 20 epochs;
Adam (weight decay and adam_eps are parsed but not passed to the optimiser: no decay, eps
1e-8), lr 4e-5 with poly-0.9 decay to 0.1 x lr; SILog (variance focus 0.85) on gt > 0.1 m only;
Swin-L drop path 0.3; augmentation in the official order: GT zeroed outside the valid box,
rotate +-2.5 deg, CutDepth on every sample with the official rows/columns swap (op `cutdepth`,
dgr_jax/data/augment.py), (crop: a no-op at 480x640), h-flip, then with p=0.5 gamma U(0.9, 1.1),
brightness U(0.75, 1.25), colour U(0.9, 1.1), clip. The bins' min_depth is the official 0.1 m.
Meant for a GPU/TPU host (Swin-L at 480x640). `:smoke` is a tiny model for tests.
"""

from __future__ import annotations

import ml_collections

from configs import base
from dgr_jax import protocol

DATASET = "nyu_depth_v2_bts/dense"  # PixelFormer's training list; its test split is the usual 654
STAGES = ("stage1", "stage2", "stage3", "stage4")


def pixelformer_model(max_depth: float, *, smoke: bool = False) -> ml_collections.ConfigDict:
    """`config.model` of PixelFormer ("large07"); `smoke` shrinks every width."""
    model = ml_collections.ConfigDict()
    model.encoder = ml_collections.ConfigDict(
        {"name": "swin", "variant": "L", "window_size": 7, "drop_path_rate": 0.3}
    )
    model.decoder = ml_collections.ConfigDict(
        {
            "name": "pixelformer",
            "max_depth": max_depth,
            "min_depth": protocol.PIXELFORMER_MIN_DEPTH,  # the bins' lower edge
            "sam_dims": (128, 256, 512, 1024),
            "sam_heads": (4, 8, 16, 32),
            "sam_window": 7,  # hard-coded upstream, whatever the Swin window
            "psp_channels": 512,
            "pool_scales": (1, 2, 3, 6),
            "ppm_norm_groups": 256,
            "num_bins": 256,
            "bcp_hidden": 2048,
        }
    )
    # The DGR block on the Swin stage outputs, before the decoder (off in the plain recipe).
    model.dgr = base.base_config().model.dgr
    model.dgr.enabled = False
    model.dgr.positions = STAGES
    # The decoder ends in metres itself (bins), so the DepthModel head is the identity.
    model.head = ml_collections.ConfigDict({"name": "identity"})
    if smoke:
        model.encoder.update({"variant": "tiny_test", "drop_path_rate": 0.0})
        model.decoder.update(
            {
                "sam_dims": (16, 32, 48, 64),
                "sam_heads": (2, 2, 4, 4),
                "psp_channels": 32,
                "ppm_norm_groups": 16,
                "num_bins": 16,
                "bcp_hidden": 64,
            }
        )
    return model


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.base_config()
    h, w = protocol.NYU_HEIGHT, protocol.NYU_WIDTH
    c.input.dataset = DATASET
    c.input.size = (h, w)
    c.input.pp_train = (
        f"nyu_train_box|rotate({protocol.NYU_ROTATE_DEGREES})|cutdepth(swap_rows_cols=True)"
        f"|random_crop({h},{w})|flip|photometric({protocol.NYU_BRIGHTNESS_RANGE[0]},"
        f"{protocol.NYU_BRIGHTNESS_RANGE[1]})|normalize"
    )
    c.input.workers = 8
    c.batch_size = 8
    c.total_steps = protocol.PIXELFORMER_EPOCHS * (protocol.NYU_TRAIN_COUNT_DENSE // c.batch_size)
    c.log_every = 100
    c.ckpt_every = 2000
    c.eval_every = 1000  # PixelFormer eval_freq
    c.model = pixelformer_model(protocol.NYU_MAX_DEPTH, smoke=arg == "smoke")
    c.loss.terms = ml_collections.ConfigDict({"silog": 1.0})
    c.loss.min_depth = protocol.NYU_MIN_DEPTH_LOSS
    c.loss.otdl.grid_size = (h // 8, w // 8)  # for +DGR/OTDL runs
    c.optim.name = "adam"
    c.optim.lr = protocol.PIXELFORMER_LR
    c.optim.weight_decay = 0.0
    # PixelFormer configs/arguments_eval_nyu.txt: --input_height 480 --input_width 640 --eigen_crop
    # --min_depth_eval 1e-3 --max_depth_eval 10; the 480x640 test frame as read, in the
    # evaluation during training too (arguments_train_nyu.txt). input_size None.
    c.evals.test = base.depth_eval(DATASET, crop="eigen", max_depth=protocol.NYU_MAX_DEPTH)
    if arg == "smoke":
        c.total_steps = 4
        c.input.size = (64, 96)
        c.input.pp_train = "cutdepth(swap_rows_cols=True)|flip|random_crop(64,96)|normalize"
        c.loss.otdl.grid_size = (8, 12)
        c.evals.test.input_size = c.input.size  # tiny model, tiny evaluation (tests only)
    c.lock()
    return c
