"""The trainer: mesh, data, model, state, step, checkpoints, evaluation, loop.

    train_and_evaluate(config, workdir)

Reads top to bottom. Everything placement-related comes from `config.mesh` / `config.sharding`;
the step is a pure function jitted with explicit in/out shardings and a donated state; metrics
reach the host only every `log_every` steps; running the same command again on the same workdir
resumes exactly from the latest checkpoint (state, optimizer, step, rng and data position).
"""

from __future__ import annotations

import os
import sys
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
    paths,
    precision,
    preemption,
    sharding,
    signals,
    storage,
    train_program,
    weights,
)
from dgr_jax.data import datasets, input_size, pipeline, watchdog
from dgr_jax.data.prefetch import Prefetcher
from dgr_jax.metric_writer import MetricWriter, format_duration, plot_training_curves


class TrainingError(RuntimeError):
    """A run that cannot go on (non-finite loss, bad set-up); the message says why."""


def _log(msg: str) -> None:
    if jax.process_index() == 0:
        print(msg, flush=True)


def data_seed(config: ml_collections.ConfigDict) -> int:
    """Seed of the data order and augmentation: `input.seed`, or `seed` when that is < 0.

    Separate from `seed` (initialisation and per-step randomness) so that runs can differ in
    their initialisation alone and still see the same batches in the same order.
    """
    value = int(config.input.get("seed", -1))
    return int(config.seed) if value < 0 else value


