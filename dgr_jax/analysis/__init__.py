"""The paper's two studies, one sub-package each, and what they share.

- `ablation/`: the DGR / OTDL ablation study (`python -m dgr_jax.analysis.ablation`).
- `sparse_pixel/`: the sparse-pixel comparative study, Transformer vs CNN
  (`python -m dgr_jax.analysis.sparse_pixel`).
- `common/`: training runs (resolve, compare, train or resume), the hierarchical bootstrap,
  figure helpers, gradients, the study workdir (its recorded config) and the command line
  (multi-process flags, preemption).
"""
