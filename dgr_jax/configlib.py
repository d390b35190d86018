"""Load experiment configs by path, with an optional ":arg" and "key=value" overrides.

`train.py` / `eval.py` use ml_collections' config flags; library code and tools that need
another experiment's config (the sparse-pixel study, benchmarks, tests) use `load`. Code that
has no experiment config at all (predicting from converted weights) builds one with
`inference_config`: the library never imports the experiment folder `configs/`.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from collections.abc import Sequence

import ml_collections


def load(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Load "configs/x.py[:arg]" and apply overrides like "model.decoder.features=32"."""
    path, _, arg = spec.partition(":")
    if not os.path.exists(path):
        raise FileNotFoundError(f"config file {path!r} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"_dgr_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg or None)
    for item in overrides:
        key, _, value = item.partition("=")
        set_by_path(config, key.strip(), _parse_value(value.strip()))
    return config


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string


def set_by_path(config: ml_collections.ConfigDict, key: str, value) -> None:
    """Set a dotted key; a key that does not exist raises with the valid names."""
    *parents, leaf = key.split(".")
    node = config
    for name in parents:
        if name not in node:
            raise KeyError(
                f"config has no key {key!r}: {name!r} is not one of {sorted(node.keys())}"
            )
        node = node[name]
    if leaf not in node:
        raise KeyError(f"config has no key {key!r}: {leaf!r} is not one of {sorted(node.keys())}")
    current = node[leaf]
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    node[leaf] = value


def inference_config(
    model: dict, *, init_from: str, input_size: tuple[int, int]
) -> ml_collections.ConfigDict:
    """The smallest config `evaluate.restore_for_inference` accepts: one model, its weights.

    Used where no experiment config exists (`python -m dgr_jax.predict --weights DIR`): the
    model comes from the converted weights' meta.json, placement is data parallel over every
    device in float32, and the optimiser only gives the abstract state its shape.
    """
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 1
    c.mesh = ml_collections.ConfigDict({"data": -1, "model": 1})
    c.sharding = "data_parallel"
    c.dtype = "float32"
    c.remat = False
    c.eval_precision = "highest"  # dgr_jax/precision.py
    c.best_metric = ""
    c.best_mode = "min"
    c.init_from = init_from
    c.data_dir = ""
    c.input = ml_collections.ConfigDict({"size": tuple(input_size), "manual_dir": ""})
    c.model = ml_collections.ConfigDict(model)
    c.optim = ml_collections.ConfigDict(
        {
            "name": "adam",
            "lr": 0.0,
            "end_lr_factor": 1.0,
            "power": 1.0,
            "warmup_steps": 0,
            "weight_decay": 0.0,
            "grad_clip": 0.0,
            "eps": 1e-8,
        }
    )
    c.evals = ml_collections.ConfigDict()
    return c
