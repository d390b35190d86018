"""On-disk format of converted weights, and merging them into a model (ours).

Layout written by `python -m dgr_jax.convert ... --out OUT` (`save_converted`):

    OUT/model.json   {"format": "dgr_jax.converted.v1",
                      "model":  the `config.model` sub-config that rebuilds the converted part
                                (a full DepthModel config, or only {"encoder": {...}} for
                                encoder conversions such as HF ViTModel / ResNetModel),
                      "prefix": path of the converted module inside a DepthModel:
                                [] for a DepthModel, ["encoder"] for a ResNet,
                                ["encoder", "vit"] for a ViT backbone,
                      "source": where it came from (HF class, directory)}
    OUT/state/       orbax StandardCheckpointer directory holding the module's nnx.State
                     (Params and BatchStats) as a nested dict of float32 arrays, with list
                     indices as keys, relative to the module at `prefix`.

Loading (no torch needed):

    model_cfg, state = load_converted(OUT)   # state is rooted at the DepthModel (prefix applied)
    model = build_model(config.model, rngs=...)
    merge_state(model, state)                # or: state = merge_state(nnx.state(model), state)

The config given to train.py / eval.py must describe the converted architecture for every part
that `state` covers (compare `config.model` with `model_cfg`); parts it does not cover (e.g. the
decoder and head when only an encoder was converted) keep their fresh initialisation.
`merge_state` raises a ValueError that lists every mismatching path otherwise.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx

from dgr_jax.models import build_encoder, build_model

FORMAT = "dgr_jax.converted.v1"


@dataclass
class Converted:
    """What every converter returns: the module and what is needed to rebuild it."""

    module: nnx.Module
    model_cfg: dict[str, Any]  # `config.model`; only {"encoder": ...} for encoder conversions
    prefix: tuple[str, ...]  # where `module` sits inside a DepthModel (() = the DepthModel)
    source: dict[str, Any] = field(default_factory=dict)  # provenance, written to model.json


def _to_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    return value


def save_converted(out_dir: str | pathlib.Path, converted: Converted) -> pathlib.Path:
    """Write `converted` in the layout above; returns the absolute output directory."""
    out = pathlib.Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "model": _to_json(converted.model_cfg),
        "prefix": list(converted.prefix),
        "source": _to_json(converted.source),
    }
    state = nnx.to_pure_dict(nnx.state(converted.module))
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(out / "state", state, force=True)
    checkpointer.wait_until_finished()
    (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def _abstract_module(model_cfg: ml_collections.ConfigDict, prefix: list[str]) -> nnx.Module:
    """The converted module, built abstractly (shapes only) from its config."""
    if prefix and prefix[0] == "encoder":
        module = nnx.eval_shape(lambda: build_encoder(model_cfg.encoder, rngs=nnx.Rngs(0)))
        rest = prefix[1:]
    else:
        module = nnx.eval_shape(lambda: build_model(model_cfg, rngs=nnx.Rngs(0)))
        rest = prefix
    for name in rest:
        module = getattr(module, name)
    return module


def load_converted(ckpt_dir: str | pathlib.Path) -> tuple[ml_collections.ConfigDict, nnx.State]:
    """Read a converted checkpoint.

    Returns:
        (model_cfg, state): the `config.model` (sub-)config of the converted part, and its
        nnx.State nested under the part's path in a DepthModel, ready for `merge_state`.
    """
    ckpt = pathlib.Path(ckpt_dir).absolute()
    meta = json.loads((ckpt / "model.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{ckpt}: not a {FORMAT} checkpoint (format={meta.get('format')})")
    model_cfg = ml_collections.ConfigDict(meta["model"])
    abstract = nnx.state(_abstract_module(model_cfg, meta["prefix"]))
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), nnx.to_pure_dict(abstract)
    )
    restored = ocp.StandardCheckpointer().restore(ckpt / "state", target)
    nnx.replace_by_pure_dict(abstract, restored)
    prefix = tuple(meta["prefix"])
    state = nnx.from_flat_state([(prefix + path, v) for path, v in nnx.to_flat_state(abstract)])
    return model_cfg, state


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
        name = "/".join(str(p) for p in path)
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
