"""dgr_jax.evaluators."""
