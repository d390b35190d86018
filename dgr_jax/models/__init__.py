"""Depth models: encoders (ViT, ResNet, Swin), decoders (DPT, NeWCRFs) with DGR, heads.

Importing this package registers every component in `dgr_jax.registry`.
"""

from dgr_jax.models import decoder, newcrfs, resnet, swin, vit  # noqa: F401  (registration)
from dgr_jax.models.depth_model import DepthModel, build_encoder, build_model, dgr_settings
from dgr_jax.models.dgr import DGR

__all__ = ["DGR", "DepthModel", "build_encoder", "build_model", "dgr_settings"]
