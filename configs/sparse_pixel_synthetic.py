"""The sparse-pixel study (paper Fig. 1, 2, 3, 5) on `synthetic_depth/indoor`, CPU-sized.

    python -m dgr_jax.analysis.sparse_pixel --config configs/sparse_pixel_synthetic.py \
        --workdir runs/sparse_pixel
    python -m dgr_jax.analysis.sparse_pixel --config configs/sparse_pixel_synthetic.py:smoke \
        --workdir /tmp/sparse_smoke

Arms: `configs/synthetic_vit.py` (ViT + DPT, no DGR) and `configs/synthetic_cnn.py` (ResNet +
the same decoder), each with `arm_overrides` (shared: data, size, schedule, decoder width) and
its own `overrides` (encoder size only). Their workdirs default to DIR/arms/<arm>; point
`arms.<arm>.workdir` at an existing run to reuse it (it must have been trained with the same
settings: the study compares the runs' config.json files).

Full study (not smoke): 96x128 images (the synthetic renderer at that size, 1200 training and
100 test scenes), ViT-Ti/16 vs ResNet-18 (width 48), decoder width 64, both trained for 1000
steps of batch 8 with SILog + OTDL; mask nets: 4 lambdas x 2 arms x 200 steps. Measured: 26.5
min wall on the 2-core development machine (arms 12.7, mask nets 13.1, evaluation 0.7);
summary.md records each run's own time and the machine load.
`:smoke`: the arms' `:smoke` configs (tiny models, 32x48 images, 24 steps), two lambdas, a few
mask steps: a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import ml_collections

from dgr_jax import protocol

_FULL_H, _FULL_W = 96, 128


def _arm(config: str, label: str, overrides: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {"config": config, "workdir": "", "label": label, "overrides": overrides}
    )


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    smoke = arg == "smoke"
    suffix = ":smoke" if smoke else ""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data_dir = ""  # "" -> DIR/data, shared by both arms and the study
    c.mesh = ml_collections.ConfigDict({"data": -1, "model": 1})

    # ---- The two depth networks ------------------------------------------------------------
    h, w = _FULL_H, _FULL_W
    c.arms = ml_collections.ConfigDict()
    c.arms.transformer = _arm(
        f"configs/synthetic_vit.py{suffix}",
        "Transformer (ViT-tiny_test)" if smoke else "Transformer (ViT-Ti/16)",
        () if smoke else ('model.encoder.variant="Ti"', f"model.encoder.image_size=({h},{w})"),
    )
    c.arms.cnn = _arm(
        f"configs/synthetic_cnn.py{suffix}",
        "CNN (ResNet-18, width 8)" if smoke else "CNN (ResNet-18, width 48)",
        # Width 48: about the ViT-Ti arm's parameter count (7.4M vs 7.0M with the decoder).
        () if smoke else ("model.encoder.width=48",),
    )
    c.arm_order = ("transformer", "cnn")  # Transformer first, as the paper's G_T / G_C
    # Applied to both arms (so they stay identical outside the encoder).
    c.arm_overrides = (
        ()
        if smoke
        else (
            f"input.build.height={h}",
            f"input.build.width={w}",
            "input.build.num_train=1200",
            "input.build.num_test=100",
            f"input.size=({h},{w})",
            f'input.pp_train="rotate(2.5)|flip|random_crop({h},{w})|photometric(0.75,1.25)|'
            'normalize"',
            f"loss.otdl.grid_size=({h // 8},{w // 8})",
            "model.decoder.features=64",
            "total_steps=1000",
            "log_every=100",
            "ckpt_every=500",
            "eval_every=0",
            "optim.lr=3e-4",
            "optim.warmup_steps=50",
            "evals.test.num_pictures=2",
        )
    )
    # The only config keys allowed to differ between the arms.
    c.arms_may_differ_in = ("model.encoder", "init_from")

    # ---- Mask networks (method.md section 2) -----------------------------------------------
    c.mask = ml_collections.ConfigDict(
        {
            "widths": (8, 16) if smoke else (16, 32, 64),
            "logit_bias_init": 3.0,  # M ~ 0.95 at the start
            "lr": 1e-3,  # Hu et al. 1e-4 is for long NYU runs; see mask_training.py
            "steps": 6 if smoke else 200,
            "batch_size": 8,
            "pp": "flip|normalize",
            "log_every": 3 if smoke else 50,
        }
    )
    # lambda sweep: one mask net per (arm, lambda); chosen to span soft sparsities.
    c.lambdas = (0.5, 4.0) if smoke else (1.0, 4.0, 16.0, 64.0)
    c.sparsities = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95)
    c.lambda_for_level = "nearest"  # or one lambda of the sweep for every level

    # ---- Where the masks put their pixels --------------------------------------------------
    c.placement = ml_collections.ConfigDict(
        {
            "sparsity": 0.9,
            "classes": {
                "image_edge_fraction": 0.1,
                "depth_edge_rel": 0.05,
                "texture_std": 0.05,
                "texture_window": 5,
                "depth_edge_margin": 1,
            },
        }
    )

    # ---- Test images -----------------------------------------------------------------------
    c.test = ml_collections.ConfigDict(
        {
            "split": "test",
            "num_images": -1,  # -1: the whole split
            "batch_size": 8,
            "pictures": (0, 1) if smoke else (0, 1, 2, 3),  # masks_<k>.png, comparison.png rows
            "crop": "none",  # dgr_jax.evaluators.crops name; valid pixels lie inside it
            "min_depth": protocol.MIN_DEPTH_EVAL,
            "max_depth": protocol.NYU_MAX_DEPTH,
        }
    )
    c.lock()
    return c
