"""Evaluators: metric formulas (metrics, edges), protocol pieces (crops, tta) and the
registered evaluators. Importing the package registers them in `EVALUATORS`."""

from dgr_jax.evaluators import depth_eval  # noqa: F401  (registers "depth")
