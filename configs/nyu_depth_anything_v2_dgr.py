"""Depth Anything V2 + DGR + OTDL on NYU-Depth-v2: the paper's method on a foundation model.

    python -m dgr_jax.convert --depth-anything-ckpt depth_anything_v2_vitl.pth --encoder vitl \
        --out W/da2_vitl
    python train.py --config configs/nyu_depth_anything_v2_dgr.py:vitl \
        --workdir runs/nyu_da2_vitl_dgr --config.data_dir=D --config.init_from=W/da2_vitl

Everything as `configs/nyu_depth_anything_v2.py` (the official metric fine-tuning recipe), plus
the DGR block on the four DPT reassemble outputs (after the 3x3 `layerN_rn` projections, before
fusion: the features the transformer produced, method.md section 3) and OTDL beside SILog
(weight `protocol.OTDL_WEIGHT`, on a 74x74 grid for the 518x518 crop). DGR's last 1x1 conv is
zero-initialised, so a converted checkpoint predicts exactly what it predicts without DGR; its
parameters are in the 10x-lr group with the head. `--config.loss.terms.otdl=0` gives the
DGR-only arm; `configs/ablation_nyu_depth_anything_v2.py` runs the whole ablation.
"""

from __future__ import annotations

import ml_collections

from configs import nyu_depth_anything_v2
from dgr_jax import protocol


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = nyu_depth_anything_v2.get_config(arg)
    with c.unlocked():
        c.model.dgr.enabled = True
        c.loss.terms = ml_collections.ConfigDict({"silog": 1.0, "otdl": protocol.OTDL_WEIGHT})
    return c
