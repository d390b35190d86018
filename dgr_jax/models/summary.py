"""Parameter and FLOP counts of a config's model, with and without DGR (ours).

    python -m dgr_jax.models.summary --config configs/nyu_vit_dgr.py
    python -m dgr_jax.models.summary --config configs/synthetic_vit_dgr.py:smoke

Prints a short table and, as its last line, one JSON object:
    {"params", "params_without_dgr", "flops", "flops_without_dgr", "dgr_params_pct",
     "dgr_flops_pct", "input_size", "batch"}
FLOPs come from XLA's cost analysis of the compiled inference forward pass (batch 1 by
default) at `config.input.size`; nothing is executed and models are built abstractly, so large
configs are fine on a laptop. "without DGR" rebuilds the model with `model.dgr.enabled=False`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from dgr_jax import jsonio
from dgr_jax.models import build_model


def _abstract_model(model_cfg: ml_collections.ConfigDict, dtype: Any) -> nnx.Module:
    return nnx.eval_shape(lambda: build_model(model_cfg, rngs=nnx.Rngs(0), dtype=dtype))


def count_params(model: nnx.Module) -> int:
    """Number of trainable parameters (nnx.Param; BatchNorm statistics excluded)."""
    return int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def forward_flops(model: nnx.Module, input_size: Sequence[int], batch: int = 1) -> float:
    """FLOPs of the jitted inference forward pass, from XLA's cost analysis."""
    graphdef, state = nnx.split(model)

    def forward(state, images):
        return nnx.merge(graphdef, state)(images)[0]

    images = jax.ShapeDtypeStruct((batch, *input_size, 3), jnp.float32)
    compiled = jax.jit(forward).lower(state, images).compile()
    return float(compiled.cost_analysis()["flops"])


def summarize(config: ml_collections.ConfigDict, batch: int = 1) -> dict[str, Any]:
    """Params and FLOPs of `config.model` at `config.input.size`, with and without DGR."""
    dtype = jnp.dtype(config.get("dtype", "float32"))
    size = tuple(config.input.size)
    model_cfg = ml_collections.ConfigDict(config.model.to_dict())
    model = _abstract_model(model_cfg, dtype)
    plain_cfg = ml_collections.ConfigDict(config.model.to_dict())
    if "dgr" in plain_cfg:
        plain_cfg.dgr.enabled = False
    plain = _abstract_model(plain_cfg, dtype)
    out = {
        "params": count_params(model),
        "params_without_dgr": count_params(plain),
        "flops": forward_flops(model, size, batch),
        "flops_without_dgr": forward_flops(plain, size, batch),
    }
    out["dgr_params_pct"] = 100.0 * (out["params"] / out["params_without_dgr"] - 1.0)
    out["dgr_flops_pct"] = 100.0 * (out["flops"] / out["flops_without_dgr"] - 1.0)
    out["input_size"] = list(size)
    out["batch"] = batch
    return out


def main(argv: Sequence[str]) -> None:
    del argv
    config = _CONFIG.value
    if config is None:
        from absl import app

        raise app.UsageError("--config is required")
    result = summarize(config, _BATCH.value)
    m = config.model
    print(f"encoder {m.encoder.to_dict()}")
    print(f"decoder {m.decoder.to_dict()}  dgr {m.dgr.to_dict() if 'dgr' in m else None}")
    print(f"params  {result['params']:,} ({result['dgr_params_pct']:+.2f}% from DGR)")
    print(f"GFLOPs  {result['flops'] / 1e9:,.2f} ({result['dgr_flops_pct']:+.2f}% from DGR)")
    print(jsonio.dumps(result))


if __name__ == "__main__":
    # Flags only when run as a program, so importing the module (the ablation study does)
    # defines none.
    from absl import app, flags
    from ml_collections import config_flags

    _CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file")
    _BATCH = flags.DEFINE_integer("batch", 1, "batch size of the analysed forward pass")
    app.run(main)
