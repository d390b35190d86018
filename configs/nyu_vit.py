"""The Transformer arm of the NYU comparative study: ViT-B/16 + DPT decoder WITHOUT DGR.

    python train.py --config configs/nyu_vit.py --workdir runs/nyu_vit --config.data_dir=D

`nyu_vit_dgr` with `model.dgr.enabled=False` (same data, augmentation, SILog + OTDL loss and
schedule as `nyu_cnn`), so the two arms differ only in the encoder. Meant for a GPU/TPU host.
"""

from __future__ import annotations

import ml_collections

from configs import nyu_vit_dgr


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = nyu_vit_dgr.get_config(arg)
    with c.unlocked():
        c.model.dgr.enabled = False
    return c
