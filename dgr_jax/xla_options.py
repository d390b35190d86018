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

`with fast_compile():` turns XLA:CPU's backend (LLVM) optimisations off for the programs jitted
inside it: for smoke runs, whose tiny models run a handful of steps and spend their time
compiling. Measured on 2 cores under load: the smoke ViT + DGR + OTDL train step compiles in
14.9 s instead of 24.6 s, its prediction in 2.2 s instead of 4.6 s. The executables run slower,
so real runs never use it (the ablation study's `:smoke` configs do).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import jax

# Enabled YNNPACK fusion kinds on XLA:CPU: single dot products only, so convolutions go to
# XLA's Eigen kernels. (A repeated enum; as a compiler option it takes one enum value name.)
CPU_OPTIONS: dict[str, str] = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}


# Added on the CPU inside `fast_compile()`: no LLVM optimisation of the generated code.
FAST_COMPILE_OPTIONS: dict[str, str] = {"xla_backend_optimization_level": "0"}
_fast_compile = False


@contextlib.contextmanager
def fast_compile(enabled: bool = True) -> Iterator[None]:
    """Within it, `options()` / `jit` compile for speed of compilation (module docstring)."""
    global _fast_compile
    previous, _fast_compile = _fast_compile, bool(enabled)
    try:
        yield
    finally:
        _fast_compile = previous


def options(backend: str | None = None) -> dict[str, str]:
    """The compiler options for `backend` (default: JAX's default backend); {} off the CPU."""
    name = backend or jax.default_backend()
    if name != "cpu":
        return {}
    return {**CPU_OPTIONS, **(FAST_COMPILE_OPTIONS if _fast_compile else {})}


def jit(fun: Callable, *, backend: str | None = None, **kwargs: Any) -> Callable:
    """`jax.jit(fun, **kwargs)` compiled with `options(backend)` (default: JAX's default backend).

    `backend` is the platform the program is compiled for when that is not the default one:
    `dgr_jax.aot` compiles for TPU / GPU devices described without being attached.
    """
    return jax.jit(fun, compiler_options=options(backend) or None, **kwargs)
