"""Your own data: ViT-B/16 + DPT + DGR, SILog + OTDL, on a folder of RGB + depth pairs.

    python train.py --config configs/depth_files_vit_dgr.py --workdir runs/mine \
        --config.input.manual_dir=M --config.input.build.depth_scale=1000 \
        --config.input.max_depth=10

M holds train.txt and test.txt (optionally val.txt), lines "<rgb> <depth or None> [focal]"
(dgr_jax/data/builders/depth_files.py, README "Your own data"); the dataset is built on first
use into <workdir>/data (or --config.data_dir). Overrides a user sets:
  input.manual_dir          the folder with the lists (local or gs://)
  input.build.depth_scale   16-bit PNG depth = value / depth_scale metres (1000: mm, 256: KITTI);
                            .npy and float TIFF depth are metres already
  input.max_depth           the depth range (m): the model's output bound, the evaluation cap,
                            and the build's cap (deeper pixels are invalid); one value for all
  input.build.{train,test,val}_crop   optional "top,left,height,width" crop of a split, at build
  input.size                (0, 0): from the data (the smallest training frame, rounded down to
                            a multiple of 32); or an explicit (H, W)
  total_steps, batch_size, grad_accum_steps, optim.lr
The build arguments are part of the built dataset's name, so changing one builds afresh.
Evaluation: the test list's frames as read (no crop unless the build was given one),
min_depth 1e-3 < gt < max_depth, flip TTA; lines without depth are predicted but left out of
the metrics (metrics.json: num_images vs num_valid_images).

Fine-tuning converted weights (python -m dgr_jax.convert ..., docs/convert.md): `:weights=DIR`
(combinable: `:smoke,weights=DIR`)
takes the model from DIR/model.json (a NeWCRFs, PixelFormer, DPT or Depth Anything model) and
starts from its weights (init_from=DIR), with its max_depth; DGR stays as the weights have it
(--config.model.dgr.enabled=True adds it, freshly initialised). With a patch-14 encoder (Depth
Anything) give --config.input.size as multiples of 14. `:smoke` is a tiny model
for tests; `:cnn` is the ResNet-50 sibling (configs/synthetic_cnn.py's arm). Meant for a GPU
host at real sizes.
"""

from __future__ import annotations

import ml_collections

from configs import base
from dgr_jax import protocol

DATASET = "depth_files"


def _weights_model(weights_dir: str) -> ml_collections.ConfigDict:
    from dgr_jax.convert.checkpoint import read_meta

    return ml_collections.ConfigDict(read_meta(weights_dir)["model"])


def _model_max_depth(model: ml_collections.ConfigDict) -> float:
    for part in (model.get("decoder"), model.get("head")):
        if part is not None and "max_depth" in part:
            return float(part.max_depth)
    return protocol.NYU_MAX_DEPTH


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = (arg or "").split(",")  # e.g. "weights=W/newcrfs_nyu" or "smoke,weights=DIR"
    weights = next((a.partition("=")[2] for a in args if a.startswith("weights=")), "")
    c = base.base_config()
    c.input.dataset = DATASET
    c.input.manual_dir = ""  # required: --config.input.manual_dir=M
    c.input.max_depth = protocol.NYU_MAX_DEPTH
    max_depth = c.input.get_ref("max_depth")
    c.input.build = ml_collections.ConfigDict(
        {
            "depth_scale": 1000.0,
            "max_depth": max_depth,
            "train_crop": "",
            "test_crop": "",
            "val_crop": "",
        }
    )
    c.input.size = (0, 0)  # from the data (dgr_jax/data/input_size.py)
    c.input.pp_train = (
        f"rotate({protocol.NYU_ROTATE_DEGREES})|flip|random_crop(0,0)|gamma|brightness|colour"
        "|normalize"
    )
    c.batch_size = 8
    c.total_steps = 20_000
    c.log_every = 100
    c.ckpt_every = 1000
    c.eval_every = 1000
    c.model.encoder = ml_collections.ConfigDict(
        {
            "name": "vit",
            "variant": "B",
            "patch_size": 16,
            "readout": "project",
            "image_size": (0, 0),  # from the data
        }
    )
    c.model.decoder.features = 256
    c.model.head.max_depth = max_depth
    c.loss.min_depth = protocol.NYU_MIN_DEPTH_LOSS
    c.loss.otdl.grid_size = (0, 0)  # 1/8 of the input size
    c.optim.lr = protocol.PIXELFORMER_LR
    c.optim.warmup_steps = 500
    c.optim.grad_clip = 1.0
    c.evals.test = base.depth_eval(DATASET, crop="none", max_depth=max_depth)
    if "cnn" in args:
        c.model.encoder = ml_collections.ConfigDict({"name": "resnet", "depth": 50, "width": 64})
        c.model.dgr.enabled = False  # DGR targets the Transformer arm (configs/synthetic_cnn.py)
    if weights:
        c.init_from = weights
        c.model = _weights_model(weights)
        c.input.max_depth = _model_max_depth(c.model)
        c.optim.lr = protocol.NEWCRFS_LR  # fine-tuning: the hosts' smaller rate
    if "smoke" in args:
        c.total_steps = 6
        c.log_every = 2
        c.ckpt_every = 3
        c.eval_every = 0
        c.input.pp_train = "flip|random_crop(0,0)|photometric(0.75,1.25)|normalize"
        c.optim.warmup_steps = 0
        if not weights:
            c.model.encoder.update({"variant": "tiny_test", "pos_embed": "sincos2d"})
            c.model.decoder.features = 16
        c.evals.test.batch_size = 4
        c.evals.test.num_pictures = 1
    c.lock()
    return c