def _reached_preemption_sync_point(step: int) -> bool:
    """Multi-process: True on every process at the same step once any process got SIGTERM.

    JAX's preemption notifier (started by `jax.distributed.initialize`) owns SIGTERM there.
    `preemption.reached_sync_point` counts its calls over the whole process, not the step: a
    study trains several runs in one process, each from step 0. Every process calls it at every
    step, so the agreed call is the same step on every process.
    """
    del step
    return preemption.reached_sync_point()


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
    try:  # before any data is built: the batch must split over the devices (and micro-batches)
        train_program.check_batch(config, mesh)
    except ValueError as e:
        raise TrainingError(str(e)) from None
    accum_steps = train_program.accum_steps_of(config)
    batch_sh = sharding.batch_sharding(mesh)

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
    resolved = input_size.resolve(config, data_dir)  # sizes written (0, 0): from the data
    if resolved is not config:
        config = resolved
        _log(f"input size: {tuple(config.input.size)}")
        if is_main:
            jsonio.write(storage.join(workdir, "config.json"), jsonio.config_json(config))
    train_source = datasets.open_split(
        config.input.dataset,
        config.input.split,
        data_dir,
        manual_dir=config.input.manual_dir,
        build_args=build_args,
    )

    # ---- Model, loss, optimiser, state shardings and the jitted step -------------------------
    # Built by the one function that `python -m dgr_jax.aot` compiles for TPU / GPU targets.
    try:
        program = train_program.build_train_program(config, mesh)
    except ValueError as e:
        raise TrainingError(str(e)) from None
    model_def = program.model_def

    # ---- State: abstract first, then created already sharded ----------------------------------
    init_fn = program.init_fn
    seed = np.int32(config.seed)
    abstract = program.abstract_state
    state_sh = program.state_shardings
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
                abstract,
                config.init_from,
                config.model,
                complete=False,
                include=tuple(config.get("init_from_include", ())),
                exclude=tuple(config.get("init_from_exclude", ())),
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
    if jax.process_count() > 1:
        # Report the starting step to the preemption sync point now: a notice that comes while
        # the step compiles then agrees on start_step + 1 (with no step reported yet, JAX's sync
        # protocol has nothing to agree on and the notice would be lost).
        _reached_preemption_sync_point(start_step)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract["params"]))
    _log(
        f"model: {n_params / 1e6:.2f}M parameters; mesh {dict(mesh.shape)}; "
        f"sharding {config.sharding}"
    )

    # ---- Step -------------------------------------------------------------------------------
    train_step = program.step

    # ---- Evaluators ------------------------------------------------------------------------
    # Every wait for input (training batches, evaluators' reads) is bounded by the stall
    # watchdog and, in a single process, ended by SIGTERM (`stop`, set by signals.StopOnSignal).
    stop = threading.Event()
    dog = watchdog.Watchdog(config.input.get("stall_timeout_s", 600), stop)
    evaluators = evaluate.make_evaluators(config, data_dir, mesh, watchdog=dog)
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
    reader = watchdog.Reader(
        f"training input (grain, {config.input.workers} worker processes, prefetch thread)",
        config.input.dataset,
        config.input.split,
        data_dir,
    )
    prefetch = Prefetcher(
        it,
        {"image": batch_sh, "depth": batch_sh},
        size=config.input.prefetch,
        watchdog=dog,
        reader=reader,
    )
    last_data_state = data_state["iterator"] if data_state else it.get_state()

    # ---- Loop -------------------------------------------------------------------------------
    writer = MetricWriter(
        workdir, enabled=is_main, resume_step=start_step if latest is not None else None
    )
    multiprocess = jax.process_count() > 1
    signal_handling = signals.StopOnSignal(stop, ckpt.directory)
    last_saved = latest  # the newest step saved (or being saved) by this run or the last

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
        nonlocal last_saved
        check_finite()
        writer.flush()  # log lines up to `step` are stored before the checkpoint commits
        ckpt.save(
            step, state, {"iterator": last_data_state, "workers": config.input.workers}, metrics
        )
        last_saved = step

    def stop_on_sigterm(step: int) -> dict:
        # Single process, SIGTERM: save the last completed step (unless saved already or
        # nothing was trained since the start) and return; `finally` waits for the commit.
        if step > start_step and step != last_saved:
            save(step)
            _log(f"SIGTERM: saved step {step}; rerun the same command to resume")
        else:
            where = f"step {last_saved}" if last_saved is not None else "none"
            _log(f"SIGTERM: nothing new to save (last checkpoint: {where}); rerun to resume")
        return {}

    def preempted(step: int) -> preemption.Preempted:
        # Multi-process, the agreed step: every process saves it and waits for the commit.
        if step != last_saved:
            save(step)
        ckpt.wait()
        return preemption.Preempted(step)

    def stalled(e: Exception, step: int) -> Exception:
        where = f"step {last_saved} in {ckpt.directory}" if last_saved is not None else "none"
        message = (
            f"{e}. Stopped after step {step} without saving; the last checkpoint ({where}) is "
            "intact; rerun the same command to resume from it"
        )
        if multiprocess:
            # The other processes may wait for this one inside a collective: leave now (JAX's
            # coordination service ends them once this process is gone).
            print(f"error: {message}", file=sys.stderr, flush=True)
            status = watchdog.EXIT_STALLED
            if isinstance(e, watchdog.StalledAtPreemption):
                status = preemption.EXIT_PREEMPTED
            os._exit(status)
        return watchdog.InputStalled(message)

    pending: list[dict] = []
    t_log, step_log = time.perf_counter(), start_step
    t_start = time.perf_counter()
    step = start_step
    micro = f", {accum_steps} micro-batches of {config.batch_size // accum_steps}"
    _log(
        f"training steps {start_step} -> {config.total_steps} (batch {config.batch_size}"
        f"{micro if accum_steps > 1 else ''})"
    )
    signal_handling.install()
    try:
        while step < config.total_steps:
            try:
                batch, last_data_state = prefetch.next()
            except watchdog.StopWaiting:  # SIGTERM while waiting for data (single process)
                return stop_on_sigterm(step)
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
            # Every process asks at every step; all get True at the same (agreed) step once
            # any process got SIGTERM. Single process: the flag set by the SIGTERM handler.
            if multiprocess and _reached_preemption_sync_point(step):
                raise preempted(step)
            if stop.is_set():
                return stop_on_sigterm(step)
            if last:
                break
            evaluated = None
            if evaluators and config.eval_every and step % config.eval_every == 0:
                try:
                    evaluated = evaluate.run_all(evaluators, predict, state, step=step)
                except watchdog.StopWaiting:  # SIGTERM inside the evaluation: abandon it
                    return stop_on_sigterm(step)
                writer.write_scalars(step, evaluated, kind="eval")
                _log(f"eval step {step}: {evaluate.summary_line(evaluated)}")
            if stop.is_set():
                return stop_on_sigterm(step)
            if step % config.ckpt_every == 0:
                save(step, evaluated)
            if evaluated is not None:  # keep evaluation time out of the training rate
                t_log, step_log = time.perf_counter(), step

        # ---- Final evaluation: metrics, reports, pictures -----------------------------------
        try:
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
        except watchdog.StopWaiting:  # SIGTERM during the final evaluation: rerun finishes it
            return stop_on_sigterm(step)
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
    except (watchdog.InputStalled, watchdog.StalledAtPreemption) as e:
        raise stalled(e, step) from None
    finally:
        prefetch.close()
        ckpt.close()
        writer.close()
        signal_handling.restore()
