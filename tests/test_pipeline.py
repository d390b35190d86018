"""The grain input pipeline: batches, per-process shards, exact iterator-state restore."""

import numpy as np
import pytest

from dgr_jax.data import pipeline

PP = "rotate(2.5)|flip|random_crop(12,16)|gamma|brightness|colour|normalize"


def _source(n=13, h=16, w=20):
    rng = np.random.default_rng(0)
    return [
        {
            "image": rng.integers(0, 256, (h, w, 3)).astype(np.uint8),
            "depth": np.full((h, w), i + 1, np.float32),  # depth value identifies the record
            "focal": np.float32(10.0),
            "id": f"r{i}".encode(),
        }
        for i in range(n)
    ]


def _ids(batch):
    return sorted({int(v) for v in np.unique(batch["depth"]) if v > 0})


def test_batches_have_the_configured_shapes():
    it = pipeline.train_iterator(_source(), pp=PP, global_batch=4, seed=0)
    b = next(it)
    assert b["image"].shape == (4, 12, 16, 3) and b["image"].dtype == np.float32
    assert b["depth"].shape == (4, 12, 16)


def test_restored_iterator_gives_the_same_next_batches():
    it = pipeline.train_iterator(_source(), pp=PP, global_batch=4, seed=1)
    for _ in range(5):  # crosses an epoch boundary (13 examples, 3 batches per epoch)
        next(it)
    state = it.get_state()
    want = [next(it) for _ in range(4)]
    resumed = pipeline.train_iterator(_source(), pp=PP, global_batch=4, seed=1)
    resumed.set_state(state)
    for a, b in zip(want, (next(resumed) for _ in range(4))):
        assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["depth"], b["depth"])


def test_each_epoch_is_a_new_permutation_and_seeds_differ():
    it = pipeline.train_iterator(_source(12), pp="normalize", global_batch=12, seed=0)
    e1, e2 = next(it), next(it)
    assert _ids(e1) == _ids(e2) == list(range(1, 13))
    assert not np.array_equal(e1["depth"][:, 0, 0], e2["depth"][:, 0, 0])
    other = next(pipeline.train_iterator(_source(12), pp="normalize", global_batch=12, seed=5))
    assert not np.array_equal(e1["depth"][:, 0, 0], other["depth"][:, 0, 0])


def test_processes_split_each_global_batch_without_overlap():
    pp = "flip|random_crop(12,16)|normalize"
    single = pipeline.train_iterator(_source(12), pp=pp, global_batch=4, seed=0)
    shards = [
        pipeline.train_iterator(
            _source(12), pp=pp, global_batch=4, seed=0, process_index=p, process_count=2
        )
        for p in range(2)
    ]
    for _ in range(4):
        whole = next(single)
        parts = [next(it) for it in shards]
        assert all(b["depth"].shape[0] == 2 for b in parts)  # the local share
        assert not set(_ids(parts[0])) & set(_ids(parts[1]))
        # The two shards hold exactly the single-process batch, identically augmented.
        merged = np.concatenate([b["image"] for b in parts])
        a = whole["image"][np.argsort(whole["image"].sum(axis=(1, 2, 3)))]
        b = merged[np.argsort(merged.sum(axis=(1, 2, 3)))]
        assert np.array_equal(a, b)


def test_batch_not_divisible_by_processes_fails_clearly():
    with pytest.raises(ValueError, match="not divisible"):
        pipeline.train_iterator(
            _source(), pp=PP, global_batch=3, seed=0, process_index=0, process_count=2
        )
