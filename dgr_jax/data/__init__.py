"""dgr_jax.data."""
