"""Load experiment configs by path, with an optional ":arg" and "key=value" overrides.

`train.py` / `eval.py` use ml_collections' config flags; library code and tools that need
another experiment's config (the sparse-pixel study, benchmarks, tests) use `load`.
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
