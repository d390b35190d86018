"""The training input pipeline on grain: shard, shuffle, augment, batch; resumable.

    it = train_iterator(source, pp=..., global_batch=8, seed=0)
    batch = next(it)              # {"image": (b, H, W, 3) float32, "depth": (b, H, W) float32}
    state = it.get_state()        # JSON-serialisable; the trainer checkpoints it
    it2 = train_iterator(...); it2.set_state(state); next(it2)  # == the batch after `state`

Per-process sharding: process p of P reads records p, p + P, p + 2P, ... and yields
global_batch / P examples per step; the trainer assembles the global batch with
`jax.make_array_from_process_local_data`. Shuffling is seeded and reshuffled every epoch;
augmentation randomness is derived by grain from (seed, position), so a restored iterator
produces exactly the batches the uninterrupted one would have.
"""

from __future__ import annotations

import grain
import jax
from absl import flags

from dgr_jax.data.augment import Preprocess


def train_iterator(
    source,
    *,
    pp: str,
    global_batch: int,
    seed: int,
    process_index: int | None = None,
    process_count: int | None = None,
    workers: int = 0,
    prefetch_buffer: int = 2,
) -> grain.DatasetIterator:
    """An infinite, checkpointable iterator of this process's share of each global batch."""
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    if global_batch % pc:
        raise ValueError(
            f"batch_size {global_batch} is not divisible by the {pc} processes; "
            "choose a multiple of the process count"
        )
    n = len(source)
    if n < pc:
        raise ValueError(f"the dataset has {n} examples, fewer than the {pc} processes")
    ds = grain.MapDataset.source(source)
    ds = ds[pi::pc]  # this process's shard
    local_batch = global_batch // pc
    if len(ds) < local_batch:
        raise ValueError(
            f"this process's shard has {len(ds)} examples, fewer than one local batch "
            f"({local_batch}); use a smaller batch_size or more data"
        )
    ds = ds.shuffle(seed=seed).repeat(None)  # reshuffled each epoch
    ds = ds.random_map(Preprocess(pp), seed=seed + 1)
    ds = ds.batch(local_batch, drop_remainder=True)
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    if workers > 0:
        if not flags.FLAGS.is_parsed():  # grain's worker processes read absl flags
            flags.FLAGS.mark_as_parsed()
        it_ds = it_ds.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=workers, per_worker_buffer_size=prefetch_buffer
            )
        )
    return iter(it_ds)
