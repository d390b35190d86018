"""dgr_jax.losses."""
