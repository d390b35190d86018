"""Depth models: encoders, decoders / hosts with DGR, and the blocks they are made of.

    encoders/   vit.py, resnet.py, swin.py             image -> {"stage1".."stage4"}
    decoders/   dpt.py, newcrfs.py, pixelformer.py     stage maps -> depth (with heads)
    blocks/     dgr.py, attention.py, layers.py, host_common.py
    depth_model.py (DepthModel, build_model), mask_net.py (sparse-pixel masks), summary.py

Importing this package registers every component in `dgr_jax.registry`.
"""

from dgr_jax.models import decoders, encoders  # noqa: F401  (registration)
from dgr_jax.models.blocks.dgr import DGR
from dgr_jax.models.depth_model import DepthModel, build_encoder, build_model, dgr_settings

__all__ = ["DGR", "DepthModel", "build_encoder", "build_model", "dgr_settings"]
