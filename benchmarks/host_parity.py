"""Numerical parity of our NeWCRFs / PixelFormer / Depth Anything V2 with the official PyTorch
models, same weights.

The official code is not part of this repository: point `--repo` at a local checkout of
aliyun/NeWCRFs (`--host newcrfs`; we compared against d327bf7) or ashutosh1807/PixelFormer
(`--host pixelformer`; bb0ae9f), in an environment where its model code imports. It needs
torch plus timm's `DropPath` / `to_2tuple` / `trunc_normal_`, mmcv's `ConvModule` and an
importable `torchvision`; `--stand-ins` provides minimal versions of those three (ours, only
for packages that are not installed), `--extra-path` is prepended to sys.path.

    python benchmarks/host_parity.py --host newcrfs --repo ~/src/NeWCRFs --version tiny07 \
        --size 480 640 --stand-ins
    python benchmarks/host_parity.py --host pixelformer --repo ~/src/PixelFormer \
        --version large07 --size 352 1216 --batch 1 --max-depth 80 --stand-ins

What it does: builds the official model (`NewCRFDepth` / `PixelFormer`, `version`,
`max_depth`; PixelFormer's min_depth stays its default 0.1) in eval mode, perturbs every norm
scale/bias, every Linear/conv bias and the BatchNorm running statistics (the official init
leaves them at 1/0), wraps the state dict as the released checkpoints are
({"model": {"module." + key: ...}}), converts it with what `python -m dgr_jax.convert
--newcrfs-ckpt / --pixelformer-ckpt` runs (`convert_newcrfs_checkpoint` /
`convert_pixelformer_checkpoint`), builds our DepthModel with `build_model` from the config read
off the weights, and compares the depth maps of one random ImageNet-normalised-like batch.
Prints one JSON object (errors in metres).

`--host depth_anything_v2` (DepthAnything/Depth-Anything-V2, a561b84; `--repo` the repository
root): `--encoder vits|vitb|vitl`, relative head (`depth_anything_v2/`) or with `--metric` the
metric one (`metric_depth/depth_anything_v2/`, sigmoid * `--max-depth`). It builds the official
`DepthAnythingV2` with its `model_configs`, perturbs every parameter (norms, biases, LayerScale
gains, class token, position embeddings; the released init leaves them at 1 / 0 / 1e-6 / 0.02),
converts its state dict with what `python -m dgr_jax.convert --depth-anything-ckpt` runs, and
compares depth maps at `--size` (multiples of 14: 518x518, where no position embedding is
resized, and e.g. 476x630, where the official 0.1 offset matters). Its model code imports cv2
and torchvision (for preprocessing only): `--stand-ins` provides empty ones.

    python benchmarks/host_parity.py --host depth_anything_v2 --repo ~/src/Depth-Anything-V2 \
        --encoder vits --size 476 630 --batch 1 [--metric --max-depth 20] --stand-ins
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import subprocess
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, not installed


@dataclasses.dataclass(frozen=True)
class Host:
    subdir: str  # the official package root inside the repository
    module: str  # module of the official model class
    cls: str
    converter: str  # dgr_jax.convert module and function


HOSTS = {
    "newcrfs": Host("newcrfs", "networks.NewCRFDepth", "NewCRFDepth", "newcrfs"),
    "pixelformer": Host("pixelformer", "networks.PixelFormer", "PixelFormer", "pixelformer"),
    # subdir "" (relative head); --metric uses metric_depth/ (see run_depth_anything).
    "depth_anything_v2": Host("", "depth_anything_v2.dpt", "DepthAnythingV2", "depth_anything"),
}
# Official run.py / metric_depth/run.py `model_configs`.
DEPTH_ANYTHING_CONFIGS = {
    "vits": {"features": 64, "out_channels": [48, 96, 192, 384]},
    "vitb": {"features": 128, "out_channels": [96, 192, 384, 768]},
    "vitl": {"features": 256, "out_channels": [256, 512, 1024, 1024]},
}


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


def install_stand_ins() -> list[str]:
    """Minimal stand-ins for timm.models.layers, mmcv.cnn.ConvModule and torchvision, for the
    packages that cannot be imported; returns the names installed. Only what the official model
    code uses at construction and in eval mode (drop path 0 in eval, default inits)."""
    import torch
    from torch import nn

    installed = []

    def missing(name: str) -> bool:
        try:
            importlib.import_module(name)
            return False
        except ImportError:
            return True

    if missing("timm.models.layers"):

        class DropPath(nn.Module):  # identity in eval mode, which is all we run
            def __init__(self, drop_prob: float = 0.0):
                super().__init__()
                self.drop_prob = drop_prob

            def forward(self, x):
                if not self.training or self.drop_prob == 0.0:
                    return x
                keep = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1)) >= self.drop_prob
                return x * keep / (1.0 - self.drop_prob)

        layers = types.ModuleType("timm.models.layers")
        layers.DropPath = DropPath
        layers.to_2tuple = lambda x: tuple(x) if isinstance(x, tuple | list) else (x, x)
        layers.trunc_normal_ = lambda t, std=1.0: nn.init.trunc_normal_(t, std=std)
        timm = types.ModuleType("timm")
        models = types.ModuleType("timm.models")
        timm.models, models.layers = models, layers
        sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers})
        installed.append("timm.models.layers")

    if missing("mmcv.cnn"):

        class ConvModule(nn.Module):
            """conv (bias only without a norm) -> norm named `bn` / `gn` as mmcv -> ReLU."""

            def __init__(self, cin, cout, kernel, stride=1, padding=0, conv_cfg=None,
                         norm_cfg=None, act_cfg=None, **_):  # fmt: skip
                super().__init__()
                self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=norm_cfg is None)
                self.norm_name = None
                if norm_cfg is not None:
                    if norm_cfg["type"] == "GN":
                        self.norm_name = "gn"
                        norm = nn.GroupNorm(norm_cfg["num_groups"], cout)
                    else:
                        self.norm_name = "bn"
                        norm = nn.BatchNorm2d(cout)
                    self.add_module(self.norm_name, norm)
                self.act = nn.ReLU() if act_cfg is None or act_cfg else None

            def forward(self, x):
                x = self.conv(x)
                if self.norm_name is not None:
                    x = getattr(self, self.norm_name)(x)
                return self.act(x) if self.act is not None else x

        cnn = types.ModuleType("mmcv.cnn")
        cnn.ConvModule = ConvModule
        mmcv = types.ModuleType("mmcv")
        mmcv.cnn = cnn
        sys.modules.update({"mmcv": mmcv, "mmcv.cnn": cnn})
        installed.append("mmcv.cnn")

    if missing("torchvision"):
        tv = types.ModuleType("torchvision")
        transforms = types.ModuleType("torchvision.transforms")
        transforms.Compose = list  # Depth Anything's image2tensor only, never called here
        tv.transforms = transforms
        sys.modules.update({"torchvision": tv, "torchvision.transforms": transforms})
        installed.append("torchvision")

    if missing("cv2"):  # Depth Anything's preprocessing constants only
        cv2 = types.ModuleType("cv2")
        for i, name in enumerate(("INTER_CUBIC", "INTER_AREA", "INTER_LINEAR", "INTER_NEAREST")):
            setattr(cv2, name, i)
        sys.modules["cv2"] = cv2
        installed.append("cv2")
    return installed


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


def perturb_all(model, seed: int) -> None:
    """`perturb`, plus LayerScale gains, class token and position embeddings (DINOv2)."""
    import torch

    perturb(model, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(("cls_token", "pos_embed")):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def run_depth_anything(args, host: Host) -> dict:
    """Official DepthAnythingV2 vs ours (see the module docstring); returns the result row."""
    import jax
    import numpy as np
    import torch
    from flax import nnx

    from dgr_jax.convert.depth_anything import convert_depth_anything_checkpoint
    from dgr_jax.convert.torch_layout import assign_pure_dict
    from dgr_jax.models import build_model

    root = args.repo / ("metric_depth" if args.metric else host.subdir)
    for p in [*args.extra_path, str(root)]:
        sys.path.insert(0, os.path.abspath(p))
    official_cls = getattr(importlib.import_module(host.module), host.cls)
    kwargs = {"encoder": args.encoder, **DEPTH_ANYTHING_CONFIGS[args.encoder]}
    if args.metric:
        kwargs["max_depth"] = args.max_depth
    torch.manual_seed(args.seed)
    official = official_cls(**kwargs).eval()
    perturb_all(official, args.seed)
    with torch.no_grad():  # a depth map that varies (and, relative, stays mostly above 0)
        official.depth_head.scratch.output_conv2[2].weight.mul_(10.0)
        if not args.metric:
            official.depth_head.scratch.output_conv2[2].bias.fill_(0.3)
    h, w = args.size
    images = np.random.RandomState(args.seed).randn(args.batch, 3, h, w).astype(np.float32)
    t0 = time.perf_counter()
    with torch.no_grad():
        ref = official(torch.from_numpy(images)).numpy()  # (B, H, W)
    t_torch = time.perf_counter() - t0
    num_params_official = int(sum(p.numel() for p in official.parameters()))
    sd = dict(official.state_dict())
    del official
    weights = convert_depth_anything_checkpoint(
        sd, encoder=args.encoder, max_depth=args.max_depth if args.metric else None
    )
    del sd
    if args.pos_embed_offset is not None:  # a control: transformers' resize is 0
        weights.model_cfg["encoder"]["pos_embed_offset"] = args.pos_embed_offset
    ours = nnx.eval_shape(lambda: build_model(weights.model_cfg, rngs=nnx.Rngs(0)))
    assign_pure_dict(ours, weights.tree)  # strict: every variable, every shape
    t0 = time.perf_counter()
    depth, _ = nnx.jit(lambda m, x: m(x))(ours, images.transpose(0, 2, 3, 1))
    out = np.asarray(depth)[..., 0]
    t_jax = time.perf_counter() - t0
    err = np.abs(out - ref)
    scale = args.max_depth if args.metric else float(np.abs(ref).max())
    return {
        "benchmark": "host_parity",
        "host": args.host,
        "encoder": args.encoder,
        "head": "metric" if args.metric else "relative",
        "pos_embed_offset": weights.model_cfg["encoder"]["pos_embed_offset"],
        "size": [h, w],
        "batch": args.batch,
        "max_depth": scale,
        "num_params_official": num_params_official,
        "num_params_ours": int(
            sum(np.size(x) for x in jax.tree.leaves(nnx.state(ours, nnx.Param)))
        ),
        "max_abs_err": float(err.max()),
        "mean_abs_err": float(err.mean()),
        "max_abs_err_over_max_depth": float(err.max() / scale),
        "pass_1e-4_of_max_depth": bool(err.max() < 1e-4 * scale),
        "depth_min_max_mean": [float(ref.min()), float(ref.max()), float(ref.mean())],
        "fraction_positive": float((ref > 0).mean()),
        "seconds_torch_forward": round(t_torch, 2),
        "seconds_jax_compile_and_forward": round(t_jax, 2),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", choices=sorted(HOSTS), required=True)
    parser.add_argument("--repo", required=True, type=Path, help="official repository checkout")
    parser.add_argument("--version", default="tiny07", help="tiny07 | base07 | large07 | ...")
    parser.add_argument("--size", nargs=2, type=int, default=(64, 96), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--max-depth", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stand-ins", action="store_true", help="stand-ins for timm/mmcv/tv")
    parser.add_argument("--extra-path", action="append", default=[])
    parser.add_argument("--encoder", default="vits", help="depth_anything_v2: vits|vitb|vitl")
    parser.add_argument("--metric", action="store_true", help="depth_anything_v2: metric head")
    parser.add_argument(
        "--pos-embed-offset",
        type=float,
        default=None,
        help="depth_anything_v2 control: override the converted 0.1 (0 = transformers' resize)",
    )
    args = parser.parse_args(argv)
    host = HOSTS[args.host]

    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    if args.host == "depth_anything_v2":
        import torch

        from dgr_jax import jsonio

        stand_ins = install_stand_ins() if args.stand_ins else []
        row = run_depth_anything(args, host)
        row.update(
            official_commit=_commit(args.repo),
            dgr_jax_commit=_commit(Path(__file__).resolve().parents[1]),
            stand_ins=stand_ins,
            torch=torch.__version__,
            jax=jax.__version__,
            device=str(jax.devices()[0].platform),
        )
        print(jsonio.dumps(row))
        return
    import numpy as np
    import torch
    from flax import nnx

    from dgr_jax import jsonio
    from dgr_jax.convert.torch_layout import assign_pure_dict
    from dgr_jax.models import build_model

    convert = getattr(
        importlib.import_module(f"dgr_jax.convert.{host.converter}"),
        f"convert_{host.converter}_checkpoint",
    )
    stand_ins = install_stand_ins() if args.stand_ins else []
    for p in [*args.extra_path, str(args.repo / host.subdir)]:
        sys.path.insert(0, os.path.abspath(p))
    official_cls = getattr(importlib.import_module(host.module), host.cls)

    torch.manual_seed(args.seed)
    official = official_cls(version=args.version, max_depth=args.max_depth).eval()
    perturb(official, args.seed)
    h, w = args.size
    images = np.random.RandomState(args.seed).randn(args.batch, 3, h, w).astype(np.float32)
    t0 = time.perf_counter()
    with torch.no_grad():
        ref = official(torch.from_numpy(images)).numpy()[:, 0]  # (B, H, W)
    t_torch = time.perf_counter() - t0

    num_params_official = int(sum(p.numel() for p in official.parameters()))
    ckpt = {"model": {f"module.{k}": v for k, v in official.state_dict().items()}}
    del official  # Swin-L twice (torch and ours) is the memory peak otherwise
    # What `python -m dgr_jax.convert --<host>-ckpt` converts and writes, without the disk.
    weights = convert(ckpt, variant="nyu")
    weights.model_cfg["decoder"]["max_depth"] = args.max_depth
    dropped = {k: int(ckpt["model"]["module." + k].numel()) for k in weights.dropped}
    del ckpt
    model_cfg, tree = weights.model_cfg, weights.tree
    del weights
    ours = nnx.eval_shape(lambda: build_model(model_cfg, rngs=nnx.Rngs(0)))
    assign_pure_dict(ours, tree)  # strict: every variable, every shape
    del tree
    t0 = time.perf_counter()
    depth, _ = nnx.jit(lambda m, x: m(x))(ours, images.transpose(0, 2, 3, 1))
    out = np.asarray(depth)[..., 0]
    t_jax = time.perf_counter() - t0  # includes compilation

    err = np.abs(out - ref)
    print(
        jsonio.dumps(
            {
                "benchmark": "host_parity",
                "host": args.host,
                "version": args.version,
                "size": [h, w],
                "batch": args.batch,
                "max_depth": args.max_depth,
                "num_params_official": num_params_official,
                "dropped_unused_params": sum(dropped.values()),
                "num_params_ours": int(
                    sum(np.size(x) for x in jax.tree.leaves(nnx.state(ours, nnx.Param)))
                ),
                "max_abs_err_m": float(err.max()),
                "mean_abs_err_m": float(err.mean()),
                "max_rel_err": float((err / np.abs(ref)).max()),
                "depth_min_max_mean_m": [float(ref.min()), float(ref.max()), float(ref.mean())],
                "seconds_torch_forward": round(t_torch, 2),
                "seconds_jax_compile_and_forward": round(t_jax, 2),
                "official_commit": _commit(args.repo),
                "dgr_jax_commit": _commit(Path(__file__).resolve().parents[1]),
                "stand_ins": stand_ins,
                "torch": torch.__version__,
                "jax": jax.__version__,
                "device": str(jax.devices()[0].platform),
            }
        )
    )


if __name__ == "__main__":
    main()
