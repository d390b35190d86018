"""TFDS builders; importing this package registers them in `dgr_jax.registry.DATASETS`."""

from dgr_jax.data.builders import (  # noqa: F401
    depth_files,
    kitti_depth_eigen,
    nyu_depth_v2_bts,
    synthetic_depth,
)
