"""`python -m dgr_jax.models.summary`: params and XLA FLOPs with and without DGR."""

import json
import subprocess
import sys

from configs import synthetic_vit_dgr
from dgr_jax.models.summary import summarize


def test_dgr_adds_params_and_flops():
    result = summarize(synthetic_vit_dgr.get_config("smoke"))
    assert result["params"] > result["params_without_dgr"] > 0
    assert result["flops"] > result["flops_without_dgr"] > 0
    assert result["input_size"] == [32, 48]


def test_cli_prints_json_last_and_no_dgr_counts_agree():
    cmd = [sys.executable, "-m", "dgr_jax.models.summary"]
    cmd += ["--config", "configs/synthetic_cnn.py:smoke"]  # DGR disabled in this config
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert last["params"] == last["params_without_dgr"] > 0
    assert last["flops"] == last["flops_without_dgr"] > 0
