"""Vision Transformer backbone and the DPT reassemble stage, registered as encoder "vit".

[paper] The Transformer arm of the comparative study (method.md section 1).
[ours] The backbone follows ViT (Dosovitskiy et al., ICLR 2021): patch 16, class token, learned
position embeddings, pre-norm blocks with exact GELU. Position embeddings are stored for the
grid of `image_size` and resized (bilinearly, as HF DPT; or bicubically, as HF ViTModel's
`interpolate_pos_encoding`) to any input whose sides are multiples of the patch size.
`pos_embed="sincos2d"`: fixed 2-D sine-cosine embeddings for the input's grid (class token
zeros), as big_vision trains ViTs from scratch (Beyer et al., 2022). `stem="conv"` is
Xiao et al.'s convolutional stem (NeurIPS 2021): log2(patch) 3x3 stride-2 convolutions
(channels doubling up to the width, each + LayerNorm + ReLU) and a 1x1 projection, which makes
ViT optimisation faster and less sensitive to the learning rate.
Encoder "vit" = backbone + DPT's reassemble (Ranftl et al., 2021): four layers' tokens ->
readout -> 1x1 projection -> strides 4/8/16/32, {"stage1".."stage4"} like every encoder;
submodule names follow HF `DPTForDepthEstimation` (a 1:1 mapping for `dgr_jax.convert`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import einops
import jax
import jax.numpy as jnp
from flax import nnx

from dgr_jax.models.blocks import attention, layers
from dgr_jax.registry import ENCODERS

STAGES = ("stage1", "stage2", "stage3", "stage4")


@dataclass(frozen=True)
class ViTSize:
    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    neck_hidden_sizes: tuple[int, int, int, int]  # reassemble channels per stage
    out_indices: tuple[int, int, int, int]  # 0-based block indices whose outputs are reassembled


# Width/depth/heads/MLP: B and L from the ViT paper (Dosovitskiy et al. 2021, Table 1); Ti and S
# from DeiT (Touvron et al. 2021, Table 1), as used by big_vision and timm. Neck sizes and output
# layers: DPT-Base (96, 192, 384, 768; layers 2, 5, 8, 11) and DPT-Large (256, 512, 1024, 1024;
# layers 4, 11, 17, 23) from Ranftl et al. 2021 / HF DPTConfig; Ti/S scale DPT-Base's neck with
# the width. "tiny_test" is ours, for tests and smoke runs.
VARIANTS: dict[str, ViTSize] = {
    "Ti": ViTSize(192, 12, 3, 768, (24, 48, 96, 192), (2, 5, 8, 11)),
    "S": ViTSize(384, 12, 6, 1536, (48, 96, 192, 384), (2, 5, 8, 11)),
    "B": ViTSize(768, 12, 12, 3072, (96, 192, 384, 768), (2, 5, 8, 11)),
    "L": ViTSize(1024, 24, 16, 4096, (256, 512, 1024, 1024), (4, 11, 17, 23)),
    "tiny_test": ViTSize(32, 4, 2, 128, (8, 16, 32, 32), (0, 1, 2, 3)),
}

_XAVIER = nnx.initializers.xavier_uniform()
_EMBED_INIT = nnx.initializers.normal(0.02)


class ViTOutput(NamedTuple):
    last_hidden_state: jax.Array  # (B, 1+N, D), after the final LayerNorm
    hidden_states: tuple[jax.Array, ...]  # depth+1 entries: embeddings, then each block's output


def sincos_2d(grid: tuple[int, int], width: int, temperature: float = 10_000.0) -> jax.Array:
    """Fixed 2-D position embeddings (1, h*w, width): [sin x, cos x, sin y, cos y] features,
    each at width/4 frequencies temperature^(-k / (width/4)), x and y in patch units."""
    if width % 4:
        raise ValueError(f"sincos2d position embeddings need a width divisible by 4, got {width}")
    quarter = width // 4
    omega = 1.0 / temperature ** (jnp.arange(quarter, dtype=jnp.float32) / quarter)
    y, x = jnp.meshgrid(
        jnp.arange(grid[0], dtype=jnp.float32),
        jnp.arange(grid[1], dtype=jnp.float32),
        indexing="ij",
    )
    ax = x.reshape(-1, 1) * omega  # (h*w, width/4)
    ay = y.reshape(-1, 1) * omega
    return jnp.concatenate([jnp.sin(ax), jnp.cos(ax), jnp.sin(ay), jnp.cos(ay)], axis=1)[None]


class ConvStem(nnx.Module):
    """(B, H, W, 3) -> (B, H/p, W/p, width): log2(p) x [3x3 stride-2 conv, LayerNorm, ReLU] with
    channels width/2^(n-1) .. width, then a 1x1 conv (Xiao et al. 2021)."""

    def __init__(self, width: int, patch_size: int, *, dtype: jnp.dtype, rngs: nnx.Rngs):
        n = patch_size.bit_length() - 1
        if patch_size != 2**n or n < 1:
            raise ValueError(f"the conv stem needs a power-of-two patch size, got {patch_size}")
        channels = [max(width >> (n - 1 - i), 8) for i in range(n)]
        ins = [3, *channels[:-1]]
        self.convs = nnx.List(
            [
                layers.conv(c_in, c, 3, stride=2, dtype=dtype, rngs=rngs)
                for c_in, c in zip(ins, channels, strict=True)
            ]
        )
        self.norms = nnx.List(
            [nnx.LayerNorm(c, epsilon=1e-6, dtype=dtype, rngs=rngs) for c in channels]
        )
        self.projection = layers.conv(channels[-1], width, 1, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = jax.nn.relu(norm(conv(x)))  # (B, H, W, C) -> (B, H/2, W/2, C')
        return self.projection(x)


class ViTEmbeddings(nnx.Module):
    """Class token + linear patch embedding (einops patchify) + position embeddings (learned and
    resized, or fixed sincos2d)."""

    def __init__(
        self,
        width: int,
        patch_size: int,
        image_size: Sequence[int],
        *,
        pos_embed_interp: str,
        pos_embed_offset: float = 0.0,
        pos_embed: str = "learned",
        stem: str = "patchify",
        dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        if stem not in ("patchify", "conv"):
            raise ValueError(f"stem must be 'patchify' or 'conv', got {stem!r}")
        if image_size[0] % patch_size or image_size[1] % patch_size:
            raise ValueError(f"image_size {tuple(image_size)} not divisible by patch {patch_size}")
        if pos_embed not in ("learned", "sincos2d"):
            raise ValueError(f"pos_embed must be 'learned' or 'sincos2d', got {pos_embed!r}")
        self.patch_size = patch_size
        self.grid = (image_size[0] // patch_size, image_size[1] // patch_size)
        self.pos_embed_interp = pos_embed_interp
        self.pos_embed_offset = float(pos_embed_offset)
        self.dtype = dtype
        num_pos = 1 + self.grid[0] * self.grid[1]
        self.cls_token = nnx.Param(_EMBED_INIT(rngs.params(), (1, 1, width)))
        self.width = width
        self.position_embeddings = (
            nnx.Param(_EMBED_INIT(rngs.params(), (1, num_pos, width)))
            if pos_embed == "learned"
            else None
        )
        # A patch is flattened in (row, column, channel) order: kernel (p*p*3, D).
        self.projection = (
            nnx.Linear(
                patch_size * patch_size * 3, width, dtype=dtype, kernel_init=_XAVIER, rngs=rngs
            )
            if stem == "patchify"
            else None
        )
        self.stem = ConvStem(width, patch_size, dtype=dtype, rngs=rngs) if stem == "conv" else None

    def _positions(self, grid: tuple[int, int]) -> jax.Array:
        if self.position_embeddings is None:  # sincos2d: zeros for the class token
            patch_pos = sincos_2d(grid, self.width)
            return jnp.concatenate([jnp.zeros((1, 1, self.width), patch_pos.dtype), patch_pos], 1)
        pos = self.position_embeddings[...]
        if grid == self.grid:
            return pos
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        patch_pos = patch_pos.reshape(1, *self.grid, -1)  # (1, gh*gw, D) -> (1, gh, gw, D)
        scales = None
        if self.pos_embed_offset:  # official DINOv2: torch scale_factor (g + 0.1) / G
            scales = tuple((g + self.pos_embed_offset) / s for g, s in zip(grid, self.grid))
        patch_pos = layers.resize(patch_pos, grid, method=self.pos_embed_interp, scales=scales)
        patch_pos = patch_pos.reshape(1, grid[0] * grid[1], -1)  # (1, h, w, D) -> (1, h*w, D)
        return jnp.concatenate([cls_pos, patch_pos], axis=1)

    def __call__(self, images: jax.Array) -> jax.Array:
        b, h, w, _ = images.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"input {h}x{w} is not divisible by the patch size {p}")
        if self.stem is not None:
            tokens = self.stem(images.astype(self.dtype))  # (B, h, w, D)
            tokens = tokens.reshape(b, -1, tokens.shape[-1])  # (B, h, w, D) -> (B, N, D)
        else:
            patches = einops.rearrange(
                images.astype(self.dtype), "b (h p1) (w p2) c -> b (h w) (p1 p2 c)", p1=p, p2=p
            )
            tokens = self.projection(patches)  # (B, N, D)
        cls = jnp.broadcast_to(self.cls_token[...].astype(self.dtype), (b, 1, tokens.shape[-1]))
        tokens = jnp.concatenate([cls, tokens], axis=1)  # (B, 1+N, D)
        return tokens + self._positions((h // p, w // p)).astype(self.dtype)


class ViTSelfAttention(nnx.Module):
    """Multi-head self-attention (`attention.dot_product_attention`: XLA's fused kernels on GPUs,
    a hand-written gradient on the CPU)."""

    def __init__(
        self, width: int, num_heads: int, *, qkv_bias: bool, dtype: jnp.dtype, rngs: nnx.Rngs
    ):
        if width % num_heads:
            raise ValueError(f"width {width} not divisible by {num_heads} heads")
        self.num_heads = num_heads
        kw = {"dtype": dtype, "kernel_init": _XAVIER, "rngs": rngs}
        self.query = nnx.Linear(width, width, use_bias=qkv_bias, **kw)
        self.key = nnx.Linear(width, width, use_bias=qkv_bias, **kw)
        self.value = nnx.Linear(width, width, use_bias=qkv_bias, **kw)
        self.out = nnx.Linear(width, width, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, d = x.shape
        heads = (b, t, self.num_heads, d // self.num_heads)  # (B, T, D) -> (B, T, N, D/N)
        q = self.query(x).reshape(heads)
        k = self.key(x).reshape(heads)
        v = self.value(x).reshape(heads)
        o = attention.dot_product_attention(q, k, v)  # (B, T, N, D/N)
        return self.out(o.reshape(b, t, d))  # (B, T, N, D/N) -> (B, T, D)


class ViTMLP(nnx.Module):
    def __init__(self, width: int, mlp_dim: int, *, dtype: jnp.dtype, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(width, mlp_dim, dtype=dtype, kernel_init=_XAVIER, rngs=rngs)
        self.fc2 = nnx.Linear(mlp_dim, width, dtype=dtype, kernel_init=_XAVIER, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(layers.gelu(self.fc1(x)))


class ViTLayer(nnx.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(
        self,
        width: int,
        num_heads: int,
        mlp_dim: int,
        *,
        layer_norm_eps: float,
        qkv_bias: bool,
        layer_scale: float | None = None,
        dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        ln = {"epsilon": layer_norm_eps, "dtype": dtype, "rngs": rngs}
        self.layernorm_before = nnx.LayerNorm(width, **ln)
        self.attention = ViTSelfAttention(
            width, num_heads, qkv_bias=qkv_bias, dtype=dtype, rngs=rngs
        )
        self.layernorm_after = nnx.LayerNorm(width, **ln)
        self.mlp = ViTMLP(width, mlp_dim, dtype=dtype, rngs=rngs)
        # LayerScale (CaiT; used by DINOv2): per-channel gains on both residual branches.
        scale = None if layer_scale is None else jnp.full((width,), layer_scale, jnp.float32)
        self.layer_scale1 = None if scale is None else nnx.Param(scale)
        self.layer_scale2 = None if scale is None else nnx.Param(scale)

    def _scale(self, x: jax.Array, gain: nnx.Param | None) -> jax.Array:
        return x if gain is None else x * gain[...].astype(x.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self._scale(self.attention(self.layernorm_before(x)), self.layer_scale1)
        return x + self._scale(self.mlp(self.layernorm_after(x)), self.layer_scale2)


def _call_layer(layer: ViTLayer, x: jax.Array) -> jax.Array:
    return layer(x)


class ViT(nnx.Module):
    """The ViT backbone: images (B, H, W, 3) -> ViTOutput (tokens with the class token first)."""

    def __init__(
        self,
        *,
        width: int,
        depth: int,
        num_heads: int,
        mlp_dim: int,
        patch_size: int = 16,
        image_size: Sequence[int] = (224, 224),
        layer_norm_eps: float = 1e-6,
        qkv_bias: bool = True,
        layer_scale: float | None = None,
        pos_embed_interp: str = "bilinear",
        pos_embed_offset: float = 0.0,
        pos_embed: str = "learned",
        stem: str = "patchify",
        dtype: jnp.dtype = jnp.float32,
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        self.remat = remat
        self.embeddings = ViTEmbeddings(
            width,
            patch_size,
            image_size,
            pos_embed_interp=pos_embed_interp,
            pos_embed_offset=pos_embed_offset,
            pos_embed=pos_embed,
            stem=stem,
            dtype=dtype,
            rngs=rngs,
        )
        self.layers = nnx.List(
            [
                ViTLayer(
                    width,
                    num_heads,
                    mlp_dim,
                    layer_norm_eps=layer_norm_eps,
                    qkv_bias=qkv_bias,
                    layer_scale=layer_scale,
                    dtype=dtype,
                    rngs=rngs,
                )
                for _ in range(depth)
            ]
        )
        self.layernorm = nnx.LayerNorm(width, epsilon=layer_norm_eps, dtype=dtype, rngs=rngs)

    def __call__(self, images: jax.Array, *, train: bool = False) -> ViTOutput:
        del train  # no dropout or batch statistics
        call = nnx.remat(_call_layer) if self.remat else _call_layer
        x = self.embeddings(images)
        hidden = [x]
        for layer in self.layers:
            x = call(layer, x)
            hidden.append(x)
        return ViTOutput(self.layernorm(x), tuple(hidden))


class ReassembleLayer(nnx.Module):
    """1x1 projection to the stage's channels, then resampling by `factor` (4, 2, 1 or 0.5)."""

    def __init__(
        self, width: int, channels: int, factor: float, *, dtype: jnp.dtype, rngs: nnx.Rngs
    ):
        self.projection = layers.conv(width, channels, 1, dtype=dtype, rngs=rngs)
        if factor > 1:
            self.resize = layers.ConvTransposeStrided(
                channels, channels, int(factor), dtype=dtype, rngs=rngs
            )
        elif factor == 1:
            self.resize = None
        elif 1 / factor == int(1 / factor):
            stride = int(1 / factor)
            self.resize = layers.conv(channels, channels, 3, stride=stride, dtype=dtype, rngs=rngs)
        else:
            raise ValueError(f"unsupported reassemble factor {factor}")

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.projection(x)
        return x if self.resize is None else self.resize(x)


