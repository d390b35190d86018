"""The official PixelFormer key layout (`PixelFormer.state_dict()`, bb0ae9f) built from the
architecture, for the converter tests (not collected: no test_ prefix).

Written from the official module structure (networks/PixelFormer.py, SAM.py, PQI.py), not from
our conversion rules, so a rule that maps a key wrongly or misses one fails the tests. Values
come from `newcrfs_layout.synthetic_state_dict` / `zero_state_dict`.
"""

from __future__ import annotations

import dataclasses

from newcrfs_layout import Arch, official_swin_keys

from dgr_jax.models.encoders.swin import SWIN_VARIANTS


@dataclasses.dataclass(frozen=True)
class PFArch:
    """A PixelFormer architecture (Swin + decoder widths); defaults: tiny, for the tests."""

    embed: int = 16
    depths: tuple[int, ...] = (1, 2, 1, 1)
    heads: tuple[int, ...] = (1, 2, 2, 4)
    window: int = 5
    # sam1 has no proj_e (its width equals the encoder's), the others have one.
    sam_dims: tuple[int, ...] = (16, 24, 48, 64)
    sam_heads: tuple[int, ...] = (2, 2, 4, 4)
    sam_window: int = 7
    psp: int = 32
    pools: tuple[int, ...] = (1, 2, 3, 6)
    bins: int = 16
    bcp_hidden: int = 64

    def swin(self) -> Arch:
        return Arch(embed=self.embed, depths=self.depths, heads=self.heads, window=self.window)


# The released architecture ("large07"): Swin-L window 7 and the hard-coded decoder widths.
LARGE07 = PFArch(
    embed=192,
    depths=(2, 2, 18, 2),
    heads=(6, 12, 24, 48),
    window=7,
    sam_dims=(128, 256, 512, 1024),
    sam_heads=(4, 8, 16, 32),
    psp=512,
    bins=256,
    bcp_hidden=2048,
)


def pf_arch_of(model_cfg) -> PFArch:
    """The PFArch that `build_model(model_cfg)` builds (Swin variant table + decoder widths)."""
    enc, dec = model_cfg["encoder"], model_cfg["decoder"]
    variant = SWIN_VARIANTS[enc["variant"]]
    return PFArch(
        embed=enc.get("embed_dim") or variant.embed_dim,
        depths=tuple(enc.get("depths") or variant.depths),
        heads=tuple(enc.get("num_heads") or variant.num_heads),
        window=enc["window_size"],
        sam_dims=tuple(dec["sam_dims"]),
        sam_heads=tuple(dec["sam_heads"]),
        sam_window=dec["sam_window"],
        psp=dec["psp_channels"],
        pools=tuple(dec["pool_scales"]),
        bins=dec["num_bins"],
        bcp_hidden=dec["bcp_hidden"],
    )


def _conv(prefix: str, cout: int, cin: int, k: int = 3) -> dict[str, tuple]:
    return {prefix + ".weight": (cout, cin, k, k), prefix + ".bias": (cout,)}


def _norm(prefix: str, d: int) -> dict[str, tuple]:
    return {prefix + ".weight": (d,), prefix + ".bias": (d,)}


def _linear(prefix: str, dout: int, din: int) -> dict[str, tuple]:
    return {prefix + ".weight": (dout, din), prefix + ".bias": (dout,)}


def official_pixelformer_keys(arch: PFArch) -> dict[str, tuple]:
    """Key -> shape of `PixelFormer.state_dict()` (without the DataParallel `module.`)."""
    keys = official_swin_keys(arch.swin(), "backbone.")
    chans = [arch.embed * 2**i for i in range(4)]
    for i in range(len(arch.pools)):  # PQI = mmcv PSP; every branch GroupNorm (`gn`)
        keys[f"decoder.psp_modules.{i}.1.conv.weight"] = (arch.psp, chans[3], 1, 1)
        keys.update(_norm(f"decoder.psp_modules.{i}.1.gn", arch.psp))
    keys["decoder.bottleneck.conv.weight"] = (arch.psp, chans[3] + len(arch.pools) * arch.psp, 3, 3)
    for leaf in ("weight", "bias", "running_mean", "running_var"):
        keys[f"decoder.bottleneck.bn.{leaf}"] = (arch.psp,)
    keys["decoder.bottleneck.bn.num_batches_tracked"] = ()
    dims = arch.sam_dims
    v_dims = [dims[1] // 4, dims[2] // 4, dims[3] // 4, arch.psp]
    n = arch.sam_window**2
    for k in range(4):
        c, name = dims[k], f"sam{k + 1}"
        if chans[k] != c:
            keys.update(_conv(f"{name}.proj_e", c, chans[k]))
        if v_dims[k] != c:
            keys.update(_conv(f"{name}.proj_q", c, v_dims[k]))
        keys.update(_conv(f"{name}.proj", c, c))  # never used by the forward
        b = f"{name}.sam_block."
        for norm in ("norm1", "normv", "norm2"):
            keys.update(_norm(b + norm, c))
        keys.update(_linear(b + "attn.q", c, c))
        keys.update(_linear(b + "attn.kv", 2 * c, c))
        keys.update(_linear(b + "attn.proj", c, c))
        keys[b + "attn.relative_position_bias_table"] = (
            (2 * arch.sam_window - 1) ** 2,
            arch.sam_heads[k],
        )
        keys[b + "attn.relative_position_index"] = (n, n)
        keys.update(_linear(b + "mlp.fc1", 4 * c, c))
        keys.update(_linear(b + "mlp.fc2", c, 4 * c))
        keys.update(_norm(f"{name}.norm_sam", c))
    keys.update(_linear("bcp.fc1", arch.bcp_hidden, arch.psp))
    keys.update(_linear("bcp.fc2", arch.bins, arch.bcp_hidden))
    keys.update(_conv("disp_head1.conv1", arch.bins, dims[0]))
    return keys


def released_layout(sd: dict) -> dict:
    """As nyu.pth / kitti.pth: {"model": DataParallel state dict} and nothing else."""
    return {"model": {f"module.{k}": v for k, v in sd.items()}}
