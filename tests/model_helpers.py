"""Helpers shared by the model tests (not collected: no test_ prefix)."""

import jax
import numpy as np
from flax import nnx


def rngs(seed: int = 0) -> nnx.Rngs:
    """Parameter RNGs for tests. "rbg" keys compile about 8x faster than threefry on CPU, and
    random-init compilation (one per parameter shape) otherwise dominates tiny-model tests."""
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def abstract_call(module_fn, *args, **kwargs):
    """Output shapes of `module_fn()(*args, **kwargs)` without compiling or running anything."""
    model = nnx.eval_shape(module_fn)
    return nnx.eval_shape(lambda m, *a: m(*a, **kwargs), model, *args)


def max_rel_err(ours, ref) -> float:
    """max|ours - ref| / max|ref| (the parity tests' relative error); max|ours| if ref == 0."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    scale = np.max(np.abs(ref))
    return float(np.max(np.abs(ours - ref)) / (scale if scale > 0 else 1.0))
