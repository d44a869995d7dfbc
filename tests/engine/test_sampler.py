import numpy as np
import pytest

from mtbrain.engine.sampler import EpochSampler


def test_order_is_a_function_of_seed_and_epoch():
    a, b = EpochSampler([50], seed=3), EpochSampler([50], seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)
    assert sorted(a) == list(range(50))


def test_no_shuffle_keeps_order():
    assert list(EpochSampler([4, 3], shuffle=False)) == list(range(7))


def test_weighted_mixing_shares_and_ranges():
    s = EpochSampler([100, 1000], weights=[1, 1], seed=0)
    idx = np.array(list(s))
    assert len(idx) == len(s) == 100  # epoch = first set's size
    from_second = (idx >= 100).sum()
    assert from_second == 50
    assert len(set(idx[idx < 100])) == 50  # no repeats when a set is big enough
    small = np.array(list(EpochSampler([100, 10], weights=[1, 1], seed=0)))
    assert (small >= 100).sum() == 50 and set(small[small >= 100]) == set(range(100, 110))


def test_shards_cover_epoch_once_and_have_equal_length():
    shards = [list(EpochSampler([11], seed=1, rank=r, world=3)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == 4
    assert set().union(*map(set, shards)) == set(range(11))


def test_bad_weights():
    with pytest.raises(ValueError, match="weights"):
        EpochSampler([3, 3], weights=[1])
    with pytest.raises(ValueError, match="positive sum"):
        EpochSampler([3, 3], weights=[0, 0])
