"""Start training from converted weights (`--config.init_from=DIR`).

`DIR` is written by `python -m dgr_jax.convert ...`; its parameters (and BatchNorm statistics)
replace the freshly initialised ones. The config given to train.py / eval.py must describe the
same architecture: any path or shape that does not match is listed in the error.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(_flatten(value, path))
        else:
            out[path] = value
    return out


def _check_compatible(name: str, target: dict, loaded: dict) -> None:
    want, got = _flatten(target), _flatten(loaded)
    missing = sorted(set(want) - set(got))
    unexpected = sorted(set(got) - set(want))
    shapes = [
        f"{k}: model {tuple(want[k].shape)} vs weights {tuple(np.shape(got[k]))}"
        for k in sorted(set(want) & set(got))
        if tuple(want[k].shape) != tuple(np.shape(got[k]))
    ]
    if missing or unexpected or shapes:
        lines = [f"init_from weights do not match the configured model ({name}):"]
        lines += [f"  missing in weights: {k}" for k in missing[:20]]
        lines += [f"  not in the model: {k}" for k in unexpected[:20]]
        lines += [f"  shape mismatch {s}" for s in shapes[:20]]
        lines.append("Use a config whose model section describes the converted architecture.")
        raise ValueError("\n".join(lines))


def load_pure_weights(init_from: str) -> tuple[dict, dict]:
    """(params, rest) pure dicts from a converted-weights directory."""
    from dgr_jax.convert import load_converted

    _, state = load_converted(init_from)
    if isinstance(state, dict) and "params" in state:
        return state["params"], state.get("rest", {})
    params = nnx.to_pure_dict(state.filter(nnx.Param))
    rest = nnx.to_pure_dict(state.filter(nnx.Not(nnx.Param)))
    return params, rest


def load_init_weights(state: dict, state_shardings: dict, init_from: str) -> dict:
    """Return `state` with params / rest replaced by the converted weights (same shardings)."""
    params, rest = load_pure_weights(init_from)
    _check_compatible("params", state["params"], params)
    _check_compatible("batch statistics", state["rest"], rest)
    state = dict(state)
    state["params"] = jax.device_put(
        jax.tree.map(lambda t, v: np.asarray(v, dtype=t.dtype), state["params"], params),
        state_shardings["params"],
    )
    if rest:
        state["rest"] = jax.device_put(
            jax.tree.map(lambda t, v: np.asarray(v, dtype=t.dtype), state["rest"], rest),
            state_shardings["rest"],
        )
    return state
