"""Start from converted weights (`--config.init_from=DIR`) in train.py and eval.py.

`DIR` is written by `python -m dgr_jax.convert ...` (format: dgr_jax/convert/checkpoint.py). Its
arrays replace the freshly initialised ones of the configured model, path by path:

- a weight whose path is not in the model, or whose shape differs, is an error that lists them
  (the config must describe the converted architecture: compare `config.model` with model.json);
- a model variable the weights do not have keeps its fresh initialisation. That is the point of
  encoder-only conversions (ImageNet Swin, HF ViT/ResNet: decoder and head start from scratch)
  and of adding modules to a converted model (DGR on top of the released NeWCRFs). Training
  logs which parts were left at init; evaluation (`complete=True`) refuses, because the
  metrics of a partly random model mean nothing;
- the decoder and head settings recorded in model.json (e.g. NeWCRFs' max_depth, which the
  weights cannot show) must equal the config's: an error for evaluation, a warning in training.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from dgr_jax.convert.checkpoint import listing

# config.model parts whose recorded settings are compared (the encoder's are shape-checked:
# variant tables make its keys differ between equivalent configs).
_COMPARED_PARTS = ("decoder", "head")


def _key_str(key: Any) -> str:
    return str(getattr(key, "key", getattr(key, "idx", key)))


def _flat(tree: Any) -> dict[str, Any]:
    return {
        "/".join(_key_str(k) for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _normalise(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_normalise(v) for v in value)
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def config_differences(config_model: Any, converted_model: Any) -> list[str]:
    """Settings of `_COMPARED_PARTS` (and the encoder's name) recorded in model.json that the
    config sets differently; keys only one side has are not compared."""
    diffs = []
    ours = config_model.to_dict() if hasattr(config_model, "to_dict") else dict(config_model)
    theirs = converted_model.to_dict() if hasattr(converted_model, "to_dict") else converted_model
    pairs = [
        ((part, key), (ours.get(part) or {}), (theirs.get(part) or {}))
        for part in _COMPARED_PARTS
        for key in (theirs.get(part) or {})
    ]
    pairs.append((("encoder", "name"), ours.get("encoder") or {}, theirs.get("encoder") or {}))
    for (part, key), mine, conv in pairs:
        if key in mine and key in conv and _normalise(mine[key]) != _normalise(conv[key]):
            diffs.append(f"model.{part}.{key}: config {mine[key]!r} vs weights {conv[key]!r}")
    return diffs


def _group(paths: list[str], depth: int = 2) -> str:
    counts = Counter("/".join(p.split("/")[:depth]) for p in paths)
    return ", ".join(f"{k} ({n})" for k, n in sorted(counts.items()))


@dataclasses.dataclass(frozen=True)
class InitWeights:
    """Converted arrays checked against a model: {"params"|"rest": {"a/0/b": array}}."""

    arrays: dict[str, dict[str, np.ndarray]]
    missing: tuple[str, ...]  # model variables the weights do not have
    report: str  # one line: what was loaded, what keeps its initialisation, warnings


def read_init_weights(
    state: dict, init_from: str, config_model: ml_collections.ConfigDict, *, complete: bool
) -> InitWeights:
    """Read `init_from` and check it against the model whose state is `state`.

    Args:
        state: "params" and "rest" pure dicts of the configured model; abstract
            (`jax.eval_shape`) is enough, so this runs before any compilation.
        init_from: converted-weights directory.
        config_model: `config.model`, compared with the converted model's settings.
        complete: every model variable must be converted (eval.py); otherwise missing ones keep
            their initialisation (train.py).

    Raises:
        ValueError listing the paths (or settings) that do not fit.
    """
    from dgr_jax.convert import load_converted

    model_cfg, converted = load_converted(init_from)
    params, rest = nnx.split_state(converted, nnx.Param, ...)
    loaded = {"params": _flat(nnx.to_pure_dict(params)), "rest": _flat(nnx.to_pure_dict(rest))}
    unknown, shapes, missing = [], [], []
    for name, got in loaded.items():
        want = _flat(state[name])
        unknown += [f"{k} ({name})" for k in sorted(set(got) - set(want))]
        shapes += [
            f"{k}: weights {list(np.shape(got[k]))} vs model {list(want[k].shape)}"
            for k in sorted(set(got) & set(want))
            if tuple(np.shape(got[k])) != tuple(want[k].shape)
        ]
        missing += sorted(set(want) - set(got))
    diffs = config_differences(config_model, model_cfg)
    errors = listing("not in the configured model", unknown) + listing("shape mismatch", shapes)
    if complete:
        errors += listing("not in the weights (would stay random)", missing)
        errors += listing("settings differ from model.json", diffs)
    if errors:
        raise ValueError(
            "\n".join(
                [f"init_from {init_from} does not fit the configured model:", *errors]
                + ["Use a config whose model section describes the converted model (model.json)."]
            )
        )
    report = f"loaded {sum(len(g) for g in loaded.values())} arrays from {init_from}"
    if missing:
        report += f"; kept the fresh initialisation of {len(missing)}: {_group(missing)}"
    if diffs:
        report += "; WARNING settings differ from model.json: " + "; ".join(diffs)
    return InitWeights(loaded, tuple(missing), report)


def apply_init_weights(state: dict, init: InitWeights, state_shardings: dict) -> dict:
    """`state` with its "params" / "rest" leaves replaced by `init`'s arrays, placed with
    `state_shardings`; other entries are passed through. Leaves `init` lacks are kept, so
    `state` may be abstract only when nothing is missing."""
    new = dict(state)
    for name, got in init.arrays.items():

        def pick(path, leaf, got=got):
            key = "/".join(_key_str(k) for k in path)
            return np.asarray(got[key], dtype=leaf.dtype) if key in got else leaf

        new[name] = jax.device_put(
            jax.tree_util.tree_map_with_path(pick, state[name]), state_shardings[name]
        )
    return new


def load_init_weights(
    state: dict,
    state_shardings: dict,
    init_from: str,
    config_model: ml_collections.ConfigDict,
    *,
    complete: bool,
) -> tuple[dict, str]:
    """`read_init_weights` then `apply_init_weights`: (new state, report).

    With `complete=True`, `state` may be abstract: nothing random is initialised (eval.py).
    """
    init = read_init_weights(state, init_from, config_model, complete=complete)
    return apply_init_weights(state, init, state_shardings), init.report
