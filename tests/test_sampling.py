"""EpochSampler: the data order is a function of (seed, epoch), shards are exact for validation."""

from ventralkit.data.sampling import EpochSampler


def _indices(sampler):
    return [i for _, i in sampler]


def test_order_depends_on_seed_and_epoch_only():
    a, b = EpochSampler(50, seed=3), EpochSampler(50, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert _indices(a) == _indices(b) and sorted(_indices(a)) == list(range(50))
    b.set_epoch(3)
    assert _indices(a) != _indices(b)


def test_resume_skips_whole_batches():
    full = EpochSampler(50, seed=1, batch_size=8)
    full.set_epoch(4)
    later = EpochSampler(50, seed=1, batch_size=8)
    later.set_epoch(4, start_batch=2)
    assert _indices(later) == _indices(full)[16:] and len(later) == 34


def test_training_shards_are_padded_validation_shards_are_exact():
    n, world = 10, 4
    train = [EpochSampler(n, shuffle=True, rank=r, world_size=world) for r in range(world)]
    val = [EpochSampler(n, shuffle=False, rank=r, world_size=world, pad=False) for r in range(world)]
    # training: every rank the same length (DistributedSampler's padding repeats 2 samples)
    assert {len(s) for s in train} == {3} and sum(len(_indices(s)) for s in train) == 12
    # validation: uneven shards that together hold each sample exactly once
    shards = [_indices(s) for s in val]
    assert [len(s) for s in val] == [len(x) for x in shards] == [3, 3, 2, 2]
    assert sorted(i for x in shards for i in x) == list(range(n))
