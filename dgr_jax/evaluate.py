"""Glue between the trainer / eval.py and the evaluators named in `config.evals`.

Each `config.evals.<name>` names an evaluator type registered in `dgr_jax.registry.EVALUATORS`
(e.g. "depth"); the evaluator gets a jitted `predict_fn(images) -> depth` that closes over the
current (sharded) parameters, and returns flat metrics that are reported as "<name>/<metric>".
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import ml_collections
import numpy as np

import dgr_jax.evaluators  # noqa: F401  (registers evaluator types)
from dgr_jax import paths, precision, storage, xla_options
from dgr_jax.data import datasets, input_size
from dgr_jax.data import watchdog as input_watchdog
from dgr_jax.evaluators import frame
from dgr_jax.registry import EVALUATORS
from dgr_jax.steps import ModelDef, make_predict

HEADLINE = ("abs_rel", "rmse", "d1", "grad_err", "si_boundary_f1")


def make_evaluators(
    config: ml_collections.ConfigDict,
    data_dir: str,
    mesh,
    *,
    watchdog: input_watchdog.Watchdog | None = None,
) -> dict:
    """{name: evaluator} for every entry of `config.evals` (datasets built if needed).

    Every read of an evaluator's data waits through `watchdog` (by default one with
    `config.input.stall_timeout_s` and no stop request), so a source that stops answering ends
    in `InputStalled` naming it instead of a hang.
    """
    if watchdog is None:
        watchdog = input_watchdog.Watchdog(config.input.get("stall_timeout_s", 600))
    matmul_precision = precision.eval_precision(config)
    result = {}
    for name, cfg in config.evals.items():
        source = datasets.open_split(
            cfg.dataset,
            cfg.split,
            data_dir,
            manual_dir=config.input.manual_dir,
            build_args=dict(config.input.build),
        )
        reader = input_watchdog.Reader(f"evaluator {name!r}", cfg.dataset, cfg.split, data_dir)
        source = input_watchdog.WatchedSource(source, watchdog, reader)
        try:
            frame_size = data_frame(config, name)
        except ValueError:  # a user's files (depth_files): the frame is known from the data
            frame_size = tuple(int(v) for v in np.asarray(source[0]["image"]).shape[:2])
        result[name] = EVALUATORS.get(cfg.type)(
            cfg,
            name=name,
            source=source,
            input_size=frame_size,
            mesh=mesh,
            multiple=frame.input_multiple(config.model),
            matmul_precision=matmul_precision,  # what make_predict_fn compiles with
        )
    return result


def data_frame(config: ml_collections.ConfigDict, eval_name: str) -> tuple[int, int]:
    """The evaluation frame (H, W) of `config.evals.<eval_name>` before any fit to the model:
    its `input_size` if set, else the test frame as read (after the KB crop), known from the
    protocol constants or the synthetic build arguments (`evaluators/frame.py`)."""
    cfg = config.evals[eval_name]
    configured = frame.configured_size(cfg.get("input_size"))
    if configured is not None:
        return configured
    build = config.input.get("build")
    return frame.dataset_frame(
        str(cfg.dataset),
        kb_crop=bool(cfg.get("kb_crop", False)),
        build_args=None if build is None else dict(build),
    )


def eval_frame_size(config: ml_collections.ConfigDict, eval_name: str) -> tuple[int, int]:
    """(H, W) of the images the model sees for evaluator `eval_name`, without reading data.

    The evaluation frame (`data_frame`: NYU 480x640, KITTI KB crop 352x1216, synthetic its build
    size, or `input_size`), fitted to what the model needs (`frame.fitted_size`: the nearest or
    next multiple of 32 / the ViT patch when the frame is not one, as `fit` says). The depth
    evaluator compiles its predict function at exactly this shape.
    """
    cfg = config.evals[eval_name]
    return frame.fitted_size(
        data_frame(config, eval_name),
        frame.input_multiple(config.model),
        str(cfg.get("fit", "resize")),
    )


def make_predict_fn(
    model_def: ModelDef,
    state_shardings: dict,
    batch_sharding,
    *,
    matmul_precision: str = precision.DEFAULT_EVAL_PRECISION,
) -> Callable:
    """predict(params, rest, images) jitted with the train state's shardings.

    Every dot and convolution of the model runs at `matmul_precision` (`config.eval_precision`,
    see dgr_jax/precision.py).

    Compiled for the platform of `batch_sharding`'s mesh (`dgr_jax.aot` builds it on a
    described TPU slice or GPU host).
    """
    return xla_options.jit(
        precision.with_matmul_precision(make_predict(model_def), matmul_precision),
        backend=batch_sharding.mesh.devices.flat[0].platform,
        in_shardings=(state_shardings["params"], state_shardings["rest"], batch_sharding),
        out_shardings=batch_sharding,
    )


def run_all(
    evaluators: dict, predict: Callable, state: dict, *, step: int, out_root: str | None = None
) -> dict:
    """Run every evaluator with the state's parameters; flat {"<name>/<metric>": value}."""

    def predict_fn(images):
        return predict(state["params"], state["rest"], images)

    flat = {}
    for name, ev in evaluators.items():
        out_dir = storage.join(out_root, name) if out_root else None
        for key, value in ev.run(predict_fn, out_dir=out_dir, step=step).items():
            if isinstance(value, int | float):
                flat[f"{name}/{key}"] = float(value)
    return flat


