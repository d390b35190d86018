"""PixelFormer + DGR + OTDL on NYU-Depth-v2: the paper's method on its second host
(method.md sections 3-5).

    python train.py --config configs/nyu_pixelformer_dgr.py --workdir runs/nyu_pixelformer_dgr \
        --config.data_dir=D --config.init_from=W/swin_l22k

Everything as `configs/nyu_pixelformer.py` (the official recipe), plus the DGR block on each of
the four Swin stage outputs before the PSP and the skip attention modules ("features processed
by the transformer encoder", method.md section 3; the authors' PixelFormer_DGR code does not
wire DGR in, so the placement follows configs/nyu_newcrfs_dgr.py) and the OT depth loss beside
SILog (section 4; its weight is `loss.terms.otdl`, as in configs/nyu_newcrfs_dgr.py;
`--config.loss.terms.otdl=0` gives the DGR-only ablation). `:smoke` is a tiny model for tests.
"""

from __future__ import annotations

import ml_collections

from configs import nyu_pixelformer


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = nyu_pixelformer.get_config(arg)
    with c.unlocked():
        c.model.dgr.enabled = True
        c.loss.terms = ml_collections.ConfigDict({"silog": 1.0, "otdl": 1.0})
    return c
