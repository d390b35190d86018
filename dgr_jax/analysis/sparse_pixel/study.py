"""The sparse-pixel comparative study: Transformer vs CNN (paper Fig. 1, 2, 3, 5).

    python -m dgr_jax.analysis.sparse_pixel --config configs/sparse_pixel_synthetic.py[:smoke] \
        --workdir DIR

What is whose: the study is the paper's (method.md sections 1-2); the mask loss and the exact
sparsity protocol follow Hu et al. (ICCV 2019); everything below the list is ours.

1. Arms: the two depth networks named in `config.arms` (an experiment config, a workdir), with
   `config.arm_overrides` applied to both. Their configs must agree outside
   `config.arms_may_differ_in` (checked before training and on the runs' config.json). A
   workdir without a finished run is trained first with the real trainer; then the latest
   checkpoint is restored and frozen.
2. Mask nets: for every arm and every lambda of `config.lambdas`, a fresh mask network G
   (`dgr_jax/models/mask_net.py`, same init for all) is trained against the frozen network on
   the arms' training split (`mask_training.py`); every G sees the same batches.
3. Evaluation on the test split: the frozen networks' predictions from the full image; each G's
   soft mask; at every sparsity s of `config.sparsities` the mask of the lambda whose soft
   sparsity (1 - mean M) is nearest s (or a fixed lambda, `config.lambda_for_level`),
   binarised to exactly the top (1 - s) fraction, and RMSE of N(I * M_s) against ground truth
   (valid pixels) and against N(I); where the kept pixels lie (`sparsity.py`); the depth and
   edge / gradient metrics of both networks from the full image (`dgr_jax.evaluators`).
4. Outputs in DIR: sparsity_curves.csv/.png (Fig. 5), lambda_sweep.csv, masks_<k>.png (Fig. 3,
   k = test-image index), comparison.png (Fig. 1), summary.md (with the verdict rule of
   `report.py`), results.json, mask_nets/<arm>/lambda_<value>.npz, arms/<arm>/ (default arm
   workdirs).

Multi-process (`common/cli.py` has the flags): the arms' training, the mask nets and the
evaluation use all processes' devices (batches sharded over `data`); process 0 writes the
study's files; DIR may be gs://. A SIGTERM while an arm trains stops the study at the agreed
step (the trainer saves it and raises `Preempted`; exit status `EXIT_PREEMPTED`); rerunning the
same command resumes that arm and reuses a finished one. The mask nets and the evaluation (minutes)
are not checkpointed: a rerun computes them again, with the same seeds and batches. A rerun
with a changed study config is refused (`common/workdir.py`).
"""

from __future__ import annotations

import time

import jax
import ml_collections
import optax

from dgr_jax import multihost, sharding, storage, xla_options
from dgr_jax.analysis.common import runs as runs_lib
from dgr_jax.analysis.common import workdir as workdir_lib
from dgr_jax.analysis.sparse_pixel import arms as arms_lib
from dgr_jax.analysis.sparse_pixel import evaluation, mask_training, outputs
from dgr_jax.data import datasets, pipeline


def _log(msg: str) -> None:
    if workdir_lib.is_writer():
        print(msg, flush=True)