def nest(flat: dict) -> dict:
    """{"test/abs_rel": v} -> {"test": {"abs_rel": v}}."""
    out: dict = {}
    for key, value in flat.items():
        name, _, metric = key.partition("/")
        out.setdefault(name, {})[metric] = value
    return out


def summary_line(flat: dict) -> str:
    parts = [f"{k} {v:.4f}" for k, v in flat.items() if k.partition("/")[2] in HEADLINE]
    return " | ".join(parts) or "(no metrics)"


def restore_for_inference(config: ml_collections.ConfigDict, workdir: str, which: str = "latest"):
    """(model_def, mesh, state, state_shardings, step) from a checkpoint or `config.init_from`.

    Checkpoints under <workdir>/checkpoints win; without any, `config.init_from` (converted
    weights) must provide every variable.
    """
    from dgr_jax import checkpoint, optim, sharding, steps, weights

    mesh = sharding.make_mesh(config.mesh)
    model_def = steps.model_def_from_config(config)
    tx, _ = optim.make_optimizer(config.optim, config.total_steps)
    abstract = jax.eval_shape(lambda: steps.init_state(model_def, tx, config.seed))
    state_sh = sharding.state_shardings(abstract, mesh, config.sharding)
    ckpt_dir = storage.join(workdir, "checkpoints")
    if _has_steps(ckpt_dir):
        ckpt = checkpoint.Checkpointer(
            ckpt_dir,
            best_metric=config.best_metric or None,
            best_mode=config.best_mode,
            read_only=True,
        )
        step = ckpt.resolve(which)
        state, _ = ckpt.restore(step, checkpoint.abstract_with_shardings(abstract, state_sh))
        ckpt.close()
    elif config.init_from:
        # Every variable comes from the weights: no random initialisation to compile.
        state, _ = weights.load_init_weights(
            {"params": abstract["params"], "rest": abstract["rest"]},
            state_sh,
            config.init_from,
            config.model,
            complete=True,
        )
        step = 0
    else:
        raise FileNotFoundError(
            f"nothing to evaluate: no checkpoints under {ckpt_dir} and no --config.init_from; "
            "train first (python train.py ...) or pass converted weights"
        )
    return model_def, mesh, state, state_sh, step


def evaluate_checkpoint(
    config: ml_collections.ConfigDict,
    workdir: str,
    which: str = "latest",
    out_root: str | None = None,
) -> dict:
    """eval.py: restore `which` (latest | best | STEP) or `config.init_from`, run config.evals.

    Writes <out_root>/<name>/{metrics.json, report.md, per_image.csv, images/}, out_root
    <workdir>/eval by default. `workdir`, `config.data_dir` and `config.init_from` may be gs://
    URLs; they are checked first.
    """
    from dgr_jax import sharding

    workdir = storage.absolute(workdir)
    paths.check_paths(config, workdir)
    data_dir = paths.data_dir_of(config, workdir)
    config = input_size.resolve(config, data_dir)  # input.size (0, 0): from the data
    model_def, mesh, state, state_sh, step = restore_for_inference(config, workdir, which)
    evaluators = make_evaluators(config, data_dir, mesh)
    predict = make_predict_fn(
        model_def,
        state_sh,
        sharding.batch_sharding(mesh),
        matmul_precision=precision.eval_precision(config),
    )
    out_root = out_root or storage.join(workdir, "eval")
    return run_all(evaluators, predict, state, step=step, out_root=out_root)


def _has_steps(ckpt_dir: str) -> bool:
    return any(name.isdigit() for name in storage.listdir(ckpt_dir))


def best_constant_depth(evaluator) -> float:
    """The constant depth that minimises the evaluator's mean per-image abs_rel (an oracle).

    abs_rel averaged over images is sum_i (1/n_i) sum_p |c - g_ip| / g_ip / N, piecewise linear
    and convex in c: its minimiser is the weighted median of all valid g_ip with weights
    1 / (n_i g_ip). Valid pixels follow the evaluator's protocol (crop, depth range, KB crop).
    """
    values, weights = [], []
    for index in evaluator._indices():
        gt = evaluator._load(index)["gt"]
        valid = (
            evaluator._region(gt.shape) & (gt > evaluator.min_depth) & (gt < evaluator.max_depth)
        )
        g = gt[valid].astype(np.float64)
        if g.size:
            values.append(g)
            weights.append(1.0 / (g.size * g))
    if not values:
        raise ValueError(f"eval {evaluator.name!r} has no valid ground-truth pixels")
    v, w = np.concatenate(values), np.concatenate(weights)
    order = np.argsort(v)
    cumulative = np.cumsum(w[order])
    return float(v[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def constant_baseline(evaluator) -> dict:
    """Metrics of the best constant-depth predictor under the evaluator's exact protocol."""
    depth = best_constant_depth(evaluator)

    def predict_fn(images):
        return jax.numpy.zeros_like(images[..., :1], jax.numpy.float32) + depth

    # Sharded over "data" like a model's prediction, so multi-process evaluation sees its rows.
    batch_sharding = jax.sharding.NamedSharding(evaluator.mesh, jax.sharding.PartitionSpec("data"))
    metrics = evaluator.run(jax.jit(predict_fn, out_shardings=batch_sharding), out_dir=None)
    return {"depth": depth, **{k: v for k, v in metrics.items() if isinstance(v, float | int)}}
