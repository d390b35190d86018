"""Shared defaults for every experiment config; each `configs/<name>.py` starts from these.

Keys (shared by train.py, eval.py and the analysis tools; see shared/design.md):
  seed, total_steps, batch_size (global), grad_accum_steps, log_every, ckpt_every, eval_every,
  keep_ckpts, init_from, data_dir, mesh {data, model}, sharding ("data_parallel" | "fsdp"), dtype,
  eval_precision,
  input {...}, model {encoder, decoder, dgr, head}, loss {terms, silog, otdl, ...}, optim {...},
  evals {<name>: {...}}.
"""

from __future__ import annotations

import ml_collections

from dgr_jax import protocol


def base_config() -> ml_collections.ConfigDict:
    """Return the defaults; experiment configs override fields and then lock the result."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 1000
    c.batch_size = 8  # global batch, split over the `data` mesh axis
    # Gradient accumulation: K micro-batches of batch_size / K inside one step, one optimiser
    # update; the global batch, schedule and data order do not change with K (README).
    c.grad_accum_steps = 1
    c.log_every = 50
    c.ckpt_every = 500
    c.eval_every = 500  # periodic evaluation (0 = only at the end)
    c.keep_ckpts = 2  # latest N kept, plus the best by the main eval metric
    c.best_metric = "test/abs_rel"  # "<eval name>/<metric>" that picks the best checkpoint
    c.best_mode = "min"
    c.init_from = ""  # directory of converted weights (python -m dgr_jax.convert ...)
    # Which of its arrays to load (globs on paths like "encoder/vit/layers/0/mlp/fc1/kernel";
    # () includes everything); the rest keeps its fresh init (dgr_jax/weights.py).
    c.init_from_include = ()
    c.init_from_exclude = ()
    c.data_dir = ""  # "" -> <workdir>/data for self-building datasets
    c.mesh = ml_collections.ConfigDict({"data": -1, "model": 1})  # -1: all remaining devices
    c.sharding = "data_parallel"  # or "fsdp": params and optimizer state sharded over `data`
    c.dtype = "float32"  # compute dtype; "bfloat16" keeps float32 params
    c.remat = False  # activation rematerialisation of encoder blocks (large ViTs)
    # Matmul precision of every dot / convolution of evaluation (eval.py, the evaluators during
    # training, dgr_jax.predict); training keeps `dtype`. "highest": float32 products, the
    # digits of a float32 PyTorch run on any backend; "default": the backend's own (one bfloat16
    # pass on a TPU: faster, metrics may move, benchmarks/README.md); "high" between. See
    # dgr_jax/precision.py.
    c.eval_precision = "highest"

    c.input = ml_collections.ConfigDict()
    c.input.dataset = "synthetic_depth/indoor"  # builder name[/builder config]
    c.input.split = "train"
    # Build arguments for self-building datasets (synthetic); ignored by manual-dir builders.
    c.input.build = ml_collections.ConfigDict(
        {"num_train": 2000, "num_test": 200, "seed": 0, "height": 240, "width": 320}
    )
    c.input.manual_dir = ""  # real datasets: where the user placed the files
    c.input.size = (240, 320)  # (H, W) the model sees in training
    # Preprocessing op chain (dgr_jax/data/augment.py), applied to image and depth together.
    c.input.pp_train = "rotate(2.5)|flip|random_crop(240,320)|photometric(0.75,1.25)|normalize"
    # Seed of the data order and augmentation draws; -1: the run's `seed`. The ablation study
    # fixes it so that its seeds vary the initialisation only.
    c.input.seed = -1
    c.input.workers = 0  # grain worker processes (0 = in-process)
    c.input.prefetch = 2
    # Input stall watchdog: a run that gets no batch (or evaluation example) for this long stops
    # with a message naming the data dir, split and reader; long enough for a pod's cold start
    # on gs://. 0 turns it off.
    c.input.stall_timeout_s = 600.0

    c.model = ml_collections.ConfigDict()
    # Encoder kwargs (dgr_jax/models/encoders/vit.py, resnet.py). `image_size`: the grid the
    # ViT's position embeddings are stored for (other input sizes resize them).
    c.model.encoder = ml_collections.ConfigDict(
        {
            "name": "vit",
            "variant": "S",
            "patch_size": 16,
            "readout": "project",
            "image_size": (240, 320),
        }
    )
    c.model.decoder = ml_collections.ConfigDict({"name": "dpt", "features": 256, "use_bn": False})
    c.model.dgr = ml_collections.ConfigDict(
        {
            "enabled": True,
            "positions": ("reassemble",),
            "stencils": ("laplacian8", "mixed4"),
            "se_reduction": 8,
            "learnable_stencils": False,
        }
    )
    # "sigmoid": depth = sigmoid * max_depth (NeWCRFs/PixelFormer); "relu": DPT's (converted).
    c.model.head = ml_collections.ConfigDict({"name": "sigmoid", "max_depth": 10.0})

    c.loss = ml_collections.ConfigDict()
    # Term name (dgr_jax.registry.LOSSES: silog, otdl, mse, l1) -> weight; 0 = not computed.
    # otdl = lambda_ot = protocol.OTDL_WEIGHT (500) in every config that trains with OTDL: OTDL
    # is a squared distance in units of the OT grid's side, independent of resolution and depth
    # unit, so one weight means the same everywhere; 500 makes its gradient 8-58% of SILog's
    # (more for worse predictions), meaningful but not dominant (the calibration is in
    # dgr_jax/protocol.py and dgr_jax/losses/ot.py; the ablation study sweeps it). mse: the
    # authors' extra term (off).
    c.loss.terms = ml_collections.ConfigDict(
        {"silog": 1.0, "otdl": protocol.OTDL_WEIGHT, "mse": 0.0}
    )
    c.loss.min_depth = protocol.NYU_MIN_DEPTH_LOSS  # training mask: gt > min_depth
    c.loss.max_depth = 0.0  # > 0: the mask is also gt <= max_depth (Depth Anything V2); 0: off
    c.loss.silog = ml_collections.ConfigDict({"variance_focus": protocol.SILOG_VARIANCE_FOCUS})
    c.loss.otdl = ml_collections.ConfigDict(
        {
            "geometry": "grid",  # "grid" (ott Grid) | "pointcloud" (check) | "rows" (authors')
            "grid_size": (30, 40),  # OT grid after area pooling: 1/8 of the input side
            "mass": "depth",  # or "inverse_depth"
            # Absolute, in (longer side)^2 units: within 3% of eps=1e-3 at 1/9 of the iterations.
            "epsilon": 1e-2,
            "debiased": True,  # Sinkhorn divergence: identical maps cost ~0
            "max_iterations": 200,  # eps=1e-2, threshold=1e-4 converges in 50-70
            "threshold": 1e-4,  # marginal error (L1); 1e-3 leaves ~5% error in the gradient
        }
    )

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adam"  # or "adamw"
    c.optim.lr = 1e-4
    c.optim.end_lr_factor = protocol.POLY_END_FACTOR
    c.optim.power = protocol.POLY_POWER
    c.optim.warmup_steps = 0
    c.optim.weight_decay = 0.0
    c.optim.grad_clip = 0.0  # global-norm clipping; 0 = off
    c.optim.eps = 1e-8
    # name -> {"include": (globs,), "lr_scale": x, "weight_decay": y}; see dgr_jax/optim.py.
    c.optim.param_groups = ml_collections.ConfigDict()

    c.evals = ml_collections.ConfigDict()
    return c


def depth_eval(
    dataset: str,
    *,
    crop: str,
    max_depth: float,
    split: str = "test",
    flip_tta: str = "blend",
    batch_size: int = 8,
    num_pictures: int = 4,
    kb_crop: bool = False,
    input_size: tuple[int, int] | None = None,
    fit: str = "resize",
) -> ml_collections.ConfigDict:
    """One `config.evals.<name>` entry for the standard depth evaluator.

    The model sees the evaluation frame, not the training crop: the test image as read (after the
    KB crop), as the hosts' eval scripts feed it (dgr_jax/evaluators/frame.py).
    """
    return ml_collections.ConfigDict(
        {
            "type": "depth",
            "dataset": dataset,
            "split": split,
            # "eigen" (NYU) | "garg" | "garg_full_res" (BTS eval_with_pngs) | "kitti_eigen" | "none"
            "crop": crop,
            # KITTI benchmark crop of image and GT to 352x1216 before the model (NeWCRFs
            # --do_kb_crop); with crop="garg_full_res" only the image is cropped and the
            # prediction is pasted back into the full-resolution frame.
            "kb_crop": kb_crop,
            "min_depth": protocol.MIN_DEPTH_EVAL,
            "max_depth": max_depth,
            "flip_tta": flip_tta,  # "blend" (NeWCRFs post_process_depth) | "mean" | "none"
            # (H, W) the frame is resized to (bilinear, prediction back); None: the frame as
            # read (480x640 NYU, 352x1216 KITTI after the KB crop), what the hosts evaluate.
            "input_size": ml_collections.FieldReference(input_size, field_type=tuple),
            # A frame whose sides are not multiples of what the model needs (Swin hosts 32,
            # ViT its patch): "resize" to the nearest multiple and back (the hosts' demo.py) |
            # "pad" with zeros after normalisation, prediction cropped (their Swin backbone) |
            # "none" (refuse).
            "fit": fit,
            # How a resized frame is resampled: the image "bilinear" | "bicubic" (torch/cv2
            # cubic), the prediction back to the ground truth with pixel centres (False) or
            # corners (True) aligned. Depth Anything V2's evaluation: bicubic, True.
            "image_resize": "bilinear",
            "pred_align_corners": False,
            "batch_size": batch_size,
            "num_pictures": num_pictures,
            "num_images": -1,  # -1: the whole split
        }
    )
