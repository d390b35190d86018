"""On-disk format of converted weights, and merging them into a model (ours).

Every source of `python -m dgr_jax.convert` (HF directories, official NeWCRFs checkpoints,
ImageNet Swin checkpoints) ends in `save_converted`, which writes:

    OUT/model.json   {"format": "dgr_jax.converted.v1",
                      "model":  the `config.model` sub-config that rebuilds the converted part
                                (a full DepthModel config, or only {"encoder": {...}} for
                                encoder conversions: HF ViTModel / ResNetModel, ImageNet Swin),
                      "prefix": path of the converted module inside a DepthModel:
                                [] for a DepthModel, ["encoder"] for a ResNet or Swin,
                                ["encoder", "vit"] for a ViT backbone,
                      "kept_init": variables of that module the source does not have (e.g.
                                the Swin stage output norms of a classification checkpoint);
                                they keep their fresh initialisation,
                      "dropped": {source key: why} of what was read but not converted (e.g.
                                PixelFormer's unused `samN.proj` convs); {} for most sources,
                      "source": where it came from (file, HF class, variant)}
    OUT/state/       orbax StandardCheckpointer directory holding the module's variables
                     (Params and BatchStats) as a nested dict of float32 numpy arrays, list
                     indices as keys, relative to the module at `prefix`.

Before writing, the weights are checked against the module that `model` builds (abstractly,
no memory): same paths and shapes, nothing extra, nothing missing except `kept_init`. A
converter therefore never writes a checkpoint that its own model.json cannot load.

Loading (no torch needed):

    model_cfg, state = load_converted(OUT)   # state is rooted at the DepthModel (prefix applied)
    model = build_model(config.model, rngs=...)
    merge_state(model, state)                # or: state = merge_state(nnx.state(model), state)

train.py / eval.py do this through `dgr_jax/weights.py` (`--config.init_from=OUT`).
"""

from __future__ import annotations

import fnmatch
import json
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from dgr_jax import jsonio, storage
from dgr_jax.models import build_encoder, build_model

FORMAT = "dgr_jax.converted.v1"
Path = tuple[str | int, ...]
_MAX_LISTED = 10  # paths listed per kind of problem in error messages


@dataclass
class ConvertedWeights:
    """What every converter produces: a nested pure dict and what is needed to rebuild it."""

    tree: dict  # nested {name or list index: ... numpy array}, rooted at the module at `prefix`
    model_cfg: dict[str, Any]  # `config.model`; only {"encoder": ...} for encoder conversions
    prefix: tuple[str, ...] = ()  # where the module sits inside a DepthModel (() = all of it)
    source: dict[str, Any] = field(default_factory=dict)  # provenance, written to model.json
    kept_init: tuple[str, ...] = ()  # globs ("norms/*") of variables the source does not have
    # Source keys read but deliberately not converted -> why (e.g. PixelFormer's never-used
    # `samN.proj` convs); written to model.json and printed by the CLI.
    dropped: dict[str, str] = field(default_factory=dict)


@dataclass
class Converted:
    """A converted NNX module (HF converters build the module and load it themselves)."""

    module: nnx.Module
    model_cfg: dict[str, Any]
    prefix: tuple[str, ...]
    source: dict[str, Any] = field(default_factory=dict)

    def weights(self) -> ConvertedWeights:
        tree = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(self.module)))
        return ConvertedWeights(tree, self.model_cfg, tuple(self.prefix), dict(self.source))


def _to_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    return value


