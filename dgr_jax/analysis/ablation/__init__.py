"""The DGR / OTDL ablation study (`study.py`; `python -m dgr_jax.analysis.ablation`)."""
