"""Paired differences between two trained arms, with a hierarchical bootstrap interval (ours).

Pure numpy. An arm's per-image metric is a matrix `values[s, i]`: training seed s, test image i
(every arm is evaluated on the same images, in the same order). For an arm A against a
baseline B the statistic is

    delta = mean_i ( mean_s A[s, i] - mean_s B[s, i] )

over the images where every entry of both matrices is defined (finite): an edge metric is
undefined (NaN) for an image without edges in either map, and such an image is left out of
that metric's comparison for every seed of both arms, so the two sides average over the same
images. With no undefined entry this is exactly "the mean over images of A's per-image value,
averaged over its seeds, minus B's".

The 95% interval comes from a two-level (hierarchical) bootstrap that follows how the data
arose: seeds are drawn from the seeds trained, then images from the test images, both with
replacement, and the statistic is recomputed on each resample; the interval is the 2.5th and
97.5th percentiles of the resampled statistics (percentile bootstrap). Both levels are paired:
the same seed indices for A and B (seed k of every arm shares the data order, and where the
architectures match, the initialisation) and the same image indices. With a single seed the
seed level is a no-op and the interval covers test-image sampling only. With few seeds (3) the
seed level can only resample among them, so the interval leans narrow (the bootstrap variance of
a mean of n draws is (n - 1) / n of the textbook one); `summary.md` says so.

The verdict on a claim "A is better than B" is mechanical: `supported` when the whole interval
lies on the better side of zero, `contradicted` when it lies wholly on the worse side, and
`not shown` otherwise (zero inside the interval, or nothing to compare).
"""

from __future__ import annotations

import dataclasses

import numpy as np

VERDICTS = ("supported", "contradicted", "not shown")
DIRECTIONS = ("lower", "higher")


@dataclasses.dataclass(frozen=True)
class Interval:
    """A paired difference and its bootstrap interval; NaN when nothing could be compared."""

    delta: float
    lo: float
    hi: float
    num_images: int  # images that entered the comparison
    num_seeds: int


def _as_matrix(values: np.ndarray, name: str) -> np.ndarray:
    m = np.asarray(values, np.float64)
    if m.ndim == 1:
        m = m[None]  # one seed
    if m.ndim != 2 or m.shape[0] < 1:
        raise ValueError(f"{name}: expected (seeds, images), got shape {np.shape(values)}")
    return m


def defined_images(*matrices: np.ndarray) -> np.ndarray:
    """(N,) bool: images whose value is finite for every seed of every matrix."""
    ok = np.ones(matrices[0].shape[1], bool)
    for m in matrices:
        ok &= np.all(np.isfinite(m), axis=0)
    return ok


def paired_delta(arm: np.ndarray, baseline: np.ndarray | None = None) -> float:
    """mean_i (mean_s arm[s, i] - mean_s baseline[s, i]) over the defined images (NaN if none).

    `baseline=None` gives the arm's own mean over images of its seed-averaged values.
    """
    a = _as_matrix(arm, "arm")
    mats = [a] if baseline is None else [a, _as_matrix(baseline, "baseline")]
    ok = defined_images(*mats)
    if not ok.any():
        return float("nan")
    d = a[:, ok].mean(axis=0)
    if baseline is not None:
        d = d - mats[1][:, ok].mean(axis=0)
    return float(d.mean())


def hierarchical_bootstrap(
    arm: np.ndarray,
    baseline: np.ndarray | None = None,
    *,
    num_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """`paired_delta` and its percentile interval from resampling seeds, then images.

    Args:
        arm: (S, N) per-image values of the arm (S seeds, N images), or (N,) for one seed.
        baseline: the same shape for the baseline arm (paired by seed index and image), or
            None for an interval of the arm's own mean.
        num_resamples: bootstrap replicates.
        confidence: coverage of the two-sided percentile interval.
        seed: of the resampling generator (fixed in the study config: the interval is
            reproducible).

    Returns:
        Interval(delta, lo, hi, num_images, num_seeds); delta/lo/hi NaN if no image is defined.
    """
    a = _as_matrix(arm, "arm")
    mats = [a]
    if baseline is not None:
        b = _as_matrix(baseline, "baseline")
        if b.shape != a.shape:
            raise ValueError(
                f"arm and baseline must be paired (same seeds and images): {a.shape} vs {b.shape}"
            )
        mats.append(b)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    ok = defined_images(*mats)
    num_seeds, num_images = a.shape[0], int(ok.sum())
    if num_images == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, 0, num_seeds)
    # The per-(seed, image) paired difference: resampling it keeps both levels paired.
    diff = a[:, ok] if baseline is None else a[:, ok] - mats[1][:, ok]  # (S, n)
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, num_seeds, size=(num_resamples, num_seeds))  # (R, S)
    # Seed level: how often each seed was drawn, then the seed-averaged difference of every
    # image under each resample, (R, S) @ (S, n) -> (R, n) (no (R, S, n) intermediate).
    counts = np.zeros((num_resamples, num_seeds))
    np.add.at(counts, (np.arange(num_resamples)[:, None], seeds), 1.0)
    per_image = counts @ diff / num_seeds
    images = rng.integers(0, num_images, size=(num_resamples, num_images))  # (R, n)
    stats = np.take_along_axis(per_image, images, axis=1).mean(axis=1)  # (R,)
    tail = 100.0 * (1.0 - confidence) / 2.0
    lo, hi = np.percentile(stats, [tail, 100.0 - tail])
    return Interval(float(diff.mean()), float(lo), float(hi), num_images, num_seeds)


def verdict(lo: float, hi: float, better: str) -> str:
    """'supported' | 'contradicted' | 'not shown' for a difference arm - baseline in [lo, hi].

    `better`: "lower" (errors) or "higher" (accuracies, F1 scores): the direction in which the
    arm's value must move for the claim "the arm is better".
    """
    if better not in DIRECTIONS:
        raise ValueError(f"better must be one of {DIRECTIONS}, got {better!r}")
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "not shown"
    sign = -1.0 if better == "lower" else 1.0
    lo_s, hi_s = sorted((sign * lo, sign * hi))  # the interval of the improvement
    if lo_s > 0.0:
        return "supported"
    if hi_s < 0.0:
        return "contradicted"
    return "not shown"
