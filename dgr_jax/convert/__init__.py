"""Weight conversion into dgr_jax models, and the converted-checkpoint format.

    python -m dgr_jax.convert --hf-dir DIR --out OUT                     # see __main__.py
    python -m dgr_jax.convert --newcrfs-ckpt model_nyu.ckpt --variant nyu --out OUT
    python -m dgr_jax.convert --pixelformer-ckpt nyu.pth --variant nyu --out OUT
    python -m dgr_jax.convert --swin-ckpt swin_large_patch4_window7_224_22k.pth --out OUT
    python -m dgr_jax.convert --depth-anything-ckpt depth_anything_v2_vits.pth --encoder vits \
        --out OUT

    from dgr_jax.convert import from_hf
    depth_model = from_hf(transformers.DPTForDepthEstimation(...))      # torch needed here only
    model_cfg, state = load_converted(OUT)                              # no torch needed
    merge_state(model, state)                                           # into a DepthModel

Modules: `checkpoint.py` (the on-disk format, shared by every source), `hf.py` (transformers
models), `newcrfs.py` (official NeWCRFs checkpoints), `pixelformer.py` (official PixelFormer
checkpoints), `depth_anything.py` (official Depth Anything V2 checkpoints), `swin_timm.py`
(microsoft / transformers Swin), `torch_layout.py` (rule-based key mapping, torch file
reading). torch / transformers are imported lazily inside functions only.
"""

from dgr_jax.convert.checkpoint import (
    Converted,
    ConvertedWeights,
    load_converted,
    merge_state,
    save_converted,
)
from dgr_jax.convert.depth_anything import convert_depth_anything_checkpoint
from dgr_jax.convert.hf import convert_hf, convert_hf_dir, from_hf
from dgr_jax.convert.newcrfs import convert_newcrfs_checkpoint
from dgr_jax.convert.pixelformer import convert_pixelformer_checkpoint
from dgr_jax.convert.swin_timm import convert_swin_checkpoint

__all__ = [
    "Converted",
    "ConvertedWeights",
    "convert_depth_anything_checkpoint",
    "convert_hf",
    "convert_hf_dir",
    "convert_newcrfs_checkpoint",
    "convert_pixelformer_checkpoint",
    "convert_swin_checkpoint",
    "from_hf",
    "load_converted",
    "merge_state",
    "save_converted",
]
