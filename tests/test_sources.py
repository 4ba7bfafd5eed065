import logging
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import make_class_folders, make_image, make_kaggle_folder

from catdog_tf import data


def test_kaggle_folder_labels_from_prefix(kaggle_dir):
    examples = data.list_folder(kaggle_dir)
    assert len(examples) == 12
    for path, label in zip(examples.items, examples.labels, strict=True):
        assert label == (1 if os.path.basename(path).startswith("dog") else 0)
    assert examples.counts() == {"cat": 6, "dog": 6}


def test_kaggle_folder_ignores_other_names(kaggle_dir):
    make_image(os.path.join(kaggle_dir, "bird.1.jpg"), 0)
    open(os.path.join(kaggle_dir, "notes.txt"), "w").close()
    assert len(data.list_folder(kaggle_dir)) == 12


@pytest.mark.parametrize(
    "names", [("cats", "dogs"), ("cat", "dog"), ("Cat", "Dog"), ("CATS", "Dogs")]
)
def test_class_folders_any_case(tmp_path, names):
    root = make_class_folders(str(tmp_path / "c"), names=names, n_per_class=3)
    examples = data.list_folder(root)
    assert examples.counts() == {"cat": 3, "dog": 3}
    for path, label in zip(examples.items, examples.labels, strict=True):
        assert (names[1] in path) == (label == 1)


def test_predefined_splits(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    root = tmp_path / "split"
    make_class_folders(str(root / "train"), n_per_class=6)
    make_class_folders(str(root / "val"), n_per_class=4)
    make_kaggle_folder(str(root / "test"), n_per_class=2)
    loaded = data.load(str(root))
    assert set(loaded) == {"train", "validation", "test"}
    assert [len(loaded[s]) for s in ("train", "validation", "test")] == [12, 8, 4]
    splits = data.make_splits(loaded, (0.8, 0.1, 0.1))
    assert len(splits["validation"]) == 8 and len(splits["test"]) == 4
    assert "train_size, val_size and test_size do not apply" in caplog.text


def test_predefined_splits_without_test_halve_validation(tmp_path):
    root = tmp_path / "split"
    make_class_folders(str(root / "train"), n_per_class=6)
    make_class_folders(str(root / "validation"), n_per_class=4)
    splits = data.make_splits(data.load(str(root)), (0.8, 0.1, 0.1))
    assert len(splits["validation"]) == 4 and len(splits["test"]) == 4
    assert not set(splits["validation"].items) & set(splits["test"].items)


@pytest.mark.parametrize(
    "setup,message",
    [
        (lambda p: None, "no such file or folder"),
        (lambda p: os.makedirs(p), "no cat or dog images"),
        (lambda p: make_image(os.path.join(p, "cat.1.jpg"), 0), "only one class"),
        (lambda p: make_image(os.path.join(p, "misc", "a.jpg"), 0), "no cat or dog images"),
    ],
)
def test_bad_folders_name_path_and_layouts(tmp_path, setup, message):
    path = str(tmp_path / "data")
    setup(path)
    with pytest.raises(data.DataSourceError, match=message) as info:
        data.load(path)
    assert path in str(info.value) and "accepted layouts" in str(info.value)


def test_synthetic_is_labelled_and_balanced():
    examples = data.synthetic(20, seed=1)
    assert examples.synthetic and "not real data" in examples.origin
    assert examples.counts() == {"cat": 10, "dog": 10}
    again = data.synthetic(20, seed=1)
    assert all(a == b for a, b in zip(examples.items, again.items, strict=True))


def test_tfds_source_with_mock_data(monkeypatch):
    # mock_data reports the dataset as not prepared; pretend the download host is reachable.
    monkeypatch.setattr(data.sources, "_resolves", lambda host: True)
    with tfds.testing.mock_data(num_examples=10):
        examples = data.load("tfds:cats_vs_dogs")["all"]
    assert len(examples) == 10 and examples.encoded
    assert set(np.unique(examples.labels)) <= {0, 1}
    images = [data.decode(item).numpy() for item in examples.items]
    assert all(image.ndim == 3 and image.shape[2] == 3 for image in images)


def test_tfds_offline_error_is_fast_and_names_local_alternative(monkeypatch, tmp_path):
    monkeypatch.setattr(data.sources, "_resolves", lambda host: False)  # No network.
    with pytest.raises(data.DataSourceError, match="cannot be reached") as info:
        data.load_tfds(data_dir=str(tmp_path))
    assert "download.microsoft.com" in str(info.value) and "--data=" in str(info.value)


def test_tfds_other_failures_are_wrapped(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise ConnectionError("Failed to establish a new connection")

    monkeypatch.setattr(data.sources, "_resolves", lambda host: True)
    monkeypatch.setattr(tfds, "load", broken)
    with pytest.raises(data.DataSourceError, match="could not load TFDS") as info:
        data.load_tfds(data_dir=str(tmp_path))
    assert "ConnectionError" in str(info.value) and "--data=" in str(info.value)
