"""NeWCRFs + DGR + OTDL on KITTI Eigen: the paper's method on its host (method.md sections 3-5).

    python train.py --config configs/kitti_newcrfs_dgr.py --workdir runs/kitti_newcrfs_dgr \
        --config.data_dir=D --config.init_from=W/swin_l22k

Everything as `configs/kitti_newcrfs.py` (the official recipe), plus the DGR block on each of the
four Swin stage outputs before the FC-CRF decoder ("features processed by the transformer
encoder", method.md section 3) and the OT depth loss beside SILog (section 4; its weight is
`loss.terms.otdl`, 1.0 as in the authors' code; `--config.loss.terms.otdl=0` gives the
DGR-only ablation). `:smoke` is a tiny model for tests.
"""

from __future__ import annotations

import ml_collections

from configs import kitti_newcrfs


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = kitti_newcrfs.get_config(arg)
    with c.unlocked():
        c.model.dgr.enabled = True
        c.loss.terms = ml_collections.ConfigDict({"silog": 1.0, "otdl": 1.0})
    return c
