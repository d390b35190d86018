"""Encoders: image (B, H, W, 3) -> {"stage1".."stage4"} NHWC maps at strides 4, 8, 16, 32.

vit.py (ViT, DPT-style reassembly; "vit"), resnet.py (the CNN arm; "resnet"), swin.py (the
NeWCRFs / PixelFormer backbone; "swin"). Importing this package registers them.
"""

from dgr_jax.models.encoders import resnet, swin, vit  # noqa: F401  (registration)
