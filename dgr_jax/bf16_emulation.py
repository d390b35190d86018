"""One bfloat16 matrix-unit pass, emulated where float32 is exact (the CPU).

A TPU computes a float32 dot or convolution at DEFAULT precision as one pass on its matrix unit:
both operands rounded to bfloat16 (8 significant bits), products exact, accumulation in float32.
XLA:CPU ignores the precision attribute and always computes in float32, so the TPU's numbers
cannot be had on a CPU by asking for DEFAULT. `one_bf16_pass(fn)` traces `fn` as
`config.eval_precision="default"` does (no global matmul precision) and re-evaluates its jaxpr
with every `dot_general` and `conv_general_dilated` operand that runs at DEFAULT precision
rounded to bfloat16 (then a float32 product at HIGHEST, output dtype unchanged). Operands of ops
that ask for more themselves (HIGH, HIGHEST, e.g. `jax.image.resize`) stay float32, as on the
TPU; every other op is as traced. Applied to a model's prediction it gives what
`eval_precision="default"` computes on a TPU, up to the order of the float32 accumulation.

Higher-order primitives: calls (jit, custom_jvp / custom_vjp, checkpoint) are inlined (forward
only: the result is for evaluation, not differentiation); loops and conditionals (scan,
while, cond) get their bodies rewritten the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core

ROUNDED_PRIMITIVES = ("dot_general", "conv_general_dilated")
# Call-like primitives whose body is evaluated in place, and the parameter holding it.
_INLINED = {
    "pjit": "jaxpr",
    "jit": "jaxpr",
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr",
    "checkpoint": "jaxpr",
    "remat": "jaxpr",
}
_HIGHEST = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)


def round_to_bfloat16(x: jax.Array) -> jax.Array:
    """float32 values rounded to the nearest bfloat16 (kept float32); other dtypes unchanged."""
    if x.dtype != jnp.float32:
        return x
    return x.astype(jnp.bfloat16).astype(jnp.float32)


def _one_pass_operands(precision: Any) -> tuple[bool, bool]:
    """Which of the two operands a TPU rounds to bfloat16 at this `precision` parameter."""
    if precision is None:
        return True, True
    if isinstance(precision, tuple) and len(precision) == 2:
        return tuple(p in (None, jax.lax.Precision.DEFAULT) for p in precision)
    raise NotImplementedError(f"dot algorithm {precision!r}: no one-pass emulation")


def one_bf16_pass(fn: Callable) -> Callable:
    """`fn` with its dots and convolutions computed from bfloat16-rounded operands (module doc).

    The result is traceable (jit it as the original).
    """

    def emulated(*args):
        with jax.default_matmul_precision(None):  # as eval_precision="default" traces it
            closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        out = eval_closed(closed, jax.tree.leaves(args))
        return jax.tree.unflatten(jax.tree.structure(out_shape), out)

    return emulated


def eval_closed(closed: core.ClosedJaxpr, args: Sequence[Any]) -> list[Any]:
    """Evaluate a closed jaxpr with the rounding of `one_bf16_pass`."""
    return _eval(closed.jaxpr, closed.consts, args)


def _rewrite(closed: core.ClosedJaxpr) -> core.ClosedJaxpr:
    """The same function as a new closed jaxpr, with the rounding inside."""
    avals = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in closed.in_avals]
    return jax.make_jaxpr(lambda *a: eval_closed(closed, a))(*avals)


def _rewrite_param(value: Any) -> Any:
    if isinstance(value, core.ClosedJaxpr):
        return _rewrite(value)
    if isinstance(value, core.Jaxpr):
        raise NotImplementedError("an open jaxpr parameter outside the inlined call primitives")
    if isinstance(value, tuple) and any(isinstance(v, core.ClosedJaxpr) for v in value):
        return tuple(_rewrite_param(v) for v in value)
    return value


def _eval(jaxpr: core.Jaxpr, consts: Sequence[Any], args: Sequence[Any]) -> list[Any]:
    env: dict[Any, Any] = {}

    def read(v):
        return v.val if isinstance(v, core.Literal) else env[v]

    for var, value in zip(jaxpr.constvars, consts):
        env[var] = value
    for var, value in zip(jaxpr.invars, args):
        env[var] = value
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if name in ROUNDED_PRIMITIVES:
            rounds = _one_pass_operands(eqn.params.get("precision"))
            operands = [round_to_bfloat16(x) if r else x for x, r in zip(invals, rounds)]
            params = {**eqn.params, "precision": _HIGHEST}
            outvals = eqn.primitive.bind(*operands, **params)
        elif name in _INLINED:
            body = eqn.params[_INLINED[name]]
            if isinstance(body, core.ClosedJaxpr):
                outvals = _eval(body.jaxpr, body.consts, invals)
            else:
                outvals = _eval(body, [], invals)
        else:
            params = {k: _rewrite_param(v) for k, v in eqn.params.items()}
            bind_params = dict(eqn.primitive.get_bind_params(params))
            subfuns = bind_params.pop("subfuns", ())
            outvals = eqn.primitive.bind(*subfuns, *invals, **bind_params)
        if not eqn.primitive.multiple_results:
            outvals = [outvals]
        for var, value in zip(eqn.outvars, outvals):
            if not isinstance(var, core.DropVar):
                env[var] = value
    return [read(v) for v in jaxpr.outvars]
