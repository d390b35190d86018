"""The whole evaluation against the official code: official eval.py vs our eval.py, same files.

    python benchmarks/eval_parity.py --host newcrfs --official PATH/TO/NeWCRFs
    python benchmarks/eval_parity.py --host pixelformer --official PATH/TO/PixelFormer

`--official`: a checkout of aliyun/NeWCRFs (we compared against d327bf7) or
ashutosh1807/PixelFormer (bb0ae9f); nothing of it is copied here. For each dataset (NYU, KITTI)
the script
1. writes a small test set in the layouts the official file lists expect, at the real frame
   sizes: NYU 480x640 (`official_splits/test/<scene>/rgb_*.jpg` + 16-bit `sync_depth_*.png`,
   the RGB black outside the BTS registration border, rows 7:474, cols 7:632), KITTI 375x1242
   (raw `image_02` PNGs, sparse 16-bit depth PNGs, the Eigen test list with a `None` line);
   the same files serve our builders (`dgr_jax/data/fake_manual.py` layouts, real sizes);
2. builds the official model (`--version`, default tiny07: the smallest Swin the official code
   builds, so this runs on CPU at the real frame sizes) with random weights, every norm, bias and
   BatchNorm statistic perturbed (`host_parity.perturb`), and saves it as the released
   checkpoints are saved (`{"model": {"module." + key: tensor}}`);
3. converts that file with `python -m dgr_jax.convert --newcrfs-ckpt / --pixelformer-ckpt`;
4. runs the official evaluation: its `eval.py` imported with its own
   `configs/arguments_eval_{nyu,kittieigen}.txt` (only the paths, the checkpoint and
   `--encoder` replaced), its `main_worker` (model in eval mode, strict checkpoint load, its
   `NewDataLoader` in `online_eval` mode, `post_process=True` flip blend, its clamp / crop /
   `compute_errors` and average);
5. runs our `eval.py` with the recipe (`configs/{nyu,kitti}_{host}.py`) on the same files and
   the converted weights (the recipe's model section set to the converted model's encoder);
6. prints the nine metrics side by side with the largest difference, then one JSON object.

Harness-only stand-ins (installed in this process, never in dgr_jax): the official code imports
torchvision (its dataloader uses `transforms.Compose` / `transforms.Normalize`), timm and mmcv,
and PixelFormer's dataloader imports cv2 (unused in evaluation). Where those packages are not
installed, minimal versions are put in `sys.modules`: `Compose` applies its transforms in
order, `Normalize` computes (x - mean) / std per channel of a (C, H, W) tensor, as torchvision
does; timm / mmcv as `host_parity.install_stand_ins`. The official scripts call `.cuda()`
everywhere; on a machine without CUDA `Tensor.cuda` / `Module.cuda` are made the identity here.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from anywhere, not installed
sys.path.insert(0, str(REPO / "benchmarks"))

# Official metric order (compute_errors) and ours.
OFFICIAL_ORDER = ("silog", "abs_rel", "log10", "rmse", "sq_rel", "rmse_log", "d1", "d2", "d3")
TOLERANCE = 1e-4
HOSTS = {
    "newcrfs": ("newcrfs", "--newcrfs-ckpt", "model_{}.ckpt"),
    "pixelformer": ("pixelformer", "--pixelformer-ckpt", "{}.pth"),
}
EVAL_ARGS = {"nyu": "arguments_eval_nyu.txt", "kitti": "arguments_eval_kittieigen.txt"}


# ---------------------------------------------------------------------------------------------
# Test sets in the official layouts.
# ---------------------------------------------------------------------------------------------
def write_nyu(root: Path, n: int, seed: int) -> dict:
    """BTS-layout NYU at 480x640: n official test images with the black registration border."""
    import numpy as np
    from PIL import Image

    from dgr_jax import protocol
    from dgr_jax.data import fake_manual

    size = (protocol.NYU_HEIGHT, protocol.NYU_WIDTH)
    scenes = tuple(f"scene{i}" for i in range(n))
    copy = fake_manual.make_nyu(
        root, scenes=("kitchen_0028b",), frames_per_scene=1, test_scenes=scenes, size=size,
        seed=seed,
    )  # fmt: skip
    top, bottom, left, right = protocol.NYU_TEST_RGB_BOX
    for path in copy.image_file["test"].values():
        rgb = np.array(Image.open(path))
        bordered = np.zeros_like(rgb)
        bordered[top:bottom, left:right] = rgb[top:bottom, left:right]
        Image.fromarray(bordered).save(path, quality=90)
    test = root / "official_splits" / "test"
    return {
        "data_path_eval": f"{test}/",
        "gt_path_eval": f"{test}/",
        "filenames_file_eval": str(root / "splits" / "nyudepthv2_test_files_with_gt.txt"),
    }


def write_kitti(root: Path, n: int, seed: int) -> dict:
    """KITTI raw 375x1242 frames, sparse 16-bit GT, the Eigen test list with a None line.

    Our builder finds GT under data_depth_annotated/[val/]; the official loader under
    <gt_path>/<date>/<drive>/proj_depth/...: that tree is made of links to the same files.
    """
    from dgr_jax import protocol
    from dgr_jax.data import fake_manual
    from dgr_jax.data.builders import kitti_depth_eigen

    frames = max(1, (n + 1) // 2)
    fake_manual.make_kitti(
        root, size=protocol.KITTI_FULL_FRAME, frames=frames, seed=seed, valid_fraction=0.05
    )
    gt_official = root / "gt_official"
    annotated = root / kitti_depth_eigen.GT_DIR
    lines = (root / "splits" / kitti_depth_eigen.TEST_LIST).read_text().split("\n")
    for line in filter(None, lines):
        rgb_rel, depth_rel, _ = line.split()
        if depth_rel == kitti_depth_eigen.NO_GT:
            continue
        found = [p for p in (annotated / depth_rel, annotated / "val" / depth_rel) if p.exists()]
        target = gt_official / rgb_rel.split("/")[0] / depth_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(found[0], target)
    return {
        "data_path_eval": f"{root / 'raw'}/",
        "gt_path_eval": f"{gt_official}/",
        "filenames_file_eval": str(root / "splits" / kitti_depth_eigen.TEST_LIST),
    }


# ---------------------------------------------------------------------------------------------
# The official side.
# ---------------------------------------------------------------------------------------------
def install_harness_stand_ins() -> list[str]:
    """torchvision.transforms (Compose, Normalize) and cv2 where missing; then host_parity's."""
    import torch
    from host_parity import install_stand_ins

    installed = []
    try:
        importlib.import_module("torchvision.transforms")
    except ImportError:

        class Compose:
            def __init__(self, transforms):
                self.transforms = list(transforms)

            def __call__(self, x):
                for t in self.transforms:
                    x = t(x)
                return x

        class Normalize:
            def __init__(self, mean, std):
                self.mean = torch.as_tensor(mean)[:, None, None]
                self.std = torch.as_tensor(std)[:, None, None]

            def __call__(self, x):
                mean = self.mean.to(x.dtype)
                std = self.std.to(x.dtype)
                return (x - mean) / std

        transforms = types.ModuleType("torchvision.transforms")
        transforms.Compose, transforms.Normalize = Compose, Normalize
        tv = types.ModuleType("torchvision")
        tv.transforms = transforms
        sys.modules.update({"torchvision": tv, "torchvision.transforms": transforms})
        installed.append("torchvision.transforms")
    try:
        importlib.import_module("cv2")
    except ImportError:
        sys.modules["cv2"] = types.ModuleType("cv2")
        installed.append("cv2")
    installed += install_stand_ins()
    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *a, **k: self
        torch.nn.Module.cuda = lambda self, *a, **k: self
        installed.append("cuda->cpu")
    return installed


