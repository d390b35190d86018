"""The trainer: mesh, data, model, state, step, checkpoints, evaluation, loop.

    train_and_evaluate(config, workdir)

Reads top to bottom. Everything placement-related comes from `config.mesh` / `config.sharding`;
the step is a pure function jitted with explicit in/out shardings and a donated state; metrics
reach the host only every `log_every` steps; running the same command again on the same workdir
resumes exactly from the latest checkpoint (state, optimizer, step, rng and data position).
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from dgr_jax import (
    checkpoint,
    evaluate,
    jsonio,
    multihost,
    optim,
    paths,
    precision,
    sharding,
    steps,
    storage,
    weights,
    xla_options,
)
from dgr_jax.data import datasets, pipeline
from dgr_jax.losses import make_loss
from dgr_jax.metric_writer import MetricWriter, format_duration, plot_training_curves


class TrainingError(RuntimeError):
    """A run that cannot go on (non-finite loss, bad set-up); the message says why."""


def _log(msg: str) -> None:
    if jax.process_index() == 0:
        print(msg, flush=True)


class _Prefetcher:
    """Background thread: next local batch -> global sharded arrays, with its iterator state.

    Each queued item carries the iterator state *after* that batch, so a checkpoint taken after
    consuming it resumes exactly at the following batch.
    """

    def __init__(self, it, shardings: dict, size: int = 2):
        self._it, self._shardings = it, shardings
        self._q: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                local = next(self._it)
                state = self._it.get_state()
                batch = {
                    k: jax.make_array_from_process_local_data(
                        self._shardings[k], np.asarray(local[k])
                    )
                    for k in ("image", "depth")
                }
                while not self._stop.is_set():
                    try:
                        self._q.put((batch, state), timeout=0.2)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # surfaced in the training thread
            self._q.put((e, None))

    def next(self) -> tuple[dict, dict]:
        item, state = self._q.get()
        if isinstance(item, BaseException):
            raise item
        return item, state

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def data_seed(config: ml_collections.ConfigDict) -> int:
    """Seed of the data order and augmentation: `input.seed`, or `seed` when that is < 0.

    Separate from `seed` (initialisation and per-step randomness) so that runs can differ in
    their initialisation alone and still see the same batches in the same order.
    """
    value = int(config.input.get("seed", -1))
    return int(config.seed) if value < 0 else value


def _fetch(tree) -> Any:
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train (or resume) and evaluate; returns the final evaluation metrics.

    `workdir` (and `config.data_dir`, `config.init_from`) may be local or gs:// URLs.
    """
    workdir = storage.absolute(workdir)
    try:
        paths.check_paths(config, workdir)
    except storage.StorageError as e:
        raise TrainingError(str(e)) from None
    storage.makedirs(workdir)
    is_main = jax.process_index() == 0
    if is_main:
        jsonio.write(storage.join(workdir, "config.json"), jsonio.config_json(config))

    # ---- Mesh --------------------------------------------------------------------------------
    mesh = sharding.make_mesh(config.mesh)
    data_size = mesh.shape["data"]
    if config.batch_size % data_size:
        raise TrainingError(
            f"batch_size={config.batch_size} is not divisible by the {data_size} data-parallel "
            f"devices; use a multiple of {data_size} (or set mesh.data)"
        )
    batch_sh = sharding.batch_sharding(mesh)
    repl = sharding.replicated(mesh)

    # ---- Data --------------------------------------------------------------------------------
    data_dir = paths.data_dir_of(config, workdir)
    build_args = dict(config.input.build)
    if is_main:  # one process builds; the others wait at the barrier below
        datasets.ensure_built(
            config.input.dataset,
            data_dir,
            manual_dir=config.input.manual_dir,
            build_args=build_args,
        )
    multihost.sync("dataset_built")
    train_source = datasets.open_split(
        config.input.dataset,
        config.input.split,
        data_dir,
        manual_dir=config.input.manual_dir,
        build_args=build_args,
    )

    # ---- Model, loss, optimiser ---------------------------------------------------------------
    model_def = steps.model_def_from_config(config)
    loss_fn = make_loss(config.loss)
    tx, schedule = optim.make_optimizer(config.optim, config.total_steps)

    # ---- State: abstract first, then created already sharded ----------------------------------
    # The seed is an argument, not a constant of the program, so runs that differ only in their
    # seed (the ablation study's) share one compiled init.
    def init_fn(seed):
        return steps.init_state(model_def, tx, seed)

    seed = np.int32(config.seed)
    abstract = jax.eval_shape(init_fn, seed)
    state_sh = sharding.state_shardings(abstract, mesh, config.sharding)
    ckpt = checkpoint.Checkpointer(
        storage.join(workdir, "checkpoints"),
        keep=config.keep_ckpts,
        best_metric=config.best_metric or None,
        best_mode=config.best_mode,
    )
    latest = ckpt.latest_step()
    data_state = None
    init_weights = None
    if latest is None and config.init_from:  # checked before compiling anything
        try:
            init_weights = weights.read_init_weights(
                abstract, config.init_from, config.model, complete=False
            )
        except ValueError as e:
            raise TrainingError(str(e)) from None
    if latest is not None:
        state, data_state = ckpt.restore(
            latest, checkpoint.abstract_with_shardings(abstract, state_sh)
        )
        _log(f"resuming from checkpoint step {latest} in {ckpt.directory}")
    else:
        state = jax.jit(init_fn, out_shardings=state_sh)(seed)
        if init_weights is not None:
            state = weights.apply_init_weights(state, init_weights, state_sh)
            _log(init_weights.report)
    start_step = int(jax.device_get(state["step"]))
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract["params"]))
    _log(
        f"model: {n_params / 1e6:.2f}M parameters; mesh {dict(mesh.shape)}; "
        f"sharding {config.sharding}"
    )

    # ---- Step -------------------------------------------------------------------------------
    train_step = xla_options.jit(
        steps.make_train_step(model_def, loss_fn, tx, schedule, min_depth=config.loss.min_depth),
        in_shardings=(state_sh, {"image": batch_sh, "depth": batch_sh}),
        out_shardings=(state_sh, repl),
        donate_argnums=(0,),
    )

    # ---- Evaluators ------------------------------------------------------------------------
    evaluators = evaluate.make_evaluators(config, data_dir, mesh)
    predict = evaluate.make_predict_fn(
        model_def, state_sh, batch_sh, matmul_precision=precision.eval_precision(config)
    )

    # ---- Input iterator (restored to the checkpoint's position) ----------------------------
    it = pipeline.train_iterator(
        train_source,
        pp=config.input.pp_train,
        global_batch=config.batch_size,
        seed=data_seed(config),
        workers=config.input.workers,
    )
    if data_state is not None:
        if data_state.get("workers", 0) != config.input.workers:
            raise TrainingError(
                f"the checkpoint was written with input.workers={data_state.get('workers')}; "
                f"resume with the same value (got {config.input.workers}) so the data order matches"
            )
        it.set_state(data_state["iterator"])
    prefetch = _Prefetcher(it, {"image": batch_sh, "depth": batch_sh}, size=config.input.prefetch)
    last_data_state = data_state["iterator"] if data_state else it.get_state()

    # ---- Loop -------------------------------------------------------------------------------
    writer = MetricWriter(
        workdir, enabled=is_main, resume_step=start_step if latest is not None else None
    )
    stop_requested = threading.Event()
    previous_handler = (
        signal.signal(signal.SIGTERM, lambda *_: stop_requested.set()) if is_main else None
    )

    def check_finite() -> None:
        bad = int(jax.device_get(state["nonfinite_step"]))
        if bad >= 0:
            ckpt.wait()
            good = ckpt.latest_step()
            where = f"step {good} in {ckpt.directory}" if good is not None else "none saved yet"
            raise TrainingError(
                f"non-finite loss or gradient at step {bad}; training stopped. Last good "
                f"checkpoint: {where} (intact; no NaN was applied to the parameters). Check the "
                "input data and the learning rate, then rerun the same command to resume."
            )

    def save(step: int, metrics: dict | None = None) -> None:
        check_finite()
        writer.flush()  # log lines up to `step` are stored before the checkpoint commits
        ckpt.save(
            step, state, {"iterator": last_data_state, "workers": config.input.workers}, metrics
        )

    pending: list[dict] = []
    t_log, step_log = time.perf_counter(), start_step
    t_start = time.perf_counter()
    step = start_step
    _log(f"training steps {start_step} -> {config.total_steps} (batch {config.batch_size})")
    try:
        while step < config.total_steps:
            batch, last_data_state = prefetch.next()
            state, metrics = train_step(state, batch)
            step += 1
            pending.append(metrics)
            if step == start_step + 1:  # keep compilation out of the images/s and ETA
                jax.block_until_ready(metrics["loss"])
                t_log, step_log = time.perf_counter(), step
            last = step == config.total_steps
            if step % config.log_every == 0 or last:
                host = _fetch(pending)
                pending = []
                check_finite()
                now = time.perf_counter()
                done = step - step_log  # 0 right after the first (compiling) step
                rate = done * config.batch_size / (now - t_log) if done else float("nan")
                eta = (config.total_steps - step) * (now - t_log) / done if done else float("nan")
                t_log, step_log = now, step
                scalars = {k: float(v) for k, v in host[-1].items()}
                scalars["loss_avg"] = float(np.mean([h["loss"] for h in host]))
                if done:
                    scalars["images_per_s"] = rate
                writer.write_scalars(step, scalars)
                _log(
                    f"step {step}/{config.total_steps} | loss {scalars['loss']:.4f} | "
                    f"lr {scalars['lr']:.2e} | {rate:.1f} img/s | ETA {format_duration(eta)}"
                )
            if last:
                break
            evaluated = None
            if evaluators and config.eval_every and step % config.eval_every == 0:
                evaluated = evaluate.run_all(evaluators, predict, state, step=step)
                writer.write_scalars(step, evaluated, kind="eval")
                _log(f"eval step {step}: {evaluate.summary_line(evaluated)}")
            if step % config.ckpt_every == 0 or stop_requested.is_set():
                save(step, evaluated)
            if stop_requested.is_set():
                _log(f"SIGTERM: saved step {step}; rerun the same command to resume")
                return {}
            if evaluated is not None:  # keep evaluation time out of the training rate
                t_log, step_log = time.perf_counter(), step

        # ---- Final evaluation: metrics, reports, pictures -----------------------------------
        final_metrics = {}
        if evaluators:
            final_metrics = evaluate.run_all(
                evaluators, predict, state, step=step, out_root=storage.join(workdir, "eval")
            )
            writer.write_scalars(step, final_metrics, kind="eval")
            writer.write_image_files(step, storage.join(workdir, "eval"))
            _log(f"final eval step {step}: {evaluate.summary_line(final_metrics)}")
        if step not in ckpt.all_steps():
            save(step, final_metrics or None)
        # The oracle constant-depth predictor under the same protocol: what "learned
        # something" is measured against.
        baselines = {name: evaluate.constant_baseline(ev) for name, ev in evaluators.items()}
        for name, base in baselines.items():
            _log(
                f"constant-depth baseline {name}: abs_rel {base['abs_rel']:.4f} "
                f"(depth {base['depth']:.3f} m)"
            )
        if is_main:
            summary = {
                "step": step,
                "eval": evaluate.nest(final_metrics),
                "baseline_constant_depth": baselines,
                "train_seconds_this_run": round(time.perf_counter() - t_start, 1),
                "train_step_compilations": train_step._cache_size(),
            }
            jsonio.write(storage.join(workdir, "metrics.json"), summary)
            writer.flush()
            plot_training_curves(workdir)
        return final_metrics
    finally:
        prefetch.close()
        ckpt.close()
        writer.close()
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
