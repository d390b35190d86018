"""The two frozen depth networks of the sparse-pixel study.

[paper] The Transformer and CNN depth networks are trained "under identical data processing and
loss conditions" (method.md section 1); `dgr_jax.analysis.common.runs` resolves, checks and
trains them. [ours] The frozen model is restored the way `dgr_jax.evaluate.evaluate_checkpoint`
does (abstract state, shardings, orbax restore of the latest step) and its parameters are only
ever passed as arguments with `jax.lax.stop_gradient`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dgr_jax import checkpoint, optim, sharding, steps


@dataclasses.dataclass
class FrozenArm:
    """A restored, frozen depth network of one arm."""

    name: str  # the study's key, e.g. "transformer"
    label: str  # for figures, e.g. "Transformer (ViT-Ti/16)"
    config: ml_collections.ConfigDict
    workdir: str
    step: int
    model_def: steps.ModelDef
    params: Any  # replicated on the mesh; never updated
    rest: Any

    @property
    def num_params(self) -> int:
        return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.params))

    def predict_fn(self) -> Callable[[Any, Any, jax.Array], jax.Array]:
        """predict(params, rest, normalised images) -> depth (B, H, W), no gradient to params."""
        predict = steps.make_predict(self.model_def)

        def frozen_predict(params, rest, images):
            params, rest = jax.lax.stop_gradient((params, rest))
            return predict(params, rest, images)[..., 0]

        return frozen_predict


def restore_frozen(
    name: str, label: str, config: ml_collections.ConfigDict, workdir: str, mesh
) -> FrozenArm:
    """Restore the latest checkpoint of `workdir`, replicated on `mesh`."""
    model_def = steps.model_def_from_config(config)
    tx, _ = optim.make_optimizer(config.optim, config.total_steps)
    abstract = jax.eval_shape(lambda: steps.init_state(model_def, tx, config.seed))
    state_sh = sharding.state_shardings(abstract, mesh, "data_parallel")
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
    try:
        step = ckpt.resolve("latest")
        state, _ = ckpt.restore(step, checkpoint.abstract_with_shardings(abstract, state_sh))
    finally:
        ckpt.close()
    return FrozenArm(
        name=name,
        label=label,
        config=config,
        workdir=workdir,
        step=int(step),
        model_def=model_def,
        params=state["params"],
        rest=state["rest"],
    )


def clamp_depth(depth: jax.Array, min_depth: float, max_depth: float) -> jax.Array:
    """The evaluator's clamp: [min, max], NaN -> min."""
    return jnp.where(jnp.isnan(depth), min_depth, jnp.clip(depth, min_depth, max_depth))
