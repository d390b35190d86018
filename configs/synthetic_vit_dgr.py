"""The embedded default: ViT + DPT decoder + DGR, SILog + OTDL, on `synthetic_depth/indoor`.

    python train.py --config configs/synthetic_vit_dgr.py --workdir runs/quickstart

Sized to train and evaluate on 2 CPU cores. `:smoke` gives a tiny model for tests (batch 8,
a few dozen steps). Expected run time and metrics: see README.md (measured, not guessed).
"""

from __future__ import annotations

import ml_collections

from configs import base
from dgr_jax import protocol


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.base_config()
    # CPU-sized: scenes rendered at 128x160 (NYU intrinsics scaled), so a ViT-Ti/16 sees an 8x10
    # token grid and a step of batch 8 takes about 0.55 s on 2 cores (14-15 img/s in the log).
    c.input.dataset = "synthetic_depth/indoor"
    c.input.build.update({"num_train": 2000, "num_test": 200, "height": 128, "width": 160})
    c.input.size = (128, 160)
    c.input.pp_train = "rotate(2.5)|flip|random_crop(128,160)|gamma|brightness|colour|normalize"
    c.total_steps = 800
    c.batch_size = 8
    c.log_every = 25
    c.ckpt_every = 200
    c.eval_every = 400
    # Measured on this data (runs of 250-400 steps): lr 5e-4 with a 30-step warm-up drove the
    # sigmoid head into saturation (zero gradient from step 75 on); 3e-4 after 100 steps of
    # warm-up trains. With the hosts' variance_focus 0.85 SILog barely constrains the global
    # scale (0.15 mean(d)^2) and OTDL not at all (normalised masses), so a short run ended with
    # the right shapes at the wrong scale (abs_rel 1.18 at step 200); 0.5 weighs the scale in.
    c.optim.lr = 3e-4
    c.optim.warmup_steps = 100
    c.optim.grad_clip = 1.0
    c.loss.silog.variance_focus = 0.5
    c.model.encoder = ml_collections.ConfigDict(
        {
            "name": "vit",
            "variant": "Ti",
            "patch_size": 16,
            "readout": "project",
            # Fixed 2-D sincos positions (big_vision's from-scratch default): nothing to learn.
            "pos_embed": "sincos2d",
            # Xiao et al.'s conv stem ("conv") did not help here: abs_rel 0.387 vs 0.337 after
            # the full run (one seed each), so the plain ViT patchify stays.
            "stem": "patchify",
            "image_size": c.input.size,
        }
    )
    c.model.decoder.features = 64
    c.loss.otdl.grid_size = (16, 20)  # 1/8 of 128x160
    c.loss.terms.otdl = protocol.OTDL_WEIGHT  # lambda_ot = 500, as every config: configs/base.py
    c.model.head.max_depth = protocol.NYU_MAX_DEPTH
    # Ours (no host evaluates this data): the rendered frame as read (input.build height x
    # width, equal to the training size), flip blend as the hosts; input_size None.
    c.evals.test = base.depth_eval(
        "synthetic_depth/indoor", crop="none", max_depth=protocol.NYU_MAX_DEPTH
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
