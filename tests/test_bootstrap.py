"""The hierarchical bootstrap of the ablation study: known answers, pairing, undefined images."""

from __future__ import annotations

import numpy as np
import pytest

from dgr_jax.analysis.common import bootstrap


def _arm(rng, seeds: int, images: int, *, seed_sd: float, image_sd: float, shift=0.0):
    """values[s, i] = image difficulty + a per-seed offset + noise + shift."""
    difficulty = np.linspace(0.1, 1.0, images)
    offsets = rng.normal(0.0, seed_sd, size=(seeds, 1))
    return difficulty + offsets + rng.normal(0.0, image_sd, size=(seeds, images)) + shift


def test_identical_arms_give_an_interval_around_zero():
    rng = np.random.default_rng(0)
    a = _arm(rng, 3, 100, seed_sd=0.05, image_sd=0.1)
    iv = bootstrap.hierarchical_bootstrap(a, a.copy(), num_resamples=500)
    assert iv.delta == 0.0 and iv.lo == 0.0 and iv.hi == 0.0
    # Two arms that differ only in noise: the interval contains 0.
    b = _arm(rng, 3, 100, seed_sd=0.05, image_sd=0.1)
    c = _arm(rng, 3, 100, seed_sd=0.05, image_sd=0.1)
    iv = bootstrap.hierarchical_bootstrap(b, c, num_resamples=2000)
    assert iv.lo < 0.0 < iv.hi
    assert bootstrap.verdict(iv.lo, iv.hi, "lower") == "not shown"


def test_a_constant_shift_gives_an_interval_around_the_shift():
    rng = np.random.default_rng(1)
    base = _arm(rng, 3, 80, seed_sd=0.05, image_sd=0.1)
    iv = bootstrap.hierarchical_bootstrap(base - 0.2, base, num_resamples=500)
    np.testing.assert_allclose([iv.delta, iv.lo, iv.hi], [-0.2, -0.2, -0.2], atol=1e-12)
    # With independent noise on top, the interval still sits around the shift and excludes 0.
    noisy = _arm(rng, 3, 200, seed_sd=0.02, image_sd=0.05, shift=-0.2)
    iv = bootstrap.hierarchical_bootstrap(
        noisy, _arm(rng, 3, 200, seed_sd=0.02, image_sd=0.05), num_resamples=2000
    )
    assert iv.lo < -0.2 < iv.hi and iv.hi < -0.1
    assert bootstrap.verdict(iv.lo, iv.hi, "lower") == "supported"
    assert bootstrap.verdict(iv.lo, iv.hi, "higher") == "contradicted"


def test_more_seeds_shrink_the_interval():
    rng = np.random.default_rng(2)
    widths = {}
    for seeds in (3, 30):
        # Seed noise dominates: the interval must reflect it and narrow as seeds are added
        # (expected ratio of widths ~0.4: sqrt(3 / 30) times the bootstrap's
        # sqrt((n - 1) / n) factors).
        w = []
        for _ in range(20):
            a = _arm(rng, seeds, 100, seed_sd=0.2, image_sd=0.02)
            b = _arm(rng, seeds, 100, seed_sd=0.2, image_sd=0.02)
            iv = bootstrap.hierarchical_bootstrap(a, b, num_resamples=500, seed=seeds)
            w.append(iv.hi - iv.lo)
        widths[seeds] = np.mean(w)
    assert widths[30] < 0.6 * widths[3]


def test_the_seed_level_widens_the_interval_beyond_image_noise():
    """Resampling images alone would miss the seed-to-seed spread of the arm means."""
    rng = np.random.default_rng(3)
    a = _arm(rng, 3, 150, seed_sd=0.3, image_sd=0.01)
    b = _arm(rng, 3, 150, seed_sd=0.3, image_sd=0.01)
    full = bootstrap.hierarchical_bootstrap(a, b, num_resamples=2000)
    images_only = bootstrap.hierarchical_bootstrap(
        a.mean(0, keepdims=True), b.mean(0, keepdims=True), num_resamples=2000
    )
    np.testing.assert_allclose(full.delta, images_only.delta)
    assert (full.hi - full.lo) > 3 * (images_only.hi - images_only.lo)


def test_undefined_images_are_left_out_for_both_arms():
    a = np.array([[1.0, 2.0, np.nan, 4.0], [1.0, 2.0, 3.0, 4.0]])
    b = np.array([[0.0, 1.0, 0.0, np.nan], [0.0, 1.0, 0.0, 2.0]])
    # Images 0 and 1 are defined everywhere: deltas 1 and 1.
    assert bootstrap.paired_delta(a, b) == 1.0
    iv = bootstrap.hierarchical_bootstrap(a, b, num_resamples=100)
    assert iv.num_images == 2 and iv.num_seeds == 2 and iv.delta == 1.0
    nothing = bootstrap.hierarchical_bootstrap(np.full((2, 3), np.nan), np.zeros((2, 3)))
    assert np.isnan(nothing.delta) and nothing.num_images == 0
    assert bootstrap.verdict(nothing.lo, nothing.hi, "higher") == "not shown"


def test_own_mean_interval_and_one_seed():
    a = np.arange(10, dtype=float)
    iv = bootstrap.hierarchical_bootstrap(a, num_resamples=2000)  # (N,) = one seed
    assert iv.delta == 4.5 and iv.num_seeds == 1 and iv.lo < 4.5 < iv.hi
    assert iv == bootstrap.hierarchical_bootstrap(a, num_resamples=2000)  # seeded: reproducible


def test_verdict_rule_and_bad_input():
    assert bootstrap.verdict(-0.3, -0.1, "lower") == "supported"
    assert bootstrap.verdict(0.1, 0.3, "lower") == "contradicted"
    assert bootstrap.verdict(0.1, 0.3, "higher") == "supported"
    assert bootstrap.verdict(-0.1, 0.3, "higher") == "not shown"
    assert bootstrap.verdict(0.0, 0.3, "higher") == "not shown"  # touching zero is not enough
    with pytest.raises(ValueError, match="better"):
        bootstrap.verdict(0.1, 0.2, "smaller")
    with pytest.raises(ValueError, match="paired"):
        bootstrap.hierarchical_bootstrap(np.zeros((3, 5)), np.zeros((2, 5)))
