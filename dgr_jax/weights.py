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
  weights cannot show) must equal the config's: an error for evaluation, a warning in training;
  except a head of another kind (relative `relu` weights into a metric `sigmoid` head: same
  shapes, different meaning), which is an error whenever head weights are loaded;
- `include` / `exclude` (`config.init_from_include` / `_exclude`, globs on the "/"-joined paths
  such as "encoder/vit/layers/0/mlp/fc1/kernel") load part of the weights, e.g. only the
  pre-trained encoder of a relative Depth Anything V2 under a new metric head, as its official
  metric fine-tuning does; what they leave out keeps its fresh initialisation.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections import Counter
from collections.abc import Sequence
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


def _selected(key: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if include and not any(fnmatch.fnmatch(key, p) for p in include):
        return False
    return not any(fnmatch.fnmatch(key, p) for p in exclude)


def _head_kind_error(config_model: Any, converted_model: Any, init_from: str) -> str | None:
    """The message for head weights of another kind than the configured head, or None."""
    ours = (config_model.get("head") or {}).get("name")
    theirs = (converted_model.get("head") or {}).get("name")
    if ours is None or theirs is None or ours == theirs:
        return None
    return (
        f"init_from {init_from} holds a {theirs!r} head and the config has a {ours!r} head: the "
        "weights have the same shapes but another meaning (a relative head, e.g. Depth Anything "
        "V2's relu, predicts affine-invariant inverse depth, not metres). Load the encoder "
        "only (--config.init_from_include='(\"encoder/vit/*\",)', as the official metric "
        "fine-tuning does), exclude the head (--config.init_from_exclude='(\"head/*\",)'), "
        "or convert a checkpoint of the configured kind (--max-depth for a metric one)."
    )


def read_init_weights(
    state: dict,
    init_from: str,
    config_model: ml_collections.ConfigDict,
    *,
    complete: bool,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> InitWeights:
    """Read `init_from` and check it against the model whose state is `state`.

    Args:
        state: "params" and "rest" pure dicts of the configured model; abstract
            (`jax.eval_shape`) is enough, so this runs before any compilation.
        init_from: converted-weights directory.
        config_model: `config.model`, compared with the converted model's settings.
        complete: every model variable must be converted (eval.py); otherwise missing ones keep
            their initialisation (train.py).
        include, exclude: globs on array paths; only arrays that match an `include` (all when
            empty) and no `exclude` are loaded.

    Raises:
        ValueError listing the paths (or settings) that do not fit.
    """
    from dgr_jax.convert import load_converted

    model_cfg, converted = load_converted(init_from)
    params, rest = nnx.split_state(converted, nnx.Param, ...)
    loaded = {"params": _flat(nnx.to_pure_dict(params)), "rest": _flat(nnx.to_pure_dict(rest))}
    skipped = sum(not _selected(k, include, exclude) for g in loaded.values() for k in g)
    loaded = {
        name: {k: v for k, v in got.items() if _selected(k, include, exclude)}
        for name, got in loaded.items()
    }
    if skipped and not any(loaded.values()):
        raise ValueError(
            f"init_from {init_from}: init_from_include {list(include)} / init_from_exclude "
            f"{list(exclude)} leave no array to load"
        )
    cfg_dict = config_model.to_dict() if hasattr(config_model, "to_dict") else config_model
    if any(k.startswith("head/") for g in loaded.values() for k in g):
        message = _head_kind_error(cfg_dict, model_cfg, init_from)
        if message:
            raise ValueError(message)
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
    if skipped:
        report += f" ({skipped} left out by init_from_include / init_from_exclude)"
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
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> tuple[dict, str]:
    """`read_init_weights` then `apply_init_weights`: (new state, report).

    With `complete=True`, `state` may be abstract: nothing random is initialised (eval.py).
    """
    init = read_init_weights(
        state, init_from, config_model, complete=complete, include=include, exclude=exclude
    )
    return apply_init_weights(state, init, state_shardings), init.report
