"""The DGR / OTDL ablation study on NYU-Depth-v2 with the NeWCRFs host and its official recipe.

    python -m dgr_jax.convert --swin-ckpt swin_large_patch4_window7_224_22k.pth --out W/swin_l22k
    python -m dgr_jax.data.build nyu_depth_v2_bts/dense --manual_dir M --data_dir D
    python -m dgr_jax.analysis.ablation --config configs/ablation_nyu_newcrfs.py \
        --workdir runs/ablation_nyu --config.data_dir=D --config.init_from=W/swin_l22k

Arms: NeWCRFs (Swin-L + FC-CRF decoder, SILog only: `configs/nyu_newcrfs.py`), + DGR on the
four Swin stages, + OTDL (weight `protocol.OTDL_WEIGHT`, the same as on the synthetic data),
both (= `configs/nyu_newcrfs_dgr.py`), OTDL with the authors' row-only cost, and a CNN
reference (ResNet-50 + the same decoder and loss; `--config.arms.cnn.init_from=DIR` with
converted ImageNet ResNet-50 weights, else it starts from scratch); 3 seeds each, the
exploratory arms on one seed. Claims, metrics and verdict rule: `configs/ablation_common.py`.
Evaluation: the official 654 test images, Eigen crop, flip TTA (NeWCRFs' protocol).

Cost: every run is one full NeWCRFs training (50 epochs of the 36,253-frame list, batch 8,
Swin-L at 480x640), 6 x 3 + 7 = 25 runs; a GPU/TPU host is needed (the study runs them one
after the other in one process on one host, each sharded over its local devices).
To cut it: `--config.exploratory_arms="()"` (18 runs), `--config.seeds="(0,1)"` (12), or a
shorter schedule for every arm with `--config.base_overrides='("total_steps=N",)'`.
`:smoke` is a tiny model on a few fake frames for tests.
"""

from __future__ import annotations

import ml_collections

from configs import ablation_common

PLACEMENT = (
    "dgr@stage4",
    "DGR on the coarsest Swin stage only instead of all four",
    'model.dgr.positions=("stage4",)',
)


def host_ablation(
    base: str, smoke: bool, *, host: str = "newcrfs", label: str = "NeWCRFs"
) -> ml_collections.ConfigDict:
    """The ablation of a Swin host whose DGR sits on the encoder stages and whose recipe trains
    with SILog alone: NeWCRFs on NYU or KITTI, and PixelFormer the same way, e.g.

        def get_config(arg=None):
            c = host_ablation("configs/nyu_pixelformer.py", arg == "smoke",
                              host="pixelformer", label="PixelFormer")
            c.lock()
            return c
    """
    c = ablation_common.ablation_config(
        base + (":smoke" if smoke else ""),
        host=host,
        host_label=f"{label} (Swin tiny_test)" if smoke else f"{label} (Swin-L)",
        cnn_encoder=(
            {"name": "resnet", "depth": 18, "width": 8}
            if smoke
            else {"name": "resnet", "depth": 50, "width": 64}
        ),
        cnn_label=f"ResNet-{18 if smoke else 50} + the {label} decoder",
        # The host recipe trains with SILog alone and has no OTDL entry; the arms set its weight.
        base_overrides=(
            'loss.terms={"silog": 1.0, "otdl": 0.0}',
            *(("evals.test.num_pictures=0",) if smoke else ()),
        ),
        seeds=(0, 1) if smoke else (0, 1, 2),
        dgr_placement=PLACEMENT,
        num_resamples=1000 if smoke else 10_000,
    )
    c.fast_compile = smoke  # tiny models: compiling is most of a smoke study's time
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = host_ablation("configs/nyu_newcrfs.py", arg == "smoke")
    c.lock()
    return c