def flatten(tree: Mapping, prefix: Path = ()) -> dict[Path, Any]:
    """Nested dict -> {path tuple: leaf}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, (*prefix, key)))
        else:
            flat[(*prefix, key)] = value
    return flat


def unflatten(flat: Mapping[Path, Any]) -> dict:
    """{path tuple: leaf} -> nested dict (list indices stay int keys, as NNX pure dicts)."""
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def path_str(path: Sequence[str | int]) -> str:
    return "/".join(map(str, path))


def listing(title: str, items: Sequence[str]) -> list[str]:
    """Error-message lines: a title with the count and the first few items."""
    if not items:
        return []
    more = f" (first {_MAX_LISTED})" if len(items) > _MAX_LISTED else ""
    return [f"  {title} ({len(items)}){more}:"] + [f"    {s}" for s in items[:_MAX_LISTED]]


def _abstract_module(model_cfg: Mapping[str, Any], prefix: Sequence[str]) -> nnx.Module:
    """The converted module, built abstractly (shapes only) from its config."""
    model_cfg = ml_collections.ConfigDict(_to_json(model_cfg))
    if prefix and prefix[0] == "encoder":
        module = nnx.eval_shape(lambda: build_encoder(model_cfg.encoder, rngs=nnx.Rngs(0)))
        rest = prefix[1:]
    else:
        module = nnx.eval_shape(lambda: build_model(model_cfg, rngs=nnx.Rngs(0)))
        rest = prefix
    for name in rest:
        module = getattr(module, name)
    return module


def check_weights(weights: ConvertedWeights) -> list[str]:
    """Relative paths of the module left at init; raises ValueError if the weights do not fit.

    The module is the one `weights.model_cfg` builds at `weights.prefix`. Every weight must be a
    variable of it with the same shape; every variable must be given unless it matches one of
    `weights.kept_init`.
    """
    module = _abstract_module(weights.model_cfg, weights.prefix)
    want = {path_str(p): v for p, v in nnx.to_flat_state(nnx.state(module))}
    got = {path_str(p): v for p, v in flatten(weights.tree).items()}
    unknown = sorted(set(got) - set(want))
    shapes = [
        f"{k}: weights {list(np.shape(got[k]))} vs model {list(want[k].shape)}"
        for k in sorted(set(got) & set(want))
        if tuple(np.shape(got[k])) != tuple(want[k].shape)
    ]
    absent = sorted(set(want) - set(got))
    kept = [k for k in absent if any(fnmatch.fnmatch(k, g) for g in weights.kept_init)]
    missing = sorted(set(absent) - set(kept))
    if unknown or shapes or missing:
        lines = [f"converted weights do not fit the model they describe ({weights.source}):"]
        lines += listing("not in the model", unknown)
        lines += listing("shape mismatch", shapes)
        lines += listing("missing from the weights", missing)
        raise ValueError("\n".join(lines))
    return kept


def save_converted(
    out_dir: str | pathlib.Path, converted: Converted | ConvertedWeights
) -> storage.Path:
    """Check `converted` against its model and write it in the layout above.

    Returns:
        The absolute output directory (`out_dir` may be a gs:// URL).

    Raises:
        ValueError listing every path that does not fit (nothing is written then).
    """
    weights = converted.weights() if isinstance(converted, Converted) else converted
    kept = check_weights(weights)
    out = storage.path(out_dir)
    storage.makedirs(out)
    tree = jax.tree.map(lambda x: np.ascontiguousarray(x, np.float32), weights.tree)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(out / "state", tree, force=True)
    checkpointer.wait_until_finished()
    meta = {
        "format": FORMAT,
        "model": _to_json(weights.model_cfg),
        "prefix": list(weights.prefix),
        "kept_init": kept,
        "dropped": dict(weights.dropped),
        "source": _to_json(weights.source),
    }
    jsonio.write(out / "model.json", meta)
    return out


def read_meta(ckpt_dir: str | pathlib.Path) -> dict[str, Any]:
    """model.json of a converted checkpoint, after checking it is one."""
    ckpt = storage.path(ckpt_dir)
    if not (ckpt / "model.json").is_file() or not (ckpt / "state").is_dir():
        raise ValueError(
            f"{ckpt}: not converted weights (no model.json and state/); "
            "write them with python -m dgr_jax.convert ... --out DIR"
        )
    meta = json.loads((ckpt / "model.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{ckpt}: not a {FORMAT} checkpoint (format={meta.get('format')})")
    return meta


def _int_keys(tree: Mapping) -> dict:
    """Orbax returns list indices as strings; NNX pure dicts have them as ints."""
    return {
        (int(k) if isinstance(k, str) and k.isdigit() else k): (
            _int_keys(v) if isinstance(v, Mapping) else v
        )
        for k, v in tree.items()
    }


def load_converted(ckpt_dir: str | pathlib.Path) -> tuple[ml_collections.ConfigDict, nnx.State]:
    """Read a converted checkpoint.

    Returns:
        (model_cfg, state): the `config.model` (sub-)config of the converted part, and the
        nnx.State of the variables it holds (Params, BatchStats; numpy arrays), nested under the
        part's path in a DepthModel, ready for `merge_state`. Variables listed in `kept_init`
        are not in `state`.
    """
    ckpt = storage.path(ckpt_dir)
    meta = read_meta(ckpt)
    checkpointer = ocp.StandardCheckpointer()
    stored = checkpointer.metadata(ckpt / "state").item_metadata.tree
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), stored)
    restored = flatten(_int_keys(checkpointer.restore(ckpt / "state", target)))
    module = _abstract_module(meta["model"], meta["prefix"])
    abstract = dict(nnx.to_flat_state(nnx.state(module)))
    unknown = sorted(path_str(p) for p in restored if p not in abstract)
    if unknown:
        raise ValueError(
            "\n".join(
                [f"{ckpt}: state/ does not match model.json:"]
                + listing("not in the model", unknown)
            )
        )
    prefix = tuple(meta["prefix"])
    state = nnx.from_flat_state(
        [(prefix + p, abstract[p].replace(np.asarray(v))) for p, v in restored.items()]
    )
    return ml_collections.ConfigDict(meta["model"]), state


def merge_state(target: nnx.Module | nnx.State, state: nnx.State) -> nnx.State:
    """Overwrite the variables of `target` found in `state`, after checking they fit.

    Args:
        target: a model (updated in place) or its nnx.State (a merged copy is returned).
        state: e.g. from `load_converted`; may cover only part of the model.

    Returns:
        The merged state of `target`.

    Raises:
        ValueError listing every path of `state` missing from `target` or differing in shape,
        dtype or variable type.
    """
    current = nnx.state(target) if isinstance(target, nnx.Module) else target
    have = dict(nnx.to_flat_state(current))
    problems = []
    for path, var in nnx.to_flat_state(state):
        name = path_str(path)
        mine = have.get(path)
        if mine is None:
            problems.append(f"{name}: not in the model")
        elif type(mine) is not type(var):
            problems.append(f"{name}: {type(var).__name__} vs model {type(mine).__name__}")
        elif mine.shape != var.shape or mine.dtype != var.dtype:
            problems.append(
                f"{name}: {var.dtype}{list(var.shape)} vs model {mine.dtype}{list(mine.shape)}"
            )
    if problems:
        raise ValueError(
            "converted weights do not fit the model; the config must describe the converted "
            "architecture (see model.json):\n  " + "\n  ".join(problems)
        )
    if isinstance(target, nnx.Module):
        nnx.update(target, state)
        return nnx.state(target)
    return nnx.merge_state(current, state)
