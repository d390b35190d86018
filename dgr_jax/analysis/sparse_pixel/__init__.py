"""The sparse-pixel comparative study (`study.py`; `python -m dgr_jax.analysis.sparse_pixel`)."""
