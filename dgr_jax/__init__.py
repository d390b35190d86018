"""dgr-jax: monocular depth estimation in JAX/Flax NNX.

Reimplements "Improving Depth Gradient Continuity in Transformers" (Yao, Wu, Zhang, BMVC 2024):
the Transformer-vs-CNN sparse-pixel study, the Depth Gradient Refinement (DGR) block and the
Optimal Transport Depth Loss (OTDL), on top of a sharded, checkpointed training framework.
"""

__version__ = "0.1.0"
