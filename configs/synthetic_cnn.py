"""The CNN arm of the comparative study: ResNet + the same DPT fusion decoder, data and loss.

    python train.py --config configs/synthetic_cnn.py --workdir runs/synthetic_cnn

Identical to `synthetic_vit_dgr` except for the encoder (and no DGR, which targets the
Transformer arm), so the only difference between the two arms is the encoder.
"""

from __future__ import annotations

import ml_collections

from configs import synthetic_vit_dgr


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = synthetic_vit_dgr.get_config(arg)
    with c.unlocked():
        c.model.encoder = ml_collections.ConfigDict({"name": "resnet", "depth": 18, "width": 64})
        c.model.dgr.enabled = False
        if arg == "smoke":
            c.model.encoder.update({"depth": 18, "width": 8})
    return c
