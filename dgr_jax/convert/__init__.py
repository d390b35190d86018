"""dgr_jax.convert."""
