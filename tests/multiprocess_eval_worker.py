"""One process of the two-process evaluator test (run by test_depth_eval.py, not by pytest).

Usage: python tests/multiprocess_eval_worker.py PORT PROCESS_ID OUT_DIR
"""

import json
import os
import sys

import jax
import numpy as np
from jax.sharding import Mesh

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import test_depth_eval as t

from dgr_jax.evaluators.depth_eval import DepthEvaluator


def main():
    port, process_id, out_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=process_id)
    mesh = Mesh(np.asarray(jax.devices()), ("data",))  # 2 processes x 2 CPU devices
    evaluator = DepthEvaluator(
        t._config(), name="mp", source=t._source(), input_size=t.INPUT, mesh=mesh
    )
    result = evaluator.run(t.predict_fn, out_dir=out_dir, step=1)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
