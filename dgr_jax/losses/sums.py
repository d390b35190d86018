"""Loss terms as functions of sums over the batch, which gradient accumulation relies on.

Every training term is a ratio of sums over the batch: SILog of the pooled sums of d and d^2
over the valid pixels, MSE / L1 of pooled sums, OTDL of the summed per-sample losses over the
count of samples with valid pixels. A term registered with `with_batch_sums` also exposes
  fn.stats(pred, gt, valid, **kwargs) -> dict of float32 scalars (sums over the batch)
  fn.finish(stats, **kwargs) -> scalar, with fn(...) == fn.finish(fn.stats(...))
so a batch split into micro-batches gives exactly the global batch's value (and, by the chain
rule, gradient) from the summed statistics (dgr_jax/steps.py, `accum_steps`). A per-micro-batch
loss averaged over micro-batches would not: pooled SILog of a quarter batch is another loss.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def with_batch_sums(stats: Callable, finish: Callable) -> Callable[[Callable], Callable]:
    """Decorator: attach the term's `stats` / `finish` pair (see the module docstring)."""

    def decorate(fn: Callable) -> Callable:
        fn.stats, fn.finish = stats, finish
        return fn

    return decorate


def masked_sums(x: jax.Array, valid: jax.Array) -> dict[str, jax.Array]:
    """Sums of x and x^2 over the valid pixels of the whole batch, and the valid-pixel count."""
    x = jnp.where(valid, x, 0.0)  # invalid pixels may hold anything, even inf
    return {
        "sum": jnp.sum(x),
        "sum_sq": jnp.sum(x * x),
        "count": jnp.sum(valid.astype(jnp.float32)),
    }


def masked_means(sums: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """(mean of x, mean of x^2) from `masked_sums`; 0 when no pixel is valid."""
    denom = jnp.maximum(sums["count"], 1.0)
    return sums["sum"] / denom, sums["sum_sq"] / denom