def make_official_checkpoint(host: str, package: Path, version: str, max_depth, seed, path):
    import torch
    from host_parity import HOSTS as MODELS
    from host_parity import perturb

    spec = MODELS[host]
    cls = getattr(importlib.import_module(spec.module), spec.cls)
    torch.manual_seed(seed)
    model = cls(version=version, max_depth=max_depth).eval()
    perturb(model, seed)
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)


def official_args(official: Path, host: str, dataset: str, paths: dict, ckpt, version) -> Path:
    """The official eval arguments file with only paths, checkpoint and encoder replaced."""
    src = official / "configs" / EVAL_ARGS[dataset]
    replace = {**paths, "checkpoint_path": str(ckpt), "encoder": version}
    out = []
    for line in src.read_text().splitlines():
        parts = line.split()
        if parts and parts[0].lstrip("-") in replace:
            line = f"{parts[0]} {replace[parts[0].lstrip('-')]}"
        out.append(line)
    dst = Path(tempfile.mkdtemp()) / EVAL_ARGS[dataset]
    dst.write_text("\n".join(out) + "\n")
    return dst


def run_official(package: Path, args_file: Path) -> tuple[dict, float]:
    """Import the official eval.py with `args_file` and run its main_worker; its metrics."""
    sys.argv = ["eval.py", str(args_file)]
    for name in [m for m in sys.modules if m in ("eval", "utils") or m.startswith("dataloaders")]:
        del sys.modules[name]
    module = importlib.import_module("eval")
    captured = {}
    original = module.eval

    def capturing_eval(*a, **k):
        captured["measures"] = original(*a, **k)
        return captured["measures"]

    module.eval = capturing_eval
    module.args.distributed = False  # what the official main() sets before main_worker
    t0 = time.perf_counter()
    module.main_worker(module.args)
    seconds = time.perf_counter() - t0
    measures = captured["measures"].numpy().astype(float)
    return {k: float(v) for k, v in zip(OFFICIAL_ORDER, measures[:9])}, seconds


