"""dgr_jax.models."""