# ------------------------------------------------------------------------------------------
# Arms.
# ------------------------------------------------------------------------------------------
def prepare_arms(config: ml_collections.ConfigDict, workdir: str, mesh) -> tuple[dict, dict]:
    """Resolve, check, train if needed and restore both arms; (arms, conditions)."""
    order = tuple(config.arm_order)
    if sorted(order) != sorted(config.arms.keys()) or len(order) != 2:
        raise ValueError(f"arm_order {order} must name the two arms {sorted(config.arms)}")
    data_dir = config.data_dir or storage.join(workdir, "data")
    resolved, dirs = {}, {}
    for name in order:
        arm = config.arms[name]
        overrides = [*config.arm_overrides, *arm.overrides]
        resolved[name] = runs_lib.resolve_arm_config(
            arm.config, overrides, data_dir=data_dir, mesh=config.mesh
        )
        dirs[name] = storage.absolute(arm.workdir or storage.join(workdir, "arms", name))
    may_differ = tuple(config.arms_may_differ_in)
    keys = runs_lib.check_identical_conditions(resolved, may_differ)
    for name in order:
        _log(f"arm {name}: {config.arms[name].config} -> {dirs[name]}")
        runs_lib.ensure_trained(resolved[name], dirs[name], log=_log)
    written = {n: runs_lib.trained_config(dirs[n]) for n in order}
    checked = all(w is not None for w in written.values())
    if checked:
        runs_lib.check_identical_conditions(written, may_differ, "trained configs (config.json)")
    notes = []
    for name in order:  # a reused run may have been trained with other settings than asked
        if written[name] is None:
            continue
        diffs = runs_lib.config_differences(resolved[name], written[name])
        if any(k.startswith("model.") for k, _, _ in diffs):
            raise ValueError(
                f"arm {name}: the run in {dirs[name]} has another model than the study's config "
                f"({', '.join(k for k, _, _ in diffs if k.startswith('model.'))}); point "
                f"arms.{name}.workdir at a matching run or leave it empty"
            )
        if diffs:
            notes.append(
                f"arm {name} reuses {dirs[name]}, trained with settings other than the study "
                f"config's (both arms alike): "
                + ", ".join(f"{k}={vb!r} (config: {va!r})" for k, va, vb in diffs)
            )
    differing = runs_lib.config_differences(resolved[order[0]], resolved[order[1]])
    frozen = {
        n: arms_lib.restore_frozen(n, config.arms[n].label, resolved[n], dirs[n], mesh)
        for n in order
    }
    conditions = {
        "num_keys": len(keys),
        "may_differ": list(may_differ),
        "differing": ", ".join(k for k, _, _ in differing) or "nothing",
        "checked_trained_configs": checked,
        "notes": notes,
    }
    return frozen, conditions


# ------------------------------------------------------------------------------------------
# Mask networks.
# ------------------------------------------------------------------------------------------
def _sharded_images(it, batch_sh):
    """Endless ImageNet-normalised image batches from a train iterator (this process's share of
    each global batch), on the mesh."""
    while True:
        yield jax.make_array_from_process_local_data(batch_sh, next(it)["image"])


def train_mask_nets(config, workdir: str, frozen: dict, mesh) -> tuple:
    """One mask net per (arm, lambda); every one starts from the same init and batches.

    Returns (mask_def, {arm: {lambda: (params, rest)}}, {arm: {lambda: history}}).
    """
    batch_sh, repl = sharding.batch_sharding(mesh), sharding.replicated(mesh)
    first = frozen[config.arm_order[0]].config
    train_source = datasets.open_split(
        first.input.dataset,
        first.input.split,
        first.data_dir,
        manual_dir=first.input.manual_dir,
        build_args=dict(first.input.build),
    )
    mask_def = mask_training.mask_model_def(config.mask)
    tx = optax.adam(config.mask.lr)
    init = jax.jit(
        lambda: mask_training.init_mask_state(mask_def, tx, config.seed), out_shardings=repl
    )
    params, histories = {}, {}
    for name in config.arm_order:
        arm = frozen[name]
        step = xla_options.jit(
            mask_training.make_mask_train_step(mask_def, arm.predict_fn(), tx),
            donate_argnums=(0,),
        )
        params[name], histories[name] = {}, {}
        for lam in map(float, config.lambdas):
            it = pipeline.train_iterator(
                train_source,
                pp=config.mask.pp,
                global_batch=config.mask.batch_size,
                seed=config.seed,
            )
            state, history = mask_training.train_mask_net(
                step,
                init(),
                (arm.params, arm.rest),
                _sharded_images(it, batch_sh),
                lam=lam,
                num_steps=config.mask.steps,
                log_every=config.mask.log_every,
                log=_log,
                prefix=f"mask {name} lambda={lam:g}: ",
            )
            runs_lib.stop_if_preempted(f"after the mask net of {name} lambda={lam:g}")
            params[name][lam] = (state["params"], state["rest"])
            histories[name][lam] = history
            if workdir_lib.is_writer():
                outputs.save_mask_net(workdir, name, lam, state["params"])
    return mask_def, params, histories


