"""Weight conversion into dgr_jax models, and the converted-checkpoint format.

    from dgr_jax.convert import from_hf
    depth_model = from_hf(transformers.DPTForDepthEstimation(...))   # torch needed here only

    python -m dgr_jax.convert --hf-dir DIR --out OUT     # writes OUT/ (see checkpoint.py)
    model_cfg, state = load_converted(OUT)               # no torch needed
    merge_state(model, state)                            # into a freshly built DepthModel

torch/transformers are imported lazily inside `hf.py` functions only.
"""

from dgr_jax.convert.checkpoint import Converted, load_converted, merge_state, save_converted
from dgr_jax.convert.hf import convert_hf, convert_hf_dir, from_hf

__all__ = [
    "Converted",
    "convert_hf",
    "convert_hf_dir",
    "from_hf",
    "load_converted",
    "merge_state",
    "save_converted",
]
