"""The train step as the trainer runs it, built once for the trainer and for `dgr_jax.aot`.

    program = build_train_program(config, mesh)
    state = jax.jit(program.init_fn, out_shardings=program.state_shardings)(seed)
    state, metrics = program.step(state, batch)
    program.step.lower(*program.abstract_inputs()).compile()   # no data, nothing allocated

Everything that decides the compiled program lives here: the model (compute dtype, remat), the
loss, the optimiser and its schedule, the state's sharding policy (`config.sharding`), the
batch sharding, donation and the XLA options of the mesh's platform. The mesh comes from the
caller: the trainer's covers the attached devices, `dgr_jax.aot`'s a described TPU slice or GPU
host, both built by `sharding.make_mesh(config.mesh, devices)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding

from dgr_jax import optim, sharding, steps, xla_options
from dgr_jax.losses import make_loss

# The trainer's batch: ImageNet-normalised images and metric depth (0 = invalid), as produced by
# `data.pipeline.train_iterator` and put on the mesh by the trainer's prefetcher.
BATCH_DTYPES = {"image": jnp.float32, "depth": jnp.float32}


@dataclasses.dataclass(frozen=True)
class TrainProgram:
    """The jitted train step with everything needed to create, restore or compile its inputs."""

    model_def: steps.ModelDef
    tx: optax.GradientTransformation
    init_fn: Callable[[Any], steps.State]  # seed -> fresh state (jit with state_shardings)
    abstract_state: steps.State  # ShapeDtypeStructs of the state, no sharding
    state_shardings: Any  # pytree of NamedSharding matching `abstract_state`
    batch_sharding: NamedSharding  # leading axis over "data"
    replicated: NamedSharding
    step: Callable  # jitted train_step(state, batch) -> (state, metrics), state donated
    batch_size: int  # global
    image_size: tuple[int, int]  # (H, W) of the training batch

    def abstract_inputs(self) -> tuple[steps.State, dict]:
        """(state, batch) as sharded ShapeDtypeStructs: what `step.lower` needs, no data."""

        def with_sharding(x, s):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)

        state = jax.tree.map(with_sharding, self.abstract_state, self.state_shardings)
        h, w = self.image_size
        shapes = {"image": (self.batch_size, h, w, 3), "depth": (self.batch_size, h, w)}
        batch = {
            k: jax.ShapeDtypeStruct(shape, BATCH_DTYPES[k], sharding=self.batch_sharding)
            for k, shape in shapes.items()
        }
        return state, batch


def platform_of(mesh: Mesh) -> str:
    """The platform ("cpu", "tpu", "cuda", ...) of the mesh's devices."""
    return mesh.devices.flat[0].platform


def accum_steps_of(config: ml_collections.ConfigDict) -> int:
    """`config.grad_accum_steps`: micro-batches per step (1 = no gradient accumulation)."""
    return int(config.get("grad_accum_steps", 1))


def check_batch(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
    """ValueError unless the global batch (and each micro-batch) divides over the data axis."""
    batch_size, data_size = int(config.batch_size), mesh.shape["data"]
    if batch_size % data_size:
        raise ValueError(
            f"batch_size={batch_size} is not divisible by the {data_size} data-parallel "
            f"devices; use a multiple of {data_size} (or set mesh.data)"
        )
    accum_steps = accum_steps_of(config)
    if accum_steps < 1 or batch_size % (data_size * accum_steps):
        raise ValueError(
            f"grad_accum_steps={accum_steps} with batch_size={batch_size} on "
            f"{data_size} data-parallel devices: every micro-batch must split evenly over the "
            f"devices, so batch_size must be a multiple of {data_size} x grad_accum_steps "
            f"(= {data_size * max(accum_steps, 1)}); each device then runs "
            "batch_size / (devices x grad_accum_steps) examples at a time"
        )


def build_train_program(config: ml_collections.ConfigDict, mesh: Mesh) -> TrainProgram:
    """The trainer's train step for `config` on `mesh` (raises ValueError on a bad batch)."""
    check_batch(config, mesh)
    model_def = steps.model_def_from_config(config)
    loss_fn = make_loss(config.loss)
    tx, schedule = optim.make_optimizer(config.optim, config.total_steps)

    # The seed is an argument, not a constant of the program, so runs that differ only in their
    # seed (the ablation study's) share one compiled init.
    def init_fn(seed):
        return steps.init_state(model_def, tx, seed)

    abstract = jax.eval_shape(init_fn, jax.ShapeDtypeStruct((), jnp.int32))
    state_sh = sharding.state_shardings(abstract, mesh, config.sharding)
    batch_sh = sharding.batch_sharding(mesh)
    repl = sharding.replicated(mesh)
    step = xla_options.jit(
        steps.make_train_step(
            model_def,
            loss_fn,
            tx,
            schedule,
            min_depth=config.loss.min_depth,
            max_depth=float(config.loss.get("max_depth", 0.0)),
            accum_steps=accum_steps_of(config),
        ),
        backend=platform_of(mesh),
        in_shardings=(state_sh, {"image": batch_sh, "depth": batch_sh}),
        out_shardings=(state_sh, repl),
        donate_argnums=(0,),
    )
    return TrainProgram(
        model_def=model_def,
        tx=tx,
        init_fn=init_fn,
        abstract_state=abstract,
        state_shardings=state_sh,
        batch_sharding=batch_sh,
        replicated=repl,
        step=step,
        batch_size=int(config.batch_size),
        image_size=(int(config.input.size[0]), int(config.input.size[1])),
    )
