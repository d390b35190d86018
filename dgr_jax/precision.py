"""The matmul precision of evaluation: every dot and convolution of the prediction program.

On a TPU, XLA computes a float32 dot or convolution at the DEFAULT precision as one bfloat16
pass on the matrix unit (operands rounded to bfloat16, products accumulated in float32); recent
NVIDIA GPUs may use TF32 the same way. Published PyTorch numbers were computed in float32, so
evaluation (eval.py, the evaluators during training, `python -m dgr_jax.predict`) runs at
`config.eval_precision`:

  "highest"  every dot / convolution at `lax.Precision.HIGHEST` (float32 products; the default)
  "high"     `lax.Precision.HIGH` (three bfloat16 passes on a TPU)
  "default"  the backend's own default (one bfloat16 pass on a TPU), whatever
             `jax_default_matmul_precision` says globally: faster, and the metrics may move
             (benchmarks/README.md, "Evaluation precision")

The setting is `jax.default_matmul_precision` around the tracing of the prediction function, so
it reaches every `dot_general` / `conv_general_dilated` traced with `precision=None`: flax's
layers, `jnp.einsum` / `@`, the custom convolutions and attention of `dgr_jax/models`, and the
bodies of custom VJPs. Ops that name a precision themselves keep it (in this package only
`jax.image.resize`, HIGHEST, and the OTDL loss, which is not evaluated). Training is untouched:
`config.dtype` and the global JAX setting decide there.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

EVAL_PRECISIONS = ("highest", "high", "default")
DEFAULT_EVAL_PRECISION = "highest"


def eval_precision(config: Any) -> str:
    """`config.eval_precision` checked ("highest" for configs written before the key existed)."""
    name = str(config.get("eval_precision", DEFAULT_EVAL_PRECISION))
    return check(name)


def check(name: str) -> str:
    """`name` if it is one of EVAL_PRECISIONS, else a ValueError naming the valid ones."""
    if name not in EVAL_PRECISIONS:
        raise ValueError(f"eval_precision={name!r}; valid: {', '.join(EVAL_PRECISIONS)}")
    return name


@contextlib.contextmanager
def matmul_precision(name: str) -> Iterator[None]:
    """Within it, dots and convolutions traced with `precision=None` get `name`'s precision.

    "default" clears any global `jax_default_matmul_precision`, so the backend decides.
    """
    import jax  # here, so that the names above come without importing JAX (predict's --help)

    value = None if check(name) == "default" else name
    with jax.default_matmul_precision(value):
        yield


def with_matmul_precision(fn: Callable, name: str) -> Callable:
    """`fn` whose body is traced under `matmul_precision(name)` (wrap before `jax.jit`)."""
    check(name)

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with matmul_precision(name):
            return fn(*args, **kwargs)

    return wrapped
