"""Training a mask network G against a frozen depth network N (method.md section 2).

    state = init_mask_state(mask_def, tx, seed)
    step = jax.jit(make_mask_train_step(mask_def, arm.predict_fn(), tx), ...)
    state, metrics = step(state, arm.params, arm.rest, images, lam)

[Hu et al. 2019] M = G(I); Y = N(I) with no gradient; Y' = N(I * M); loss `mask_loss.mask_loss`;
Adam at 1e-4. [ours] The step is a pure function of (mask state, frozen params, batch, lambda):
gradients are taken with respect to the mask parameters only and the frozen parameters pass
through `jax.lax.stop_gradient`, so N cannot change; lambda is a traced argument, so one
compilation serves the whole lambda sweep. The batch is sharded over the mesh's `data` axis and
the state replicated, like the trainer's data-parallel step. The learning rate is a config field
(the synthetic study uses 1e-3: Hu et al.'s 1e-4 is for thousands of steps on NYU; a few hundred
steps on small images need the larger step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dgr_jax.analysis.sparse_pixel.mask_loss import mask_loss
from dgr_jax.analysis.sparse_pixel.sparsity import masked_input
from dgr_jax.models.mask_net import MaskNet
from dgr_jax.steps import ModelDef

State = dict[str, Any]


def mask_model_def(cfg: ml_collections.ConfigDict) -> ModelDef:
    """ModelDef of the mask network from `config.mask` (widths, logit_bias_init)."""
    widths, bias = tuple(cfg.widths), float(cfg.logit_bias_init)
    return ModelDef.create(lambda rngs: MaskNet(widths, logit_bias_init=bias, rngs=rngs))


def init_mask_state(mask_def: ModelDef, tx: optax.GradientTransformation, seed: int) -> State:
    params, rest = mask_def.init(jax.random.PRNGKey(seed))
    return {
        "params": params,
        "rest": rest,
        "opt_state": tx.init(params),
        "step": jnp.zeros((), jnp.int32),
    }


def un_normalise(images: jax.Array) -> jax.Array:
    """ImageNet-normalised (the input pipeline's output) -> [0, 1] RGB."""
    from dgr_jax import protocol

    mean = jnp.asarray(protocol.IMAGENET_MEAN, jnp.float32)
    std = jnp.asarray(protocol.IMAGENET_STD, jnp.float32)
    return images * std + mean


def make_mask_loss_fn(
    mask_def: ModelDef, frozen_predict: Callable[[Any, Any, jax.Array], jax.Array]
) -> Callable:
    """loss_fn(params, rest, frozen_params, frozen_rest, images, lam) -> (loss, terms).

    `images`: ImageNet-normalised (B, H, W, 3); the mask applies to their [0, 1] RGB. The
    frozen network's outputs carry no gradient to its parameters (`frozen_predict` stops it).
    """

    def loss_fn(params, rest, frozen_params, frozen_rest, images, lam):
        rgb01 = un_normalise(images)
        mask = mask_def.merge(params, rest)(images)  # (B, H, W)
        full = jax.lax.stop_gradient(frozen_predict(frozen_params, frozen_rest, images))
        masked = frozen_predict(frozen_params, frozen_rest, masked_input(rgb01, mask))
        return mask_loss(masked, full, mask, lam)

    return loss_fn


def make_mask_train_step(
    mask_def: ModelDef,
    frozen_predict: Callable[[Any, Any, jax.Array], jax.Array],
    tx: optax.GradientTransformation,
) -> Callable:
    """step(state, frozen_params, frozen_rest, images, lam) -> (state, metrics).

    Differentiates with respect to the mask parameters only (argnums=0).
    """
    loss_fn = make_mask_loss_fn(mask_def, frozen_predict)

    def step(state: State, frozen_params, frozen_rest, images, lam) -> tuple[State, dict]:
        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"], state["rest"], frozen_params, frozen_rest, images, lam
        )
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new_state = {
            "params": optax.apply_updates(state["params"], updates),
            "rest": state["rest"],
            "opt_state": opt_state,
            "step": state["step"] + 1,
        }
        return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads), **terms}

    return step


def train_mask_net(
    step_fn: Callable,
    state: State,
    frozen: tuple[Any, Any],
    batches,
    *,
    lam: float,
    num_steps: int,
    log_every: int,
    log: Callable[[str], None] = print,
    prefix: str = "",
) -> tuple[State, list[dict]]:
    """Run `num_steps` steps; returns the final state and the logged metrics (host floats).

    Args:
        step_fn: the jitted step of `make_mask_train_step`.
        state: a fresh mask state (replicated).
        frozen: (params, rest) of the frozen depth network.
        batches: an iterator of sharded ImageNet-normalised image batches.
        lam: lambda of the sparsity penalty.
        num_steps, log_every: schedule and logging.
    """
    lam_arr = jnp.asarray(lam, jnp.float32)
    history, pending = [], []
    for i in range(1, num_steps + 1):
        state, metrics = step_fn(state, frozen[0], frozen[1], next(batches), lam_arr)
        pending.append(metrics)
        if i % log_every == 0 or i == num_steps:
            host = jax.device_get(pending)
            pending = []
            row = {"step": i, **{k: float(np.mean([h[k] for h in host])) for k in host[-1]}}
            if not np.isfinite(row["loss"]):
                raise FloatingPointError(f"{prefix}mask training: non-finite loss at step {i}")
            history.append(row)
            log(
                f"{prefix}step {i}/{num_steps} | loss {row['loss']:.4f} | rec {row['rec']:.4f} "
                f"| mean mask {row['mask_mean']:.3f}"
            )
    return state, history
