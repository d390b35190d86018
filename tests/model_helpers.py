"""Helpers shared by the model tests (not collected: no test_ prefix)."""

import jax
import numpy as np
from flax import nnx

from dgr_jax.convert.torch_layout import assign_pure_dict, flatten


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


def materialize(module_fn, seed: int = 0):
    """Build `module_fn()` abstractly and fill it with cheap deterministic values.

    Skips the per-shape compilation of random initialisers (seconds per model on CPU) for tests
    about the forward pass rather than the initialisation: kernels ~ N(0, 1/fan_in), norm
    scales and BatchNorm variances 1, biases and means ~ N(0, 0.1^2)/0, embeddings ~ N(0, 0.02^2).
    """
    model = nnx.eval_shape(module_fn)
    rs = np.random.RandomState(seed)
    for path, var in nnx.to_flat_state(nnx.state(model)):
        name, shape = str(path[-1]), var.shape
        if name in ("scale", "var"):
            value = np.ones(shape)
        elif name == "mean":
            value = np.zeros(shape)
        elif name == "bias":
            value = 0.1 * rs.randn(*shape)
        elif name == "kernel":
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            value = rs.randn(*shape) / np.sqrt(fan_in)
        else:
            value = 0.02 * rs.randn(*shape)
        owner = model
        for p in path[:-1]:
            owner = owner[p] if isinstance(p, int) else getattr(owner, p)
        getattr(owner, name).set_value(jax.numpy.asarray(value, var.dtype))
    return model


def random_fill(model: nnx.Module, seed: int = 0) -> nnx.Module:
    """Fill an (abstract) model with informative random values, fast (numpy, no XLA init)."""
    rs = np.random.RandomState(seed)
    pure = {}
    for path, leaf in flatten(nnx.to_pure_dict(nnx.state(model))).items():
        shape, name = leaf.shape, path[-1]
        if name == "kernel":
            value = rs.randn(*shape) / np.sqrt(np.prod(shape[:-1]))
        elif name == "scale":
            value = 1.0 + 0.1 * rs.randn(*shape)
        elif name == "var":
            value = 0.5 + rs.rand(*shape)
        elif name in ("bias", "mean"):
            value = 0.05 * rs.randn(*shape)
        else:  # relative position bias tables
            value = 0.5 * rs.randn(*shape)
        pure[path] = value.astype(np.float32)
    assign_pure_dict(model, pure)
    return model
