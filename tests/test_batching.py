"""Forward batches for prediction: a partition of the length-sorted windows that minimises padded
tokens plus a cost per call."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gplinker.batching import forward_batches


def cost(lengths, ranges, call_cost):
    return sum((b - a) * lengths[b - 1] + call_cost for a, b in ranges)


def all_partitions(n, cap):
    for cuts in itertools.product([False, True], repeat=max(0, n - 1)):
        bounds = [0] + [k + 1 for k, c in enumerate(cuts) if c] + [n]
        ranges = list(zip(bounds, bounds[1:]))
        if all(b - a <= cap for a, b in ranges):
            yield ranges


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 300), max_size=9), st.integers(1, 5), st.integers(0, 400))
def test_forward_batches_is_an_optimal_partition(lengths, cap, call_cost):
    lengths = sorted(lengths)
    ranges = forward_batches(lengths, cap, call_cost)
    if not lengths:
        assert ranges == []
        return
    assert [a for a, _ in ranges] == [0] + [b for _, b in ranges[:-1]] and ranges[-1][1] == len(lengths)  # in order, all covered
    assert all(0 < b - a <= cap for a, b in ranges)
    assert cost(lengths, ranges, call_cost) == min(cost(lengths, r, call_cost) for r in all_partitions(len(lengths), cap))


def test_short_windows_are_not_padded_to_a_long_one():
    assert forward_batches([5] * 10 + [100], 32) == [(0, 10), (10, 11)]
    equal = forward_batches([20] * 40, 32)  # no padding either way: as few calls as the cap allows
    assert len(equal) == 2 and all(b - a <= 32 for a, b in equal)
    with pytest.raises(ValueError):
        forward_batches([1, 2], 0)


def test_forward_batches_equal_the_plain_dynamic_programme():
    """The optimised loop chooses exactly the ranges of the textbook recurrence (ties: earliest cut)."""
    import random

    from gplinker.batching import forward_batches

    def reference(lengths, max_batch, call_cost):
        n = len(lengths)
        best, cut = [0] * (n + 1), [0] * (n + 1)
        for j in range(1, n + 1):
            best[j], cut[j] = min((best[i] + (j - i) * lengths[j - 1] + call_cost, i) for i in range(max(0, j - max_batch), j))
        out, j = [], n
        while j > 0:
            out.append((cut[j], j))
            j = cut[j]
        return out[::-1]

    rng = random.Random(1)
    for _ in range(2000):
        lengths = sorted(rng.randint(1, 300) for _ in range(rng.randint(0, 80)))
        max_batch, call_cost = rng.randint(1, 40), rng.choice([0, 1, 128, 512])
        assert forward_batches(lengths, max_batch, call_cost) == reference(lengths, max_batch, call_cost)