class ReassembleStage(nnx.Module):
    """DPT reassemble: tokens (B, 1+h*w, D) of four layers -> four NHWC maps."""

    def __init__(
        self,
        width: int,
        neck_hidden_sizes: Sequence[int],
        factors: Sequence[float],
        *,
        readout: str,
        dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        if readout not in ("ignore", "add", "project"):
            raise ValueError(f"readout must be ignore, add or project, got {readout!r}")
        self.readout = readout
        self.layers = nnx.List(
            [
                ReassembleLayer(width, c, f, dtype=dtype, rngs=rngs)
                for c, f in zip(neck_hidden_sizes, factors, strict=True)
            ]
        )
        projects = [
            nnx.Linear(2 * width, width, dtype=dtype, kernel_init=_XAVIER, rngs=rngs)
            for _ in neck_hidden_sizes
        ]
        self.readout_projects = nnx.List(projects) if readout == "project" else None

    def __call__(self, tokens: Sequence[jax.Array], grid: tuple[int, int]) -> list[jax.Array]:
        out = []
        for i, t in enumerate(tokens):
            cls, patches = t[:, :1], t[:, 1:]  # (B, 1, D), (B, h*w, D)
            if self.readout == "add":
                patches = patches + cls
            elif self.readout == "project":
                readout = jnp.broadcast_to(cls, patches.shape)
                patches = self.readout_projects[i](jnp.concatenate([patches, readout], axis=-1))
                patches = layers.gelu(patches)
            x = patches.reshape(t.shape[0], *grid, t.shape[-1])  # (B, h*w, D) -> (B, h, w, D)
            out.append(self.layers[i](x))
        return out


@ENCODERS.register("vit")
class ViTEncoder(nnx.Module):
    """ViT backbone + DPT reassemble -> {"stage1".."stage4"} at strides 4, 8, 16, 32.

    Args:
        variant: a key of `VARIANTS`, or None when width/depth/num_heads/mlp_dim/
            neck_hidden_sizes/out_indices are all given (converted checkpoints).
        patch_size: 16 (the default reassemble factors assume it).
        readout: how the class token enters the patch tokens: "ignore", "add" or "project".
        image_size: (H, W) whose patch grid the position embeddings are stored for.
        reassemble_factors: resampling of the 4 token maps (x4, x2, x1, x0.5 for patch 16).
        layer_norm_eps: 1e-6 (timm/big_vision) for models trained here; HF DPT uses 1e-12.
        pos_embed_interp: "bilinear" (HF DPT) or "bicubic" (HF ViTModel, DINOv2).
        pos_embed_offset: 0 resizes grid G to g by size (transformers); 0.1 as the official
            DINOv2 code, torch scale factor (g + 0.1) / G (equal only at the stored grid).
        pos_embed: "learned" (ViT, DPT, converted checkpoints) or "sincos2d" (fixed; big_vision's
            choice for training from scratch).
        stem: "patchify" (ViT) or "conv" (Xiao et al. 2021's convolutional stem).
        layer_scale: initial LayerScale gain (DINOv2: 1.0), None for plain ViT blocks.
        norm_features: apply the final LayerNorm to the tapped tokens (DINOv2 backbones).
        Other size arguments override the variant's.

    With patch 14 (DINOv2 / Depth Anything) the stage strides are 3.5, 7, 14 and 28.
    """

    def __init__(
        self,
        *,
        variant: str | None = "B",
        patch_size: int = 16,
        readout: str = "project",
        image_size: Sequence[int] = (224, 224),
        width: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        mlp_dim: int | None = None,
        neck_hidden_sizes: Sequence[int] | None = None,
        out_indices: Sequence[int] | None = None,
        reassemble_factors: Sequence[float] = (4, 2, 1, 0.5),
        layer_norm_eps: float = 1e-6,
        qkv_bias: bool = True,
        layer_scale: float | None = None,
        norm_features: bool = False,
        pos_embed_interp: str = "bilinear",
        pos_embed_offset: float = 0.0,
        pos_embed: str = "learned",
        stem: str = "patchify",
        dtype: jnp.dtype = jnp.float32,
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        if variant is not None and variant not in VARIANTS:
            raise ValueError(f"unknown ViT variant {variant!r}; valid: {sorted(VARIANTS)}")
        size = VARIANTS.get(variant)

        def pick(value, field):
            if value is not None:
                return value
            if size is None:
                raise ValueError(f"ViT with variant=None needs an explicit {field}")
            return getattr(size, field)

        width = pick(width, "width")
        depth = pick(depth, "depth")
        neck = tuple(pick(neck_hidden_sizes, "neck_hidden_sizes"))
        self.out_indices = tuple(int(i) for i in pick(out_indices, "out_indices"))
        if len(neck) != 4 or len(self.out_indices) != 4 or max(self.out_indices) >= depth:
            raise ValueError(f"need 4 neck sizes and 4 out indices < {depth}")
        self.patch_size = patch_size
        self.norm_features = norm_features
        self.vit = ViT(
            width=width,
            depth=depth,
            num_heads=pick(num_heads, "num_heads"),
            mlp_dim=pick(mlp_dim, "mlp_dim"),
            patch_size=patch_size,
            image_size=image_size,
            layer_norm_eps=layer_norm_eps,
            qkv_bias=qkv_bias,
            layer_scale=layer_scale,
            pos_embed_interp=pos_embed_interp,
            pos_embed_offset=pos_embed_offset,
            pos_embed=pos_embed,
            stem=stem,
            dtype=dtype,
            remat=remat,
            rngs=rngs,
        )
        self.reassemble_stage = ReassembleStage(
            width, neck, reassemble_factors, readout=readout, dtype=dtype, rngs=rngs
        )
        self.out_channels = dict(zip(STAGES, neck))

    def __call__(
        self, images: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None
    ) -> dict[str, jax.Array]:
        """Stage maps; `rngs` is part of the encoder call contract (no stochastic layers here)."""
        del rngs
        _, h, w, _ = images.shape
        grid = (h // self.patch_size, w // self.patch_size)
        out = self.vit(images, train=train)
        # hidden_states[0] is the embedding output, so block i's output is at index i + 1.
        tokens = [out.hidden_states[i + 1] for i in self.out_indices]
        if self.norm_features:
            tokens = [self.vit.layernorm(t) for t in tokens]
        return dict(zip(STAGES, self.reassemble_stage(tokens, grid)))
