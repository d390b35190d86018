"""The same DPT twice: transformers' PyTorch `DPTForDepthEstimation` and its JAX conversion (ours).

Used by train_step_vs_torch.py, eval_vs_torch.py and gpu.py. torch and transformers are imported
inside the functions, so importing this module costs nothing.

HF DPT with its own ViT backbone reshapes its tokens to a square grid in the neck, so inputs
are square; at sides that are multiples of 32 HF's and our decoder resize identically (see
dgr_jax/models/decoders/dpt.py), so both sides compute the same function.
"""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp

from dgr_jax import steps
from dgr_jax.convert import convert_hf
from dgr_jax.models import build_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# transformers DPTConfig arguments. "S": a ViT-S/16 DPT (hidden 384, 12 layers, 6 heads, MLP
# 1536, neck 48/96/192/384 from layers 3/6/9/12, fusion 128), the size class of
# configs/synthetic_vit_dgr.py. "B": ViT-B/16 with neck 96/192/384/768 and fusion 256, the
# architecture of configs/nyu_vit_dgr.py without DGR (DPT-Base's sizes, Ranftl et al. 2021).
DPT_SIZES: dict[str, dict[str, Any]] = {
    "S": {
        "hidden_size": 384,
        "num_hidden_layers": 12,
        "num_attention_heads": 6,
        "intermediate_size": 1536,
        "neck_hidden_sizes": [48, 96, 192, 384],
        "backbone_out_indices": [2, 5, 8, 11],
        "fusion_hidden_size": 128,
        "readout_type": "project",
    },
    "B": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "neck_hidden_sizes": [96, 192, 384, 768],
        "backbone_out_indices": [2, 5, 8, 11],
        "fusion_hidden_size": 256,
        "readout_type": "project",
    },
    "tiny": {  # for dry runs of the scripts on a CPU
        "hidden_size": 32,
        "num_hidden_layers": 4,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "neck_hidden_sizes": [8, 16, 32, 32],
        "backbone_out_indices": [0, 1, 2, 3],
        "fusion_hidden_size": 16,
        "readout_type": "project",
    },
}
HEAD_BIAS = 1.0  # final conv bias: keeps the ReLU head's depths positive at random init


def describe(size_name: str) -> str:
    d = DPT_SIZES[size_name]
    return (
        f"transformers DPTForDepthEstimation, ViT-{size_name}/16 (hidden {d['hidden_size']}, "
        f"{d['num_hidden_layers']} layers, {d['num_attention_heads']} heads), fusion "
        f"{d['fusion_hidden_size']}, readout {d['readout_type']}"
    )


def torch_dpt(size_name: str, image_size: int, seed: int = 0):
    """A randomly initialised (torch seed `seed`) DPTForDepthEstimation on CPU."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = transformers.DPTForDepthEstimation(
        transformers.DPTConfig(image_size=image_size, **DPT_SIZES[size_name])
    )
    with torch.no_grad():
        model.head.head[4].bias.fill_(HEAD_BIAS)
    return model


def to_jax(hf_model, dtype=jnp.float32) -> tuple[steps.ModelDef, tuple[dict, dict]]:
    """(ModelDef of the converted architecture at compute `dtype`, (params, rest))."""
    converted = convert_hf(hf_model.eval())
    model_cfg = converted.model_cfg
    model_def = steps.ModelDef.create(lambda rngs: build_model(model_cfg, rngs=rngs, dtype=dtype))
    return model_def, steps.ModelDef.split(converted.module)


def torch_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def setup_fields(hf, *, quick: bool, batch: int, size: int, threads: int, repeats: int) -> dict:
    """The JSON fields every JAX-vs-PyTorch comparison of the "S" DPT reports about its setup."""
    import torch

    return {
        "quick": quick,
        "model": describe("S"),
        "params": torch_params(hf),
        "batch": batch,
        "input": [size, size],
        "dtype": "float32",
        "threads": {"jax_xla_cpu": threads, "torch": torch.get_num_threads()},
        "torch": torch.__version__,
        "torch_attention": hf.config._attn_implementation,
        "repeats": repeats,
    }
