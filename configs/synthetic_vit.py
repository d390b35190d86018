"""The Transformer arm of the comparative study: ViT + DPT decoder WITHOUT DGR.

    python train.py --config configs/synthetic_vit.py --workdir runs/synthetic_vit

`synthetic_vit_dgr` with `model.dgr.enabled=False`: the same data, augmentation, loss and
schedule as `synthetic_cnn`, so the two arms differ only in the encoder (the sparse-pixel study
motivates DGR, so it compares the plain Transformer with the CNN).
"""

from __future__ import annotations

import ml_collections

from configs import synthetic_vit_dgr


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = synthetic_vit_dgr.get_config(arg)
    with c.unlocked():
        c.model.dgr.enabled = False
    return c
