"""XLA compiler options of this project's compiled steps, chosen per backend, and `jit` with them.

XLA:CPU (jaxlib 0.10.2) hands dot products and convolutions to YNNPACK by default. YNNPACK's
convolution is fine forward but slow for the two backward convolutions of a 3x3 layer, most
of all the weight gradient, which XLA writes as a convolution whose window is the whole image
and whose contraction runs over the batch: that runs at 20-60 GFLOP/s, on one core at a time.
XLA's own (Eigen) convolution kernels are 2-4x faster there, while YNNPACK stays the faster
library for the transformer's matmuls. So on the CPU we keep YNNPACK for dots only.
Measured on 2 Sapphire Rapids cores, float32 (`benchmarks/train_step_vs_torch.py`, whose JSON
carries both sides as `jax_ms` and `jax_xla_default_ms`): the ViT-S DPT train step at batch 4,
256x256 goes from 2.65 s to 1.99 s; in isolation, the weight gradient of a 3x3 64->32
convolution over 4x256x256 from 403 ms to 148 ms (PyTorch/oneDNN: 67 ms).

GPU and TPU compilers ignore `xla_cpu_*` options, so `options()` is empty there and
`jit(fn, ...)` is plain `jax.jit`. Every jitted function that runs a model (the train step,
prediction, the sparse-pixel study's mask step, soft masks and masked predictions) is built with
`jit` from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

# Enabled YNNPACK fusion kinds on XLA:CPU: single dot products only, so convolutions go to
# XLA's Eigen kernels. (A repeated enum; as a compiler option it takes one enum value name.)
CPU_OPTIONS: dict[str, str] = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}


def options(backend: str | None = None) -> dict[str, str]:
    """The compiler options for `backend` (default: JAX's default backend); {} off the CPU."""
    name = backend or jax.default_backend()
    return dict(CPU_OPTIONS) if name == "cpu" else {}


def jit(fun: Callable, **kwargs: Any) -> Callable:
    """`jax.jit(fun, **kwargs)` compiled with `options()` for the default backend."""
    return jax.jit(fun, compiler_options=options() or None, **kwargs)
