"""The embedded default: ViT + DPT decoder + DGR, SILog + OTDL, on `synthetic_depth/indoor`.

    python train.py --config configs/synthetic_vit_dgr.py --workdir runs/quickstart

Sized to train and evaluate on 2 CPU cores. `:smoke` gives a tiny model for tests (batch 8,
a few dozen steps). Expected run time and metrics: see README.md (measured, not guessed).
"""

from __future__ import annotations

import ml_collections

from configs import base, common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.base_config()
    # CPU-sized: scenes rendered at 128x160 (NYU intrinsics scaled), so a ViT-S/16 sees an 8x10
    # token grid and a step of batch 8 takes about a second on 2 cores.
    c.input.dataset = "synthetic_depth/indoor"
    c.input.build.update({"num_train": 2000, "num_test": 200, "height": 128, "width": 160})
    c.input.size = (128, 160)
    c.input.pp_train = "rotate(2.5)|flip|random_crop(128,160)|gamma|brightness|colour|normalize"
    c.total_steps = 600
    c.batch_size = 8
    c.log_every = 25
    c.ckpt_every = 200
    c.eval_every = 200
    c.optim.lr = 2e-4
    c.optim.warmup_steps = 30
    c.optim.grad_clip = 1.0
    c.model.encoder = ml_collections.ConfigDict(
        {
            "name": "vit",
            "variant": "S",
            "patch_size": 16,
            "readout": "project",
            "pos_embed": "learned",
            "image_size": c.input.size,
        }
    )
    c.model.decoder.features = 64
    c.loss.otdl.grid_size = (16, 20)  # 1/8 of 128x160
    c.loss.terms.otdl = 500.0  # lambda_ot: see configs/base.py
    c.model.head.max_depth = common.NYU_MAX_DEPTH
    c.evals.test = base.depth_eval(
        "synthetic_depth/indoor", crop="none", max_depth=common.NYU_MAX_DEPTH
    )
    if arg == "smoke":
        c.total_steps = 24
        c.batch_size = 8
        c.log_every = 4
        c.ckpt_every = 12
        c.eval_every = 12
        c.input.build.update({"num_train": 32, "num_test": 8, "height": 32, "width": 48})
        c.input.size = (32, 48)
        c.input.pp_train = "flip|random_crop(32,48)|photometric(0.75,1.25)|normalize"
        c.model.encoder.update({"variant": "tiny_test", "image_size": c.input.size})
        c.model.decoder.features = 16
        c.loss.otdl.grid_size = (8, 12)
        c.evals.test.batch_size = 4
        c.evals.test.num_pictures = 2
    c.lock()
    return c
