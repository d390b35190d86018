"""Depth Anything V2 (DINOv2 ViT + DPT) fine-tuned for metric depth on NYU-Depth-v2.

From the released relative checkpoint to a fine-tuned model (the encoder is loaded, the metric
DPT head starts from scratch, as the official metric fine-tuning does):

    python -m dgr_jax.convert --depth-anything-ckpt depth_anything_v2_vitl.pth --encoder vitl \
        --out W/da2_vitl
    python -m dgr_jax.data.build nyu_depth_v2_bts/dense --manual_dir M --data_dir D
    python train.py --config configs/nyu_depth_anything_v2.py:vitl --workdir runs/nyu_da2_vitl \
        --config.data_dir=D --config.init_from=W/da2_vitl

`:vits | :vitb | :vitl` picks the encoder (default vitl); `:smoke` is a tiny model for tests.
`configs/nyu_depth_anything_v2_dgr.py` adds DGR and OTDL. Starting from a metric checkpoint
converted with `--max-depth 10` instead (all of it, head included):
`--config.init_from_include='()'`. A relative checkpoint's head is refused by name (its ReLU
predicts affine-invariant inverse depth, not metres): dgr_jax/weights.py.

Recipe: the official `metric_depth/` fine-tuning of Depth Anything V2 (DepthAnything/
Depth-Anything-V2 a561b84: train.py, dist_train.sh, dataset/*.py, util/loss.py; constants in
dgr_jax/protocol.py, DA2_*) applied to NYU, which the official code does not train on:
- model: the official `DepthAnythingV2(encoder, features, out_channels, max_depth)`, metric head
  sigmoid * 10 m, position embeddings interpolated as the official DINOv2 (0.1 offset);
- AdamW (0.9, 0.999), weight decay 0.01, lr 5e-6 on the DINOv2 encoder and 5e-5 on the rest
  (the reassemble convs included: they belong to the official DPT head), poly 0.9 to 0 per
  step, no warm-up; batch 32 (4 x 8 GPUs);
- SILog with lambda 0.5 (variance_focus) on 1e-3 < gt <= 10 m (times 10, the BTS scale of our
  silog: Adam does not see the factor);
- input: resize keeping the aspect ratio to at least 518x518 with sides multiples of 14
  (bicubic image, nearest depth; 480x640 -> 518x686), random 518x518 crop, horizontal flip;
  NYU's valid-depth box as every NYU recipe here;
- evaluation: the 654 test frames resized the same way (518x686, bicubic), the prediction
  resized back to the ground truth (bilinear, align corners), no flip TTA (the official
  validation), Eigen crop, 1e-3 < gt < 10 m.
Ours: 20 epochs of the 36,253-frame list (the official Hypersim schedule is 120 epochs of a
larger set), the dataset and crop. The NYU numbers in the V2 paper come from a ZoeDepth-style
fine-tune that was not released, so the report prints Depth Anything V1's metric numbers
(NYU 0.056 / 0.206 / 0.984, ViT-L) beside ours as a reference; our numbers are our own.
"""

from __future__ import annotations

import ml_collections

from configs import base
from dgr_jax import protocol
from dgr_jax.convert import depth_anything
from dgr_jax.data.augment import keep_aspect_size

DATASET = "nyu_depth_v2_bts/dense"
EPOCHS = 20  # ours
ENCODER_PARAMS = "encoder/vit/*"  # the official "pretrained" (DINOv2) parameters
SMOKE_SIZE = (56, 84)  # tiny model, tiny frames (multiples of 14)


def da2_model(encoder: str, max_depth: float) -> ml_collections.ConfigDict:
    """`config.model` of Depth Anything V2 with a metric head; DGR (off) on the reassemble
    outputs, zero-initialised so that converted weights predict the same with it on."""
    spec = depth_anything.ENCODERS[encoder]
    image_size = (protocol.DA2_CROP, protocol.DA2_CROP)
    if encoder == "tiny_test":
        image_size = (2 * protocol.DA2_PATCH, 2 * protocol.DA2_PATCH)
    model = ml_collections.ConfigDict(
        depth_anything.model_config(spec, max_depth=max_depth, image_size=image_size)
    )
    model.dgr = base.base_config().model.dgr
    model.dgr.enabled = False
    model.dgr.positions = ("reassemble",)
    return model


