"""ResNet-50 + the same DPT fusion decoder, data, loss and recipe as `nyu_vit_dgr` (CNN arm).

python train.py --config configs/nyu_cnn.py --workdir runs/nyu_cnn --config.data_dir=D
"""

from __future__ import annotations

import ml_collections

from configs import nyu_vit_dgr


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = nyu_vit_dgr.get_config(arg)
    with c.unlocked():
        c.model.encoder = ml_collections.ConfigDict({"name": "resnet", "depth": 50, "width": 64})
        c.model.dgr.enabled = False
        if arg == "smoke":
            c.model.encoder.update({"depth": 18, "width": 8})
    return c
