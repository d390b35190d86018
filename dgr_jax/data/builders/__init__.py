"""TFDS builders; importing this package registers them in `dgr_jax.registry.DATASETS`."""

from dgr_jax.data.builders import synthetic_depth  # noqa: F401
