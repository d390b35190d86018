"""PixelFormer + DGR + OTDL on KITTI Eigen: the paper's method on its second host
(method.md sections 3-5).

    python train.py --config configs/kitti_pixelformer_dgr.py --workdir runs/kitti_pixelformer_dgr \
        --config.data_dir=D --config.init_from=W/swin_l22k

Everything as `configs/kitti_pixelformer.py` (the official recipe), plus the DGR block on each of
the four Swin stage outputs before the PSP and the skip attention modules ("features processed
by the transformer encoder", method.md section 3; the authors' PixelFormer_DGR code does not
wire DGR in, so the placement follows configs/kitti_newcrfs_dgr.py) and the OT depth loss beside
SILog (section 4). Its weight `loss.terms.otdl` is `protocol.OTDL_WEIGHT` (500), the same as
every other config's (OTDL is measured in units of the OT grid's side, so one weight means the
same at every input size; dgr_jax/protocol.py says how it was chosen; the authors' 1.0 applied to
a cost in pixel units). `--config.loss.terms.otdl=0` gives the DGR-only arm;
`configs/ablation_kitti_pixelformer.py` runs the whole ablation. `:smoke` is a tiny model for tests.
"""

from __future__ import annotations

import ml_collections

from configs import kitti_pixelformer
from dgr_jax import protocol


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = kitti_pixelformer.get_config(arg)
    with c.unlocked():
        c.model.dgr.enabled = True
        c.loss.terms = ml_collections.ConfigDict({"silog": 1.0, "otdl": protocol.OTDL_WEIGHT})
    return c
