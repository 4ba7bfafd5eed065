import numpy as np
import pytest

from catdog_tf import data


def _examples(n_cat, n_dog):
    labels = np.array([0] * n_cat + [1] * n_dog, np.int32)
    items = np.array([f"f{i}.jpg" for i in range(len(labels))], dtype=object)
    return data.Examples(items=items, labels=labels, origin="test")


def test_counts_disjoint_and_balanced():
    splits = data.split(_examples(500, 500), (400, 100, 200), seed=3)
    assert [len(splits[s]) for s in data.SPLITS] == [400, 100, 200]
    for s in data.SPLITS:
        assert splits[s].counts()["dog"] == len(splits[s]) // 2
    sets = [set(splits[s].items) for s in data.SPLITS]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])


def test_fractions_keep_class_ratio():
    splits = data.split(_examples(300, 100), (0.8, 0.1, 0.1), seed=0)
    assert [len(splits[s]) for s in data.SPLITS] == [320, 40, 40]
    assert splits["train"].counts() == {"cat": 240, "dog": 80}


def test_deterministic_per_seed():
    a = data.split(_examples(50, 50), (60, 20, 20), seed=7)
    b = data.split(_examples(50, 50), (60, 20, 20), seed=7)
    c = data.split(_examples(50, 50), (60, 20, 20), seed=8)
    assert list(a["train"].items) == list(b["train"].items)
    assert list(a["train"].items) != list(c["train"].items)


def test_too_many_requested():
    with pytest.raises(data.DataSourceError, match="need 120 images"):
        data.split(_examples(50, 50), (100, 10, 10))


def test_split_is_not_sorted_by_class():
    labels = data.split(_examples(50, 50), (100, 0, 0), seed=0)["train"].labels
    assert 0 < np.sum(labels[:50]) < 50


@pytest.mark.parametrize("n_cat,n_dog", [(1028, 1029), (1031, 1033), (7, 12), (500, 501)])
def test_fractions_never_overdraw_a_class(n_cat, n_dog):
    # Rounding each split's class counts separately could ask for one image too many.
    splits = data.split(_examples(n_cat, n_dog), (0.8, 0.1, 0.1), seed=0)
    total = sum(len(splits[s]) for s in data.SPLITS)
    assert total == n_cat + n_dog
    assert sum(splits[s].counts()["dog"] for s in data.SPLITS) == n_dog
