"""The sparse-pixel study (paper Fig. 1, 2, 3, 5) at paper scale on NYU-Depth-v2.

    python -m dgr_jax.data.build nyu_depth_v2_bts --manual_dir M --data_dir D
    python -m dgr_jax.analysis.sparse_pixel --config configs/sparse_pixel_nyu.py \
        --workdir runs/sparse_pixel_nyu --config.data_dir=D

Arms: `configs/nyu_vit.py` (ViT-B/16 + DPT decoder, no DGR) and `configs/nyu_cnn.py`
(ResNet-50 + the same decoder), each with its own full recipe (480x640, SILog + OTDL, Adam
poly decay, 25 epochs of the BTS list, batch 8; method.md section 5), trained into
DIR/arms/<arm> unless `arms.<arm>.workdir` points at finished runs of those configs. To start
from pretrained backbones, give each arm its own `init_from` through `arms.<arm>.overrides`
(`init_from` may differ between the arms; nothing else outside the encoder may).

Mask nets [ours, after Hu et al. 2019]: U-Net widths (32, 64, 128, 256), Adam at Hu et al.'s
1e-4, 10,000 steps of batch 8 (3.3 epochs of the 24,231 training frames) per (arm, lambda),
lambdas around Hu et al.'s 5. Test: the official 654 images, Eigen crop, 1e-3 < gt < 10 m, no
flip TTA.

Run time: NOT measured: no GPU was available when this config was written. What it costs,
relative to the arms' own training: a mask step runs the frozen network forward twice and
backward once (to the input), about one training step of that network, so the mask nets cost
2 arms x 5 lambdas x 10,000 = 100,000 depth-network steps against the arms'
2 x 25 x 3,028 = 151,400 (the evaluation adds ~11 forward passes over the 654 test images per
arm). Host memory: the soft masks of the test set are kept, 0.8 GB per (arm, lambda).
`:smoke`: the arms' tiny `:smoke` configs on the same (user-built) NYU data, for a pipeline check.
"""

from __future__ import annotations

import ml_collections

from configs import sparse_pixel_synthetic as synthetic
from dgr_jax import protocol


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    smoke = arg == "smoke"
    suffix = ":smoke" if smoke else ""
    c = synthetic.get_config(arg)  # the same study structure; paper-scale values below
    with c.unlocked():
        c.arms.transformer.update(
            {"config": f"configs/nyu_vit.py{suffix}", "label": "Transformer (ViT-B/16)"}
        )
        c.arms.cnn.update({"config": f"configs/nyu_cnn.py{suffix}", "label": "CNN (ResNet-50)"})
        c.arms.transformer.overrides = ()
        c.arms.cnn.overrides = ()
        c.arm_overrides = ("total_steps=4",) if smoke else ()  # the arms' own recipes
        c.mask.update(
            {
                "widths": (8, 16) if smoke else (32, 64, 128, 256),
                "lr": 1e-4,  # Hu et al.
                "steps": 4 if smoke else 10_000,
                "log_every": 2 if smoke else 200,
                # Smoke: the tiny arms see 64x96; the study's data stays at 480x640.
                "pp": "resize(64,96)|flip|normalize" if smoke else "flip|normalize",
            }
        )
        c.lambdas = (1.0, 5.0) if smoke else (1.0, 2.0, 5.0, 10.0, 20.0)
        c.test.update(
            {
                "crop": "eigen",
                "num_images": 8 if smoke else -1,
                "pictures": (0, 1) if smoke else (0, 100, 200, 300, 400),
                "min_depth": protocol.MIN_DEPTH_EVAL,
                "max_depth": protocol.NYU_MAX_DEPTH,
            }
        )
    return c