# ---------------------------------------------------------------------------------------------
# Our side.
# ---------------------------------------------------------------------------------------------
def run_ours(host, dataset, manual_dir, weights, workdir) -> tuple[dict, dict, float]:
    """Our eval.py (subprocess) with the recipe, the converted weights and the same files."""
    from dgr_jax.convert.checkpoint import read_meta

    encoder = read_meta(str(weights))["model"]["encoder"]
    flags = [
        f"--config.init_from={weights}",
        f"--config.data_dir={workdir / 'data'}",
        f"--config.input.manual_dir={manual_dir}",
        "--config.evals.test.num_pictures=0",
        "--config.evals.test.batch_size=1",
        # The recipe is Swin-L; the converted model is the official `version` (Swin-T for
        # tiny07, whose widths are our variant "T"'s).
        f"--config.model.encoder.variant={encoder['variant']}",
    ]
    cmd = [
        sys.executable, str(REPO / "eval.py"), f"--config={REPO}/configs/{dataset}_{host}.py",
        f"--workdir={workdir}", *flags,
    ]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    metrics = json.loads((workdir / "eval" / "test" / "metrics.json").read_text())
    return {k: float(metrics[k]) for k in OFFICIAL_ORDER}, metrics, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", choices=sorted(HOSTS), required=True)
    parser.add_argument("--official", required=True, type=Path, help="official repo checkout")
    parser.add_argument("--version", default="tiny07", help="official encoder (tiny07, ...)")
    parser.add_argument("--images", type=int, default=3, help="test images per dataset")
    parser.add_argument("--datasets", nargs="+", default=["nyu", "kitti"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: tmp)")
    args = parser.parse_args(argv)
    subdir, convert_flag, ckpt_name = HOSTS[args.host]
    package = (args.official / subdir).resolve()
    work = args.work or Path(tempfile.mkdtemp(prefix=f"eval_parity_{args.host}_"))
    work.mkdir(parents=True, exist_ok=True)

    import torch
    from host_parity import _commit

    from dgr_jax import jsonio, protocol

    stand_ins = install_harness_stand_ins()
    sys.path.insert(0, str(package))
    writers = {"nyu": write_nyu, "kitti": write_kitti}
    max_depths = {"nyu": protocol.NYU_MAX_DEPTH, "kitti": protocol.KITTI_MAX_DEPTH}
    rows, results = [], {}
    for dataset in args.datasets:
        root = work / dataset
        shutil.rmtree(root, ignore_errors=True)
        paths = writers[dataset](root / "manual", args.images, args.seed)
        ckpt = root / ckpt_name.format(dataset)
        make_official_checkpoint(
            args.host, package, args.version, max_depths[dataset], args.seed, ckpt
        )
        weights = root / "converted"
        subprocess.run(
            [sys.executable, "-m", "dgr_jax.convert", convert_flag, str(ckpt),
             "--variant", dataset, "--out", str(weights)],
            check=True, cwd=REPO, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        args_file = official_args(args.official, args.host, dataset, paths, ckpt, args.version)
        cwd = os.getcwd()
        os.chdir(package)
        try:
            official, t_official = run_official(package, args_file)
        finally:
            os.chdir(cwd)
        ours, metrics, t_ours = run_ours(
            args.host, dataset, root / "manual", weights, root / "ours"
        )
        diffs = {k: abs(ours[k] - official[k]) for k in OFFICIAL_ORDER}
        results[dataset] = {
            "official": official,
            "ours": ours,
            "abs_diff": diffs,
            "max_abs_diff": max(diffs.values()),
            "num_valid_images": metrics["num_valid_images"],
            "protocol": metrics["protocol"],
            "seconds_official": round(t_official, 1),
            "seconds_ours_eval_py": round(t_ours, 1),
        }
        for k in OFFICIAL_ORDER:
            rows.append((dataset, k, official[k], ours[k], diffs[k]))
    print(f"\n{'dataset':8} {'metric':9} {'official':>12} {'ours':>12} {'|diff|':>10}")
    for dataset, k, a, b, d in rows:
        print(f"{dataset:8} {k:9} {a:12.6f} {b:12.6f} {d:10.2e}")
    worst = max(r["max_abs_diff"] for r in results.values())
    print(f"largest |diff| {worst:.2e} (tolerance {TOLERANCE:g})\n")
    print(
        jsonio.dumps(
            {
                "benchmark": "eval_parity",
                "host": args.host,
                "version": args.version,
                "images_per_dataset": args.images,
                "results": results,
                "max_abs_diff": worst,
                "within_tolerance": worst <= TOLERANCE,
                "official_commit": _commit(args.official),
                "dgr_jax_commit": _commit(REPO),
                "stand_ins": stand_ins,
                "torch": torch.__version__,
            }
        )
    )
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
