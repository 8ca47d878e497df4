import pytest

from halotune.validation.plan import alternating_order


def test_alternating_order_two_rounds():
    steps = alternating_order(["a", "b"], 2)
    assert [s.profile for s in steps] == ["a", "b", "a", "b"]
    assert [s.round for s in steps] == [1, 1, 2, 2]
    assert [s.index for s in steps] == [0, 1, 2, 3]


def test_never_the_same_profile_twice_in_a_row():
    steps = alternating_order(["a", "b", "c"], 3)
    names = [s.profile for s in steps]
    assert names == ["a", "b", "c"] * 3
    assert all(x != y for x, y in zip(names, names[1:]))


def test_duplicates_dropped_and_rounds_checked():
    assert [s.profile for s in alternating_order(["a", "a", "b"], 1)] == ["a", "b"]
    with pytest.raises(ValueError):
        alternating_order(["a"], 0)
