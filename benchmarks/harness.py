"""Shared pieces of the benchmark scripts (ours): machine facts, interleaved timing, train steps.

Timing protocol (every ratio in benchmarks/README.md; `dgr_jax/timing.py`, which the ablation
study shares): the sides of a comparison run in one process, interleaved A B B A A B ... after
warm-up (compilation, first-call allocations), and each side reports the median of its repeats.
Interleaving spreads slow drifts of a shared machine (other jobs starting or stopping) over both
sides; the median drops isolated stalls.
The 1-, 5- and 15-minute load averages are recorded before and after, so a reader can tell a
quiet run from a contended one.

`TrainStep` builds the train step exactly as the trainer does (steps.make_train_step with the
config's model, loss and optimiser, the state donated) on a synthetic batch, so a timed step is
what a user's run executes, minus the input pipeline.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dgr_jax import jsonio, optim, protocol, steps, xla_options
from dgr_jax.losses import make_loss
from dgr_jax.timing import interleave_order, time_interleaved  # noqa: F401  (re-exported)


# --------------------------------------------------------------------------------------------
# Machine facts.
# --------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> dict[str, Any]:
    """CPU model, cores, accelerator, library versions and the load average right now."""
    info = {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": jax.devices()[0].device_kind,
        "num_devices": jax.device_count(),
        "python": platform.python_version(),
        "load_avg_start": load_average(),
    }
    if "XLA_FLAGS" in os.environ:
        info["xla_flags"] = os.environ["XLA_FLAGS"]
    return info


def emit(result: Mapping[str, Any]) -> None:
    """Print the result as the last line: one JSON object (load average at the end added)."""
    print(jsonio.dumps({**result, "load_avg_end": load_average()}), flush=True)


# --------------------------------------------------------------------------------------------
# Timing.
# --------------------------------------------------------------------------------------------
def median_ms(seconds: Sequence[float]) -> float:
    return round(1e3 * statistics.median(seconds), 1)


def spread(seconds: Sequence[float]) -> float:
    """(max - min) / median of the repeats: how noisy this side was."""
    return round((max(seconds) - min(seconds)) / statistics.median(seconds), 3)


def summary(times: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """{side: {"median_ms", "spread", "runs_ms"}} for the JSON output."""
    return {
        name: {
            "median_ms": median_ms(t),
            "spread": spread(t),
            "runs_ms": [round(1e3 * x, 1) for x in t],
        }
        for name, t in times.items()
    }


# --------------------------------------------------------------------------------------------
# Synthetic batches and config resizing.
# --------------------------------------------------------------------------------------------
def smooth_depth(rng: np.random.Generator, height: int, width: int, max_depth: float):
    """An indoor-like depth map: a floor-to-wall ramp, a slope, boxes; (H, W) float32 metres."""
    yy, xx = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    far = rng.uniform(0.4, 0.9) * max_depth
    depth = 1.0 + (far - 1.0) * (1.0 - yy) ** 1.5 + rng.uniform(-1, 1) * xx
    for _ in range(rng.integers(2, 5)):
        cy, cx = rng.uniform(0.2, 0.9), rng.uniform(0.1, 0.9)
        hy, hx = rng.uniform(0.05, 0.25), rng.uniform(0.05, 0.25)
        box = (np.abs(yy - cy) < hy) & (np.abs(xx - cx) < hx)
        depth = np.where(box, np.minimum(depth, rng.uniform(0.6, 4.0) + 0.5 * (yy - cy)), depth)
    return np.clip(depth, 0.5, max_depth).astype(np.float32)


def synthetic_batch(
    batch: int, size: Sequence[int], *, max_depth: float = protocol.NYU_MAX_DEPTH, seed: int = 0
) -> dict[str, np.ndarray]:
    """{"image": (B, H, W, 3) normalised float32, "depth": (B, H, W) float32 metres}."""
    rng = np.random.default_rng(seed)
    height, width = size
    image = rng.standard_normal((batch, height, width, 3)).astype(np.float32)
    depth = np.stack([smooth_depth(rng, height, width, max_depth) for _ in range(batch)])
    return {"image": image, "depth": depth}


def resized_config(
    config: ml_collections.ConfigDict, size: Sequence[int] | None, batch: int | None = None
) -> ml_collections.ConfigDict:
    """A copy of `config` at input `size` (ViT position grid and OT grid follow) and `batch`."""
    config = ml_collections.ConfigDict(config.to_dict())
    if batch is not None:
        config.batch_size = int(batch)
    if size is None or tuple(size) == tuple(config.input.size):
        return config
    old = tuple(config.input.size)
    config.input.size = tuple(size)
    if "image_size" in config.model.encoder:
        config.model.encoder.image_size = tuple(size)
    if "otdl" in config.loss:  # keep the OT grid at the same fraction of the input
        grid = config.loss.otdl.grid_size
        config.loss.otdl.grid_size = tuple(g * s // o for g, s, o in zip(grid, size, old))
    return config


def pair_args(description: str, batch: int, quick_batch: int) -> tuple[int, int, int, bool]:
    """(batch, size, repeats, quick) from the command line of a JAX-vs-PyTorch DPT comparison."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help=f"batch {quick_batch} at 224x224, 3 repeats"
    )
    parser.add_argument(
        "--batch", type=int, default=None, help=f"default {batch} ({quick_batch} with --quick)"
    )
    parser.add_argument("--size", type=int, default=None, help="default 256 (224 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="default 7 (3 with --quick)")
    args = parser.parse_args()
    return (
        args.batch or (quick_batch if args.quick else batch),
        args.size or (224 if args.quick else 256),
        args.repeats or (3 if args.quick else 7),
        args.quick,
    )


# --------------------------------------------------------------------------------------------
# The train step as the trainer runs it.
# --------------------------------------------------------------------------------------------
def jitted_train_step(
    config: ml_collections.ConfigDict,
    model_def: steps.ModelDef | None = None,
    *,
    xla_default: bool = False,
):
    """(jitted step with the state donated, init function of the state): the trainer's step,
    compiled with `dgr_jax.xla_options` as the trainer does, or with XLA's defaults."""
    model_def = model_def or steps.model_def_from_config(config)
    loss_fn = make_loss(config.loss)
    tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
    step = (jax.jit if xla_default else xla_options.jit)(
        steps.make_train_step(
            model_def,
            loss_fn,
            tx,
            schedule,
            min_depth=config.loss.min_depth,
            accum_steps=int(config.get("grad_accum_steps", 1)),
        ),
        donate_argnums=(0,),
    )
    return step, tx, (lambda: steps.init_state(model_def, tx, config.seed))


def compile_abstract(config: ml_collections.ConfigDict):
    """The config's train step compiled from shapes alone (no state is allocated)."""
    step, _, init = jitted_train_step(config)
    height, width = config.input.size
    batch = {
        "image": jax.ShapeDtypeStruct((config.batch_size, height, width, 3), jnp.float32),
        "depth": jax.ShapeDtypeStruct((config.batch_size, height, width), jnp.float32),
    }
    return step.lower(jax.eval_shape(init), batch).compile()


def memory_gib(compiled) -> dict[str, float] | None:
    """XLA's memory analysis of a compiled step: arguments, outputs, temporaries, in GiB."""
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    fields = ("argument", "output", "alias", "temp")
    return {f: round(getattr(stats, f"{f}_size_in_bytes") / 2**30, 3) for f in fields}


@dataclasses.dataclass
class TrainStep:
    """One compiled train step of a config on a fixed synthetic batch; `run()` blocks."""

    config: ml_collections.ConfigDict
    compiled: Any
    state: dict
    batch: dict
    compile_s: float

    @classmethod
    def create(
        cls,
        config: ml_collections.ConfigDict,
        *,
        model_def: steps.ModelDef | None = None,
        params: dict | None = None,
        seed: int = 0,
        xla_default: bool = False,
        compiler_options: dict[str, Any] | None = None,
    ) -> TrainStep:
        """Build the config's step; `model_def`/`params` replace the config's model (converted).
        The step is compiled as the trainer compiles it (`dgr_jax.xla_options`), or with XLA's
        default options if `xla_default`; `compiler_options` are further XLA debug options for
        this compilation only (e.g. {"xla_cpu_experimental_ynn_fusion_type": ""})."""
        step, tx, init = jitted_train_step(config, model_def, xla_default=xla_default)
        state = jax.jit(init)()
        if params is not None:
            # Copies: the step donates its state, and the caller may build several steps.
            state["params"], state["rest"] = jax.tree.map(jnp.copy, params)
            state["opt_state"] = jax.jit(tx.init)(state["params"])
        max_depth = float(config.model.head.get("max_depth", protocol.NYU_MAX_DEPTH))
        host = synthetic_batch(config.batch_size, config.input.size, max_depth=max_depth, seed=seed)
        batch = {k: jnp.asarray(v) for k, v in host.items()}
        start = time.perf_counter()
        compiled = step.lower(state, batch).compile(compiler_options=compiler_options)
        return cls(config, compiled, state, batch, time.perf_counter() - start)

    @property
    def flops(self) -> float | None:
        """FLOPs of one step from XLA's cost analysis (None if the backend gives none)."""
        cost = self.compiled.cost_analysis()
        if isinstance(cost, list | tuple):  # older jax: one dict per computation
            cost = cost[0] if cost else {}
        value = (cost or {}).get("flops")
        return None if value is None else float(value)

    def run(self, batch: dict | None = None, *, block: bool = True) -> dict:
        """One step on `batch` (default: the fixed synthetic one); the state is donated and
        replaced. With `block` (default) it returns once the metrics are ready; without, it
        returns right after dispatch, as the trainer's loop does."""
        self.state, metrics = self.compiled(self.state, self.batch if batch is None else batch)
        return jax.block_until_ready(metrics) if block else metrics

    @property
    def images_per_step(self) -> int:
        return int(self.batch["image"].shape[0])

    @property
    def memory_gib(self) -> dict[str, float] | None:
        return memory_gib(self.compiled)