def parse_arg(arg: str | None) -> tuple[str, bool]:
    """ "vits" | "vitb" | "vitl" | "smoke" | None -> (encoder, smoke)."""
    if arg in (None, ""):
        return "vitl", False
    if arg == "smoke":
        return "tiny_test", True
    if arg not in ("vits", "vitb", "vitl"):
        raise ValueError(f"config argument {arg!r}: use vits, vitb, vitl or smoke")
    return arg, False


def da2_recipe(
    c: ml_collections.ConfigDict, *, encoder: str, max_depth: float, smoke: bool
) -> ml_collections.ConfigDict:
    """Set the official metric fine-tuning recipe on `c` (model, optimiser, loss, input size);
    the dataset, its frame and the evaluation are the caller's."""
    crop = protocol.DA2_CROP
    c.model = da2_model(encoder, max_depth)
    c.input.size = (crop, crop)
    c.batch_size = protocol.DA2_BATCH
    c.init_from_include = (ENCODER_PARAMS,)
    c.optim.name = "adamw"
    c.optim.lr = protocol.DA2_ENCODER_LR * protocol.DA2_HEAD_LR_SCALE
    c.optim.end_lr_factor = protocol.DA2_POLY_END_FACTOR
    c.optim.warmup_steps = 0
    c.optim.weight_decay = protocol.DA2_WEIGHT_DECAY
    c.optim.param_groups = ml_collections.ConfigDict(
        {"encoder": {"include": (ENCODER_PARAMS,), "lr_scale": 1.0 / protocol.DA2_HEAD_LR_SCALE}}
    )
    c.loss.terms = ml_collections.ConfigDict({"silog": 1.0})
    c.loss.silog.variance_focus = protocol.DA2_SILOG_LAMBDA
    c.loss.min_depth = protocol.DA2_MIN_DEPTH_LOSS
    c.loss.max_depth = max_depth
    # OTDL (the _dgr variants): a grid at half the patch pitch, the finest DPT stage.
    c.loss.otdl.grid_size = (2 * crop // protocol.DA2_PATCH, 2 * crop // protocol.DA2_PATCH)
    if smoke:
        c.total_steps = 4
        c.batch_size = 8
        c.input.size = SMOKE_SIZE
        c.loss.otdl.grid_size = (8, 12)
    return c


def da2_pp(crop: tuple[int, int], first: str = "") -> str:
    """The official training augmentation, after the dataset's own first ops."""
    h, w = crop
    resize = f"resize_keep_aspect({h},{w},multiple={protocol.DA2_PATCH},method='bicubic')"
    return f"{first}{resize}|random_crop({h},{w})|flip|normalize"


def da2_eval(
    dataset: str, frame: tuple[int, int], *, crop: str, max_depth: float, **kw
) -> ml_collections.ConfigDict:
    """The official evaluation: the frame resized keeping aspect to >= 518 (multiples of 14,
    bicubic), prediction back to the ground truth (bilinear, align corners), no flip TTA."""
    size = keep_aspect_size(frame, protocol.DA2_CROP, protocol.DA2_CROP, protocol.DA2_PATCH)
    e = base.depth_eval(
        dataset, crop=crop, max_depth=max_depth, flip_tta="none", input_size=size, **kw
    )
    e.image_resize = "bicubic"
    e.pred_align_corners = True
    e.references = "depth_anything_v1_metric"
    return e


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    encoder, smoke = parse_arg(arg)
    c = base.base_config()
    c.input.dataset = DATASET
    c.input.workers = 8
    da2_recipe(c, encoder=encoder, max_depth=protocol.NYU_MAX_DEPTH, smoke=smoke)
    c.input.pp_train = da2_pp(c.input.size, first="nyu_train_box|")
    c.total_steps = EPOCHS * (protocol.NYU_TRAIN_COUNT_DENSE // c.batch_size)
    c.log_every = 100
    c.ckpt_every = 2000
    c.eval_every = 2000
    frame = (protocol.NYU_HEIGHT, protocol.NYU_WIDTH)
    with c.ignore_type():
        c.evals.test = da2_eval(DATASET, frame, crop="eigen", max_depth=protocol.NYU_MAX_DEPTH)
    if smoke:
        c.total_steps = 4
        c.input.pp_train = "flip|random_crop(56,84)|normalize"
        c.evals.test.input_size = SMOKE_SIZE
    c.lock()
    return c
