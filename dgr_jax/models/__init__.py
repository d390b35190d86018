"""Depth models: encoders (ViT, ResNet), the DPT decoder with DGR, heads, and `build_model`.

Importing this package registers every component in `dgr_jax.registry`.
"""

from dgr_jax.models import decoder, resnet, vit  # noqa: F401  (registration side effects)
from dgr_jax.models.depth_model import DepthModel, build_encoder, build_model, dgr_settings
from dgr_jax.models.dgr import DGR

__all__ = ["DGR", "DepthModel", "build_encoder", "build_model", "dgr_settings"]
