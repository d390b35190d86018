"""dgr_jax.analysis."""
