"""Rule-based mapping of PyTorch state dicts onto NNX pure dicts, and a strict loader.

[ours] A converter is a list of `Rule`s: a regex on the torch *module* path (the key without
its last component), a function building our module path from the match, and the module
kind, which fixes how each leaf converts (Linear weight (out, in) -> kernel (in, out); Conv
weight OIHW -> HWIO; LayerNorm/GroupNorm weight -> scale; BatchNorm running stats -> mean/var).
`map_state_dict` consumes every key exactly once: a key is either mapped to exactly one target
or matches an explicit drop pattern (buffers such as `num_batches_tracked`), anything else is
an error that lists the keys. `assign_pure_dict` then checks the result against the model's
own state: every variable filled, nothing extra, every shape equal.

torch is never imported here; tensors are converted through `.numpy()` when present.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Path = tuple[str | int, ...]
DROP = object()  # sentinel: the leaf is consumed but has no target


class Rule:
    """Module-path regex -> our module path, with the module kind."""

    def __init__(self, pattern: str, target: Callable[[re.Match], Path] | Path, kind: str):
        self.pattern = re.compile(pattern)
        self.target = target if callable(target) else (lambda _m, t=tuple(target): t)
        self.kind = kind


def to_numpy(value: Any) -> np.ndarray:
    """torch tensor or array-like -> numpy (float tensors as float32)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def _linear(leaf: str, x: np.ndarray):
    return {"weight": ("kernel", lambda: x.T), "bias": ("bias", lambda: x)}.get(leaf)


def _conv(leaf: str, x: np.ndarray):
    # (O, I, kh, kw) -> (kh, kw, I, O)
    return {"weight": ("kernel", lambda: x.transpose(2, 3, 1, 0)), "bias": ("bias", lambda: x)}.get(
        leaf
    )


def _norm(leaf: str, x: np.ndarray):
    return {"weight": ("scale", lambda: x), "bias": ("bias", lambda: x)}.get(leaf)


def _batch_norm(leaf: str, x: np.ndarray):
    table = {
        "weight": ("scale", lambda: x),
        "bias": ("bias", lambda: x),
        "running_mean": ("mean", lambda: x),
        "running_var": ("var", lambda: x),
        "num_batches_tracked": (DROP, None),
    }
    return table.get(leaf)


def relative_position_index_ref(window: int) -> np.ndarray:
    """The Swin relative position index for a window, as the official buffer holds it."""
    from dgr_jax.models.swin import relative_position_index

    return relative_position_index(window)


def _window_attention(leaf: str, x: np.ndarray):
    if leaf == "relative_position_bias_table":
        return ("relative_position_bias_table", lambda: x)
    if leaf == "relative_position_index":
        window = round(np.sqrt(x.shape[0]))
        if not np.array_equal(x, relative_position_index_ref(window)):
            raise ValueError("checkpoint relative_position_index differs from Swin's convention")
        return (DROP, None)
    return None


KINDS: dict[str, Callable[[str, np.ndarray], Any]] = {
    "linear": _linear,
    "conv": _conv,
    "ln": _norm,
    "gn": _norm,
    "bn": _batch_norm,
    "attn": _window_attention,
}


def map_state_dict(
    sd: Mapping[str, Any], rules: Iterable[Rule], *, drop: Iterable[str] = ()
) -> dict[Path, np.ndarray]:
    """Map every key of `sd` through `rules`; returns {our path: array}.

    Raises:
        KeyError: keys no rule (and no drop pattern) consumes, or two keys with one target.
    """
    rules = list(rules)
    drop = [re.compile(p) for p in drop]
    out: dict[Path, np.ndarray] = {}
    unexpected = []
    for key, value in sd.items():
        if any(p.fullmatch(key) for p in drop):
            continue
        module, _, leaf = key.rpartition(".")
        converted = None
        for rule in rules:
            m = rule.pattern.fullmatch(module)
            if m:
                converted = KINDS[rule.kind](leaf, to_numpy(value))
                break
        if converted is None:
            unexpected.append(key)
            continue
        name, get = converted
        if name is DROP:
            continue
        path = (*rule.target(m), name)
        if path in out:
            raise KeyError(f"two checkpoint keys map to {'/'.join(map(str, path))} (last: {key})")
        out[path] = np.asarray(get())
    if unexpected:
        raise KeyError(f"{len(unexpected)} checkpoint keys have no target: {unexpected[:20]}")
    return out


def flatten(tree: Mapping, prefix: Path = ()) -> dict[Path, Any]:
    """Nested dict -> {path tuple: leaf}."""
    flat = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            flat.update(flatten(v, (*prefix, k)))
        else:
            flat[(*prefix, k)] = v
    return flat


def unflatten(flat: Mapping[Path, Any]) -> dict:
    """{path tuple: leaf} -> nested dict (list indices stay int keys, as NNX pure dicts)."""
    tree: dict = {}
    for path, v in flat.items():
        node = tree
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = v
    return tree


def _fmt(path: Path) -> str:
    return "/".join(map(str, path))


def assign_pure_dict(
    model: nnx.Module, pure: Mapping | Mapping[Path, Any], *, allow_missing: Iterable[str] = ()
) -> None:
    """Load a (nested or flat) pure dict into `model` in place, strictly.

    Every variable of the model must be given (except paths matching an `allow_missing` glob,
    e.g. "encoder/norms/*", which keep their current values), no extra path may be given and
    shapes must agree. Works on models built with `nnx.eval_shape` when nothing is missing.
    """
    given = dict(pure) if pure and isinstance(next(iter(pure)), tuple) else flatten(pure)
    state = nnx.state(model)
    target = flatten(nnx.to_pure_dict(state))
    allow = list(allow_missing)
    missing = [
        _fmt(p)
        for p in target
        if p not in given and not any(fnmatch.fnmatch(_fmt(p), a) for a in allow)
    ]
    unexpected = [_fmt(p) for p in given if p not in target]
    wrong = [
        f"{_fmt(p)}: {tuple(np.shape(v))} != {tuple(target[p].shape)}"
        for p, v in given.items()
        if p in target and tuple(np.shape(v)) != tuple(target[p].shape)
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            "weights do not match the model:\n"
            f"  missing ({len(missing)}): {missing[:20]}\n"
            f"  unexpected ({len(unexpected)}): {unexpected[:20]}\n"
            f"  shape mismatches ({len(wrong)}): {wrong[:20]}"
        )
    abstract = [
        _fmt(p) for p in target if p not in given and isinstance(target[p], jax.ShapeDtypeStruct)
    ]
    if abstract:
        raise ValueError(f"cannot keep values of an abstract (eval_shape) model: {abstract[:20]}")
    merged = {
        p: (jnp.asarray(given[p], dtype=target[p].dtype) if p in given else target[p])
        for p in target
    }
    nnx.replace_by_pure_dict(state, unflatten(merged))
    nnx.update(model, state)
