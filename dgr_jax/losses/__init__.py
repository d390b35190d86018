"""Training losses and `make_loss`, which assembles the weighted sum named in `config.loss`.

    loss_fn = make_loss(config.loss)
    total, terms = loss_fn(pred, gt, valid)   # pred (B,H,W,1) or (B,H,W); gt, valid (B,H,W)

`config.loss.terms` maps term names (registered in `dgr_jax.registry.LOSSES`: "silog", "otdl",
"mse", "l1") to weights; `config.loss.<name>`, where present, holds that term's static keyword
arguments. Terms with weight 0 are not computed. `valid` is computed by the caller (the trainer:
gt > loss.min_depth, and any dataset mask); the terms never re-threshold. Every term is a
function of sums over the batch (`loss_fn.stats` / `loss_fn.finish`, dgr_jax/losses/sums.py),
which gradient accumulation uses to reproduce the global batch's loss exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from dgr_jax.losses import depth, ot  # noqa: F401  (importing registers the terms)
from dgr_jax.registry import LOSSES

LossFn = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


def _to_dict(x: Any) -> dict[str, Any]:
    """A ConfigDict / FrozenConfigDict / Mapping (or None) as a plain dict."""
    if x is None:
        return {}
    if hasattr(x, "to_dict"):
        return x.to_dict()
    return dict(x)


def make_loss(loss_cfg: Mapping[str, Any] | Any) -> LossFn:
    """Build `loss_fn(pred, gt, valid) -> (total, terms)` from `config.loss`.

    Args:
      loss_cfg: has `terms` (name -> weight) and, per term, an optional sub-dict of keyword
        arguments under the term's name (e.g. `loss_cfg.otdl.epsilon`).

    Returns:
      A pure, jit-able function returning the float32 scalar total and a dict of the unweighted
      float32 scalar value of each computed term.

    Raises:
      KeyError: a term name is not registered (the message lists the valid names).
      ValueError: no term has a non-zero weight.
    """
    weights = {name: float(w) for name, w in _to_dict(loss_cfg["terms"]).items()}
    terms = []
    for name, weight in weights.items():
        fn = LOSSES.get(name)  # raises with the valid names
        if weight == 0.0:
            continue
        kwargs = _to_dict(loss_cfg[name]) if name in loss_cfg else {}
        terms.append((name, weight, fn, kwargs))
    if not terms:
        raise ValueError(f"loss.terms has no term with a non-zero weight: {weights}")

    def loss_fn(
        pred: jax.Array, gt: jax.Array, valid: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        values = {name: fn(pred, gt, valid, **kwargs) for name, _, fn, kwargs in terms}
        total = sum(weight * values[name] for name, weight, _, _ in terms)
        return jnp.asarray(total, jnp.float32), values

    # Gradient accumulation (dgr_jax/steps.py) needs every term as a function of batch sums
    # (dgr_jax/losses/sums.py): loss_fn.stats gives them for one micro-batch, loss_fn.finish
    # turns their sum over micro-batches into (total, terms) exactly as loss_fn would.
    if all(hasattr(fn, "stats") for _, _, fn, _ in terms):

        def stats(pred: jax.Array, gt: jax.Array, valid: jax.Array) -> dict[str, dict]:
            return {name: fn.stats(pred, gt, valid, **kwargs) for name, _, fn, kwargs in terms}

        def finish(summed: dict[str, dict]) -> tuple[jax.Array, dict[str, jax.Array]]:
            values = {name: fn.finish(summed[name], **kwargs) for name, _, fn, kwargs in terms}
            total = sum(weight * values[name] for name, weight, _, _ in terms)
            return jnp.asarray(total, jnp.float32), values

        loss_fn.stats, loss_fn.finish = stats, finish
    return loss_fn


__all__ = ["make_loss"]
