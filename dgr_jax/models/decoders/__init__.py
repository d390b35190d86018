"""Decoders and hosts: encoder stage maps -> depth features or the depth map itself.

dpt.py (the DPT fusion decoder of the comparative study, "dpt", and the "sigmoid" / "relu"
depth heads), newcrfs.py + newcrfs_crf.py (the NeWCRFs host, "newcrfs", and the "identity"
head of decoders that end in metres), pixelformer.py + pixelformer_sam.py (the PixelFormer
host, "pixelformer"). The pieces both Swin hosts share (PSP, PixelShuffle, windows, DGR on the
stages) are in `dgr_jax/models/blocks/host_common.py`. Importing this package registers them.
"""

from dgr_jax.models.decoders import dpt, newcrfs, pixelformer  # noqa: F401  (registration)
