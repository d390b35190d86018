"""Compile for TPU slices and GPU hosts without one: per-device memory, cost and a fit planner.

    python -m dgr_jax.aot --config configs/nyu_vit_dgr.py --target v5e:2x4 [--max-batch]
        [--json OUT] [--config.key=value ...]

See `__main__.py` for the command, `plan.py` for what is compiled, `targets.py` for the names.
"""
