"""The mask network's training loss (method.md section 2), as pure jnp functions.

[Hu, Zhang, Okatani, "Visualization of CNNs for Monocular Depth Estimation", ICCV 2019, whose
loss the paper's sparse-pixel analysis follows; their reconstruction loss is the depth loss of
Hu, Ozay, Zhang, Okatani, "Revisiting Single Image Depth Estimation", WACV 2019]
For the frozen network's prediction from the full image Y = N(I) (the target, no gradient) and
from the masked image Y' = N(I * M):

    L_rec = mean log(|Y' - Y| + 0.5)
          + mean log(|dx Y' - dx Y| + 0.5) + mean log(|dy Y' - dy Y| + 0.5)
          + mean(1 - cos(n', n)),       n = (-dx D, -dy D, 1) per pixel,
    L     = L_rec + lambda * mean(M).

dx, dy are the Sobel responses of `dgr_jax.evaluators.edges.sobel` (Hu et al.'s kernels,
cross-correlation, zero padding, unnormalised), the same convention as the edge metrics; the
normals use the same unnormalised responses, as Hu et al.'s code does. Means run over every
pixel of the batch: Y is a dense prediction, so there is no validity mask. Depth in metres.
The minimum of L_rec is 3 log(0.5) (Y' = Y).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dgr_jax.evaluators.edges import sobel
from dgr_jax.evaluators.metrics import as_bhw

# Hu et al.'s offset inside the log: log(|e| + 0.5) has slope 2 at e = 0 and grows slowly for
# large errors (robust to the occasional large error at an occluding edge).
LOG_OFFSET = 0.5


def log_abs_error(a: jax.Array, b: jax.Array) -> jax.Array:
    """mean log(|a - b| + 0.5) over all elements."""
    return jnp.mean(jnp.log(jnp.abs(a - b) + LOG_OFFSET))


def normals(gx: jax.Array, gy: jax.Array) -> jax.Array:
    """Surface normals (-dx D, -dy D, 1) from Sobel responses (B, H, W) -> (B, H, W, 3)."""
    return jnp.stack([-gx, -gy, jnp.ones_like(gx)], axis=-1)


def normal_loss(gx_a: jax.Array, gy_a: jax.Array, gx_b: jax.Array, gy_b: jax.Array) -> jax.Array:
    """mean(1 - cos(n_a, n_b)); the normals' z = 1 keeps both norms >= 1 (no division by 0)."""
    na, nb = normals(gx_a, gy_a), normals(gx_b, gy_b)
    cos = jnp.sum(na * nb, axis=-1) / (jnp.linalg.norm(na, axis=-1) * jnp.linalg.norm(nb, axis=-1))
    return jnp.mean(1.0 - cos)


def reconstruction_loss(
    pred_masked: jax.Array, pred_full: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """L_rec of the module docstring and its four terms.

    Args:
        pred_masked: Y' = N(I * M), (B, H, W) or (B, H, W, 1), metres.
        pred_full: Y = N(I), same shape (the caller stops its gradient).

    Returns:
        (L_rec, {"depth", "grad_x", "grad_y", "normal"}), scalars.
    """
    y_m = as_bhw(pred_masked).astype(jnp.float32)
    y = as_bhw(pred_full).astype(jnp.float32)
    gx_m, gy_m = sobel(y_m)
    gx, gy = sobel(y)
    terms = {
        "depth": log_abs_error(y_m, y),
        "grad_x": log_abs_error(gx_m, gx),
        "grad_y": log_abs_error(gy_m, gy),
        "normal": normal_loss(gx_m, gy_m, gx, gy),
    }
    return sum(terms.values()), terms


def mask_loss(
    pred_masked: jax.Array, pred_full: jax.Array, mask: jax.Array, lam: float | jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """L = L_rec(Y', Y) + lambda * mean(M); terms include "rec" and "mask_mean".

    Args:
        pred_masked: Y', (B, H, W[, 1]).
        pred_full: Y, same shape.
        mask: M in [0, 1], (B, H, W).
        lam: the sparsity weight lambda (a traced scalar is fine: one compilation per sweep).
    """
    rec, terms = reconstruction_loss(pred_masked, pred_full)
    mask_mean = jnp.mean(mask)
    return rec + lam * mask_mean, {**terms, "rec": rec, "mask_mean": mask_mean}