# ------------------------------------------------------------------------------------------
# The study.
# ------------------------------------------------------------------------------------------
def run_study(config: ml_collections.ConfigDict, workdir: str, command: str = "") -> dict:
    """Run the whole study (module docstring) and write its outputs; returns the results."""
    t_start, cpu_start = time.perf_counter(), time.process_time()
    timing: dict[str, float] = {}
    workdir = storage.absolute(workdir)  # local or gs://
    storage.check(workdir, "--workdir")
    storage.makedirs(workdir)
    workdir_lib.check_and_record_config(workdir, config)  # refuses a changed design
    mesh = sharding.make_mesh(config.mesh)
    data_size = mesh.shape["data"]
    if config.mask.batch_size % data_size:
        raise ValueError(
            f"mask.batch_size={config.mask.batch_size} must be a multiple of the {data_size} "
            "data-parallel devices"
        )
    order = tuple(config.arm_order)

    t = time.perf_counter()
    frozen, conditions = prepare_arms(config, workdir, mesh)
    timing["arms_s"] = time.perf_counter() - t
    runs_lib.stop_if_preempted("after the arms' training")

    t = time.perf_counter()
    mask_def, mask_params, histories = train_mask_nets(config, workdir, frozen, mesh)
    timing["mask_training_s"] = time.perf_counter() - t

    t = time.perf_counter()
    depth_range = (float(config.test.min_depth), float(config.test.max_depth))
    first = frozen[order[0]].config
    test = evaluation.load_test_set(
        first,
        config.test.split,
        config.test.num_images,
        first.data_dir,
        depth_range,
        crop=config.test.crop,
    )
    classes = evaluation.pixel_classes_of(test, config.placement.classes.to_dict())
    eval_batch = -(-int(config.test.batch_size) // data_size) * data_size
    soft_fn = evaluation.soft_mask_fn(mask_def)  # one compilation for both arms
    per_arm = {
        name: evaluation.evaluate_arm(
            frozen[name],
            soft_fn=soft_fn,
            mask_params=mask_params[name],
            histories=histories[name],
            test=test,
            classes=classes,
            sparsities=config.sparsities,
            placement_sparsity=float(config.placement.sparsity),
            lambda_for_level=config.lambda_for_level,
            depth_range=depth_range,
            batch=eval_batch,
            batch_sh=sharding.batch_sharding(mesh),
        )
        for name in order
    }
    timing["evaluation_s"] = time.perf_counter() - t
    runs_lib.stop_if_preempted("after the evaluation")

    t = time.perf_counter()
    labels = {n: frozen[n].label for n in order}
    if workdir_lib.is_writer():
        outputs.write_figures(config, workdir, labels, test, per_arm)
    results = outputs.results_dict(
        config,
        command=command,
        frozen=frozen,
        conditions=conditions,
        test=test,
        classes=classes,
        per_arm=per_arm,
        histories=histories,
    )
    timing["outputs_s"] = time.perf_counter() - t
    timing["total_s"] = time.perf_counter() - t_start
    timing["cpu_s"] = time.process_time() - cpu_start  # all threads: less load-dependent
    results["timing"] = timing
    if workdir_lib.is_writer():
        outputs.write_tables_and_summary(workdir, results)
    multihost.sync("sparse_pixel_written")
    _log(f"sparse-pixel study done in {timing['total_s'] / 60:.1f} min: {workdir}")
    return results
