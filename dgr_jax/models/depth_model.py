"""DepthModel = encoder + decoder (with DGR inside, at its configured positions) + head.

[paper] The comparative study's two depth networks differ only in the encoder (method.md
section 1). [ours] Components are resolved by name through the registries, so a config names
them and no code branches on names:

    model_cfg.encoder = {"name": "vit" | "resnet" | ..., **encoder kwargs}
    model_cfg.decoder = {"name": "dpt", **decoder kwargs}
    model_cfg.dgr     = {"enabled", "positions", "stencils", "se_reduction", ...} (optional)
    model_cfg.head    = {"name": "sigmoid" | "relu", "max_depth", **head kwargs}

Encoders are called as `cls(**kwargs, dtype=, remat=, rngs=)`, run as
`encoder(images, train=, rngs=)` (rngs: per-step randomness or None) and expose `out_channels`
({"stage1".."stage4"} -> channels) so the decoder is built without a forward pass; decoders as
`cls(encoder.out_channels, **kwargs, dgr=, dtype=, rngs=)` and expose `out_features`; heads as
`cls(decoder.out_features, **kwargs, dtype=, rngs=)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from dgr_jax.registry import DECODERS, ENCODERS, HEADS


class DepthModel(nnx.Module):
    """images (B, H, W, 3) ImageNet-normalised -> (depth (B, H, W, 1) float32 metres, aux)."""

    def __init__(self, encoder: nnx.Module, decoder: nnx.Module, head: nnx.Module):
        self.encoder = encoder
        self.decoder = decoder
        self.head = head

    def __call__(
        self,
        images: jax.Array,
        *,
        train: bool = False,
        rngs: nnx.Rngs | None = None,
        return_features: bool = False,
    ) -> tuple[jax.Array, dict[str, Any]]:
        """Predict depth.

        Args:
            images: (B, H, W, 3) float, sides multiples of the encoder's patch (ViT) / 32
                for an output identical to HF DPT (other sizes are resized internally).
            train: batch statistics in training mode (BatchNorm), inference otherwise.
            rngs: per-step randomness (a `dropout` stream) for stochastic layers in training,
                e.g. Swin's drop path; the trainer passes fold_in(rng, step).
            return_features: also return the encoder's stage maps as aux["features"].

        Returns:
            depth (B, H, W, 1) float32 and an aux dict (empty unless asked).
        """
        feats = self.encoder(images, train=train, rngs=rngs)
        fused = self.decoder(feats, train=train)
        depth = self.head(fused, images.shape[1:3]).astype(jnp.float32)
        aux = {"features": feats} if return_features else {}
        return depth, aux


def _kwargs(cfg: Mapping[str, Any] | ml_collections.ConfigDict) -> dict[str, Any]:
    items = cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else dict(cfg)
    items.pop("name", None)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in items.items()}


def dgr_settings(model_cfg: Any) -> dict[str, Any] | None:
    """The decoder's `dgr` argument: None when `model_cfg.dgr` is absent or disabled."""
    dgr = model_cfg.get("dgr") if hasattr(model_cfg, "get") else None
    if dgr is None or not dgr.get("enabled", False):
        return None
    return {k: v for k, v in _kwargs(dgr).items() if k != "enabled"}


def build_encoder(
    encoder_cfg: Any, *, rngs: nnx.Rngs, dtype: jnp.dtype = jnp.float32, remat: bool = False
) -> nnx.Module:
    """The registered encoder `encoder_cfg.name` built from the other keys."""
    return ENCODERS.get(encoder_cfg["name"])(
        **_kwargs(encoder_cfg), dtype=dtype, remat=remat, rngs=rngs
    )


def build_model(
    model_cfg: ml_collections.ConfigDict,
    *,
    rngs: nnx.Rngs,
    dtype: jnp.dtype = jnp.float32,
    remat: bool = False,
) -> DepthModel:
    """Build a DepthModel from `config.model` through the registries.

    Args:
        model_cfg: ConfigDict (or mapping) with `encoder`, `decoder`, `head` and optional `dgr`.
        rngs: parameter initialisation RNGs.
        dtype: compute dtype (parameters stay float32; depth is returned in float32).
        remat: rematerialise encoder blocks in the backward pass (large ViTs).
    """
    encoder = build_encoder(model_cfg["encoder"], rngs=rngs, dtype=dtype, remat=remat)
    decoder_cfg = model_cfg["decoder"]
    decoder = DECODERS.get(decoder_cfg["name"])(
        encoder.out_channels,
        **_kwargs(decoder_cfg),
        dgr=dgr_settings(model_cfg),
        dtype=dtype,
        rngs=rngs,
    )
    head_cfg = model_cfg["head"]
    head = HEADS.get(head_cfg["name"])(
        decoder.out_features, **_kwargs(head_cfg), dtype=dtype, rngs=rngs
    )
    return DepthModel(encoder, decoder, head)
