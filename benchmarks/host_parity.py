"""Numerical parity of our NeWCRFs with the official PyTorch `NewCRFDepth`, same random weights.

The official code is not part of this repository: point `--newcrfs-repo` at a local checkout
of aliyun/NeWCRFs (we compared against d327bf7) in an environment where its model code imports
(torch, plus timm's `DropPath`/`trunc_normal_` and mmcv's `ConvModule`; `--extra-path` is
prepended to sys.path, e.g. for a folder with stand-ins of those two).

    python benchmarks/newcrfs_parity.py --newcrfs-repo ~/src/NeWCRFs --version tiny07 \
        --size 480 640

What it does: builds `NewCRFDepth(version, max_depth)` (eval mode), perturbs every norm
scale/bias, every Linear/conv bias and the BatchNorm running statistics (the official init
leaves them at 1/0), wraps the state dict as the released checkpoints are
({"model": {"module." + key: ...}}), converts it with `dgr_jax.convert.newcrfs`
(`convert_newcrfs_checkpoint`, what `python -m dgr_jax.convert --newcrfs-ckpt` writes),
builds our DepthModel with `build_model` from the config read off the weights, and compares
the depth maps of one random batch.
Prints one JSON object (errors in metres).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, not installed


def _commit(path: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        marker = path / "COMMIT"
        return marker.read_text().strip() if marker.exists() else "unknown"


def perturb(model, seed: int) -> None:
    """Make every parameter and buffer informative (norms, biases, BN statistics)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.ndim == 1:  # LayerNorm / GroupNorm / BN scales
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--newcrfs-repo", required=True, type=Path)
    parser.add_argument("--version", default="tiny07", help="tiny07 | base07 | large07 | ...")
    parser.add_argument("--size", nargs=2, type=int, default=(64, 96), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--max-depth", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extra-path", action="append", default=[])
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    import numpy as np
    import torch
    from flax import nnx

    from dgr_jax import jsonio
    from dgr_jax.convert.newcrfs import convert_newcrfs_checkpoint
    from dgr_jax.convert.torch_layout import assign_pure_dict
    from dgr_jax.models import build_model

    for p in [*args.extra_path, str(args.newcrfs_repo / "newcrfs")]:
        sys.path.insert(0, os.path.abspath(p))
    from networks.NewCRFDepth import NewCRFDepth  # the official model

    torch.manual_seed(args.seed)
    official = NewCRFDepth(version=args.version, max_depth=args.max_depth).eval()
    perturb(official, args.seed)
    h, w = args.size
    images = np.random.RandomState(args.seed).randn(args.batch, 3, h, w).astype(np.float32)
    t0 = time.perf_counter()
    with torch.no_grad():
        ref = official(torch.from_numpy(images)).numpy()[:, 0]  # (B, H, W)
    t_torch = time.perf_counter() - t0

    ckpt = {"model": {f"module.{k}": v for k, v in official.state_dict().items()}}
    # What `python -m dgr_jax.convert --newcrfs-ckpt` converts and writes, without the disk.
    weights = convert_newcrfs_checkpoint(ckpt, variant="nyu")
    weights.model_cfg["decoder"]["max_depth"] = args.max_depth
    ours = nnx.eval_shape(lambda: build_model(weights.model_cfg, rngs=nnx.Rngs(0)))
    assign_pure_dict(ours, weights.tree)  # strict: every variable, every shape
    t0 = time.perf_counter()
    depth, _ = nnx.jit(lambda m, x: m(x))(ours, images.transpose(0, 2, 3, 1))
    out = np.asarray(depth)[..., 0]
    t_jax = time.perf_counter() - t0  # includes compilation

    err = np.abs(out - ref)
    print(
        jsonio.dumps(
            {
                "benchmark": "newcrfs_parity",
                "version": args.version,
                "size": [h, w],
                "batch": args.batch,
                "num_params_official": int(sum(p.numel() for p in official.parameters())),
                "num_params_ours": int(
                    sum(np.size(x) for x in jax.tree.leaves(nnx.state(ours, nnx.Param)))
                ),
                "max_abs_err_m": float(err.max()),
                "mean_abs_err_m": float(err.mean()),
                "max_rel_err": float((err / np.abs(ref)).max()),
                "depth_min_max_mean_m": [float(ref.min()), float(ref.max()), float(ref.mean())],
                "seconds_torch_forward": round(t_torch, 2),
                "seconds_jax_compile_and_forward": round(t_jax, 2),
                "newcrfs_commit": _commit(args.newcrfs_repo),
                "dgr_jax_commit": _commit(Path(__file__).resolve().parents[1]),
                "torch": torch.__version__,
                "jax": jax.__version__,
                "device": str(jax.devices()[0].platform),
            }
        )
    )


if __name__ == "__main__":
    main()
