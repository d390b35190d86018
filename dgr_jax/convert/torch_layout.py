"""Rule-based mapping of PyTorch state dicts onto NNX pure dicts, and a strict loader.

[ours] A converter is a list of `Rule`s: a regex on the torch *module* path (the key without
its last component), a function building our module path from the match, and the module
kind, which fixes how each leaf converts (Linear weight (out, in) -> kernel (in, out); Conv
weight OIHW -> HWIO; LayerNorm/GroupNorm weight -> scale; BatchNorm running stats -> mean/var).
`map_state_dict` consumes every key exactly once: a key is either mapped to exactly one target
or matches an explicit drop pattern (buffers such as `num_batches_tracked`), anything else is
an error that lists the keys. `assign_pure_dict` then checks the result against the model's
own state: every variable filled, nothing extra, every shape equal.

`load_torch_file` reads a checkpoint with `torch.load(weights_only=True)` (torch is imported
there, lazily, and nowhere else in this module); tensors are converted through `.numpy()`.
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

from dgr_jax.convert.checkpoint import Path, flatten, unflatten

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
    from dgr_jax.models.blocks.host_common import relative_position_index

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
    sd: Mapping[str, Any],
    rules: Iterable[Rule],
    *,
    drop: Iterable[str] = (),
    kinds: Mapping[str, Callable[[str, np.ndarray], Any]] | None = None,
) -> dict[Path, np.ndarray]:
    """Map every key of `sd` through `rules`; returns {our path: array}.

    `kinds` adds module kinds (leaf name, array) -> (target leaf, getter) to `KINDS` for
    converters with leaves of their own (e.g. DINOv2's LayerScale `gamma`).

    Raises:
        KeyError: keys no rule (and no drop pattern) consumes, or two keys with one target.
    """
    rules = list(rules)
    table = {**KINDS, **(kinds or {})}
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
                converted = table[rule.kind](leaf, to_numpy(value))
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
        raise KeyError(f"{len(unexpected)} checkpoint keys have no target, e.g. {unexpected[:10]}")
    return out


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


def _numpy_globals() -> list:
    """What pickled numpy arrays and scalars need under `weights_only=True`.

    Training scripts store numpy values beside the state dict (NeWCRFs: `best_eval_steps`, an
    int32 array); files written under numpy 1 name the reconstructors `numpy.core.*`.
    """
    core = np._core.multiarray
    allowed = [np.ndarray, np.dtype, core._reconstruct, core.scalar]
    allowed += [(core._reconstruct, "numpy.core.multiarray._reconstruct")]
    allowed += [(core.scalar, "numpy.core.multiarray.scalar")]
    allowed += [type(np.dtype(t)) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64)]
    allowed += [type(np.dtype(t)) for t in (np.uint8, np.float16, np.float32, np.float64)]
    return allowed


def load_torch_file(path: str) -> Mapping[str, Any]:
    """The state dict of a PyTorch checkpoint file, read on CPU without running pickled code.

    Unwraps {"model": sd} and {"state_dict": sd}.

    Raises:
        ValueError: the file does not exist or is not a (weights-only loadable) torch file.
    """
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (pickle.UnpicklingError, RuntimeError, KeyError, EOFError, OSError) as e:
        text = " ".join(str(e).split()) or type(e).__name__
        # torch's message is a paragraph; the reason follows "WeightsUnpickler error:".
        m = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\. Please use| Check the doc|$)", text)
        detail = m[1] if m else text
        hint = ""
        if "Unsupported global" in detail:
            hint = (
                "; it holds Python objects besides tensors, numbers and numpy arrays. If you "
                "trust the file, re-save only its state dict: torch.save(torch.load(f, "
                "weights_only=False)['model'], 'state_dict.pth')"
            )
        raise ValueError(
            f"{path}: not a PyTorch checkpoint torch.load(weights_only=True) can read "
            f"({detail[:200]}){hint}"
        ) from None
    for key in ("model", "state_dict"):
        if isinstance(ckpt, Mapping) and isinstance(ckpt.get(key), Mapping):
            ckpt = ckpt[key]
            break
    if not isinstance(ckpt, Mapping) or not ckpt:
        raise ValueError(f"{path}: holds no state dict (got {type(ckpt).__name__})")
    return ckpt
