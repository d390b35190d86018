"""One process of the compilation-cache tests (run by test_compile_cache.py, not by pytest).

    python tests/compile_cache_worker.py OUT.npz

Enables the cache as train.py does, then creates a tiny model's state, takes three train steps
and predicts, writing every loss, the final parameters, the prediction and the number of
persistent-cache hits / misses JAX reported to OUT.npz.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dgr_jax import compile_cache

CACHE_DIR = compile_cache.enable()

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax import monitoring  # noqa: E402

from dgr_jax import configlib, optim, steps, xla_options  # noqa: E402
from dgr_jax.losses import make_loss  # noqa: E402

EVENTS = {"/jax/compilation_cache/cache_hits": 0, "/jax/compilation_cache/cache_misses": 0}


def _count(event: str, **_) -> None:
    if event in EVENTS:
        EVENTS[event] += 1


def main(out: str) -> None:
    monitoring.register_event_listener(_count)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = configlib.load(
        os.path.join(root, "configs/synthetic_cnn.py:smoke"), ["loss.terms.otdl=0.0"]
    )
    model_def = steps.model_def_from_config(config)
    tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
    state = jax.jit(lambda: steps.init_state(model_def, tx, 0))()
    step = xla_options.jit(
        steps.make_train_step(
            model_def, make_loss(config.loss), tx, schedule, min_depth=config.loss.min_depth
        )
    )
    rs = np.random.RandomState(0)
    h, w = config.input.size
    batch = {
        "image": rs.randn(2, h, w, 3).astype(np.float32),
        "depth": rs.uniform(0.5, 8.0, (2, h, w)).astype(np.float32),
    }
    losses = []
    for _ in range(3):  # the first step's lr is 0 (warm-up): three steps change the params
        state, metrics = step(state, batch)
        losses.append(np.asarray(metrics["loss"]))
    depth = xla_options.jit(steps.make_predict(model_def))(
        state["params"], state["rest"], batch["image"]
    )
    flat = {
        "param/" + jax.tree_util.keystr(path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(state["params"])
    }
    np.savez(
        out,
        losses=np.stack(losses),
        depth=np.asarray(depth),
        hits=EVENTS["/jax/compilation_cache/cache_hits"],
        misses=EVENTS["/jax/compilation_cache/cache_misses"],
        cache_dir=str(CACHE_DIR),
        **flat,
    )


if __name__ == "__main__":
    main(sys.argv[1])
