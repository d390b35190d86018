"""Compile the trainer's train step and the evaluator's predict function for a target.

Both programs are built by the functions the trainer and the evaluator call
(`train_program.build_train_program`, `evaluate.make_predict_fn`) on a mesh over the target's
compile-only devices, built by the trainer's mesh policy (`sharding.make_mesh`), and lowered
from abstract inputs: no data, no weights, nothing allocated.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections

from dgr_jax import evaluate, hlo_stats, precision, sharding, train_program
from dgr_jax.aot import hlo
from dgr_jax.aot.targets import Target
from dgr_jax.evaluators.eval_steps import global_batch_size

# XLA:TPU's message when a program does not fit, e.g. "Ran out of memory in memory space hbm.
# ... the total memory required for HLO temporaries (18.12G) exceeds available HBM (15.75G)".
_OOM_MARKERS = ("RESOURCE_EXHAUSTED", "Ran out of memory")


class DoesNotFit(Exception):
    """The compiler refused the program for lack of device memory; `message` is its reason."""

    def __init__(self, message: str, compile_s: float):
        super().__init__(message)
        self.message, self.compile_s = message, compile_s


def _compiler_reason(error: Exception) -> str:
    text = str(error)
    for line in text.splitlines():
        if "exceeds" in line or "Ran out of memory" in line:
            return re.sub(r"\s+", " ", line).strip()
    return re.sub(r"\s+", " ", text.splitlines()[0] if text else repr(error)).strip()


def _compile(lowered) -> tuple[Any, float]:
    start = time.perf_counter()
    try:
        compiled = lowered.compile()
    except Exception as e:
        if any(marker in str(e) for marker in _OOM_MARKERS):
            raise DoesNotFit(_compiler_reason(e), time.perf_counter() - start) from None
        raise
    return compiled, time.perf_counter() - start


def analyse(
    compiled, lowered_hlo: str, *, target: Target, dtype: str, compile_s: float
) -> dict[str, Any]:
    """The per-device memory, cost, collectives and roofline of one compiled program."""
    mem = compiled.memory_analysis()
    argument = int(mem.argument_size_in_bytes)
    output = int(mem.output_size_in_bytes)
    alias = int(mem.alias_size_in_bytes)
    temp = int(mem.temp_size_in_bytes)
    code = int(mem.generated_code_size_in_bytes)
    # What must be resident on one device: inputs, outputs not written in place of an input,
    # temporaries and the executable (MaxText's train_compile sums the same terms).
    peak = argument + output - alias + temp + code
    cost = compiled.cost_analysis() or {}
    if isinstance(cost, list | tuple):  # older JAX: one dict per computation
        cost = cost[0] if cost else {}
    flops = cost.get("flops")
    bytes_accessed = cost.get("bytes accessed")
    flops = float(flops) if flops is not None and flops >= 0 else None
    bytes_accessed = (
        float(bytes_accessed) if bytes_accessed is not None and bytes_accessed >= 0 else None
    )
    chip = target.chip
    peak_flops = chip.peak_flops(dtype)
    bandwidth = chip.per_device(chip.hbm_bandwidth)
    compute_s = flops / peak_flops if flops is not None else None
    memory_s = bytes_accessed / bandwidth if bytes_accessed is not None else None
    parts = [t for t in (compute_s, memory_s) if t is not None]
    roofline = max(parts) if parts else None
    return {
        "argument_bytes": argument,
        "output_bytes": output,
        "alias_bytes": alias,
        "temp_bytes": temp,
        "code_bytes": code,
        "peak_bytes": peak,
        "fits": peak <= target.hbm_bytes,
        "flops": flops,
        "bytes_accessed": bytes_accessed,
        "collectives": hlo.collectives(compiled.as_text() or ""),
        "dot_precision": hlo_stats.dot_precision(lowered_hlo),
        "roofline_s": roofline,
        # The fraction of the chip's peak FLOP/s the step can reach at best (compute time over
        # the roofline time).
        "mfu_ceiling": compute_s / roofline if compute_s is not None and roofline else None,
        "compile_s": round(compile_s, 2),
    }


def _not_fitting(reason: str, compile_s: float) -> dict[str, Any]:
    return {
        "fits": False,
        "peak_bytes": None,
        "compiler_message": reason,
        "compile_s": round(compile_s, 2),
    }


def mesh_for(config: ml_collections.ConfigDict, target: Target):
    """The trainer's mesh policy (`config.mesh`) over the target's devices."""
    return sharding.make_mesh(config.mesh, target.devices)


def train_step(
    config: ml_collections.ConfigDict, target: Target, batch_size: int | None = None
) -> dict[str, Any]:
    """Compile the trainer's train step for `target` (at `batch_size`, default the config's)."""
    if batch_size is not None and batch_size != config.batch_size:
        config = config.copy_and_resolve_references()
        config.unlock()
        config.batch_size = int(batch_size)
        config.lock()
    program = train_program.build_train_program(config, mesh_for(config, target))
    lowered = program.step.lower(*program.abstract_inputs())
    try:
        compiled, seconds = _compile(lowered)
    except DoesNotFit as e:
        return _not_fitting(e.message, e.compile_s)
    return analyse(
        compiled,
        lowered.as_text(dialect="hlo"),
        target=target,
        dtype=config.dtype,
        compile_s=seconds,
    )


def predict(
    config: ml_collections.ConfigDict,
    target: Target,
    eval_name: str,
    matmul_precision: str | None = None,
) -> dict[str, Any]:
    """Compile the evaluator's predict function (one pass; flip TTA calls it twice).

    At `config.eval_precision` (what eval.py and the evaluators compile) unless
    `matmul_precision` names another.
    """
    mesh = mesh_for(config, target)
    program = train_program.build_train_program(config, mesh)
    matmul_precision = matmul_precision or precision.eval_precision(config)
    fn = evaluate.make_predict_fn(
        program.model_def,
        program.state_shardings,
        program.batch_sharding,
        matmul_precision=matmul_precision,
    )
    cfg = config.evals[eval_name]
    batch = global_batch_size(int(cfg.batch_size), mesh.shape["data"])
    h, w = evaluate.eval_frame_size(config, eval_name)
    state, _ = program.abstract_inputs()
    images = jax.ShapeDtypeStruct((batch, h, w, 3), "float32", sharding=program.batch_sharding)
    lowered = fn.lower(state["params"], state["rest"], images)
    passes = 1 if str(cfg.get("flip_tta", "none")) == "none" else 2
    info = {
        "eval": eval_name,
        "batch_size": batch,
        "frame": [h, w],
        "tta_passes": passes,
        "matmul_precision": matmul_precision,
    }
    try:
        compiled, seconds = _compile(lowered)
    except DoesNotFit as e:
        return {**info, **_not_fitting(e.message, e.compile_s)}
    result = analyse(
        compiled,
        lowered.as_text(dialect="hlo"),
        target=target,
        dtype=config.dtype,
        compile_s=seconds,
    )
    return {**info, **result}


def max_batch(
    config: ml_collections.ConfigDict,
    target: Target,
    *,
    start: int,
    start_fits: bool,
    start_peak: int | None = None,
) -> tuple[int, list[dict]]:
    """The largest global batch (a multiple of the data-parallel size) whose step fits.

    `search_largest` over the per-device batch, each probe a compile at that batch; the
    recipe's own compile (`start`, `start_fits`, `start_peak`) is its first point. Returns
    (batch, tries); batch 0 when not even one example per data-parallel device fits.
    """
    data = mesh_for(config, target).shape["data"]
    tries: list[dict] = []

    def probe(k: int) -> tuple[bool, int | None]:
        result = train_step(config, target, k * data)
        peak = result.get("peak_bytes")
        tries.append({"batch_size": k * data, "fits": result["fits"], "peak_bytes": peak})
        return bool(result["fits"]), peak

    k = max(start // data, 1)
    best = search_largest(probe, k, start_fits, start_peak, capacity=target.hbm_bytes)
    return best * data, tries


def search_largest(
    probe: Callable[[int], tuple[bool, int | None]],
    start: int,
    start_fits: bool,
    start_peak: int | None,
    *,
    capacity: int,
) -> int:
    """The largest k >= 1 with probe(k) fitting (0 if none), for peak memory growing with k.

    Keeps a bracket: lo fits, hi does not (None until a failure is seen). The next probe is
    the capacity's crossing of the line through the two largest fitting (k, peak) points
    (peak memory is close to affine in the batch: weights and optimiser state plus
    activations per example), at most 8 lo; without two points, or when the line points at or
    past a known failure, k doubles (no failure yet) or the bracket is bisected. The answer is
    always confirmed by probes (lo fits and lo + 1 does not), so a wrong guess costs compiles,
    never a wrong result; with an affine memory the search takes about three compiles after
    the recipe's.
    """
    fitting: dict[int, int] = {}
    if start_fits:
        lo, hi = start, None
        if start_peak is not None:
            fitting[start] = start_peak
    else:
        lo, hi = 0, start
    while hi is None or hi - lo > 1:
        guess = _affine_crossing(fitting, capacity)
        if lo == 0:  # nothing fits yet: halve towards one example per device
            k = max(hi // 2, 1)
        elif guess is not None and (hi is None or guess < hi):
            k = min(max(guess, lo + 1), 8 * lo)  # at most 8x: a huge batch compiles slowly
        else:  # no model, or the model overshoots a known failure: double / bisect
            k = 2 * lo if hi is None else (lo + hi) // 2
        ok, peak = probe(k)
        if ok:
            lo = k
            if peak is not None:
                fitting[k] = peak
        else:
            hi = k
            if k == 1:
                return 0
    return lo


def _affine_crossing(fitting: dict[int, int], capacity: int) -> int | None:
    """floor of the k where the line through the two largest fitting points reaches capacity."""
    if len(fitting) < 2:
        return None
    (k0, p0), (k1, p1) = sorted(fitting.items())[-2:]
    slope = (p1 - p0) / (k1 - k0)
    if slope <= 0:
        return None
    return int((capacity - p1) // slope) + k1
