"""Building blocks the encoders and decoders are made of (nothing here is registered).

dgr.py (the Depth Gradient Refinement block), attention.py (the ViT's dot-product attention),
layers.py (convs, torch-exact resizing, GELU), host_common.py (what the Swin encoder and the
NeWCRFs / PixelFormer hosts share: windows, PSP, PixelShuffle, torch-exact ops, DGR on the
encoder stages).
"""
