"""Messy folders: every kind of bad or odd file either loads correctly or is skipped with a
reason, and a training run over such a folder finishes."""

import builtins
import os
from pathlib import Path

import numpy as np
from conftest import make_image, make_kaggle_folder
from PIL import Image

from catdog_tf import data
from catdog_tf.config import smoke
from catdog_tf.train import train_and_evaluate


def _kept_and_reasons(folder):
    report = data.scan(data.list_folder(folder))
    kept = {os.path.basename(p) for p in report.kept.items}
    return kept, {os.path.basename(p): r for p, r in report.skipped}


def _decodes_to(path, size=(16, 20)):
    examples = data.Examples(
        items=np.array([path], dtype=object), labels=np.array([1], np.int32), origin="one file"
    )
    ((image, _),) = list(data.decoded_dataset(examples, size))
    return image.numpy()


def test_odd_but_valid_files_load(tmp_path):
    folder = make_kaggle_folder(str(tmp_path / "d"), n_per_class=2)
    make_image(os.path.join(folder, "dog.10.jpg"), 1, fmt="GIF")
    make_image(os.path.join(folder, "dog.11.jpg"), 1, fmt="WEBP")
    make_image(os.path.join(folder, "dog.12.jpg"), 1, fmt="BMP")
    make_image(os.path.join(folder, "cat.13.jpg"), 0, mode="L")  # Grayscale JPEG.
    make_image(os.path.join(folder, "cat.14.jpg"), 0, mode="CMYK")
    Image.fromarray(np.full((20, 30), 40000, np.uint16)).save(
        os.path.join(folder, "cat.15.png")
    )  # 16-bit grayscale PNG.
    make_image(os.path.join(folder, "cat.16.jpg"), 0, size=(1, 1))  # Tiny.
    make_image(os.path.join(folder, "dog.ünïcödé 17.jpg"), 1)  # Non-ASCII, space.
    kept, skipped = _kept_and_reasons(folder)
    assert skipped == {}
    assert len(kept) == 12
    for name in kept:
        image = _decodes_to(os.path.join(folder, name))
        assert image.shape == (16, 20, 3) and image.dtype == np.uint8
    sixteen = _decodes_to(os.path.join(folder, "cat.15.png"))
    assert abs(int(sixteen.mean()) - round(40000 / 65535 * 255)) <= 1  # Scaled, not clipped.


def test_huge_image_is_resized(tmp_path):
    path = str(tmp_path / "dog.1.png")
    Image.new("RGB", (8000, 8000), (200, 100, 50)).save(path)
    image = _decodes_to(path, (94, 125))
    assert image.shape == (94, 125, 3) and tuple(image[0, 0]) == (200, 100, 50)


def test_unloadable_files_are_skipped_with_reasons(tmp_path, monkeypatch):
    folder = make_kaggle_folder(str(tmp_path / "d"), n_per_class=2)
    open(os.path.join(folder, "cat.20.jpg"), "w").close()
    with open(os.path.join(folder, "dog.21.jpg"), "w") as f:
        f.write("<html>not an image</html>")
    raw = Path(folder, "dog.0.jpg").read_bytes()
    with open(os.path.join(folder, "dog.22.jpg"), "wb") as f:
        f.write(raw[:200])
    os.symlink(os.path.join(folder, "missing.jpg"), os.path.join(folder, "cat.23.jpg"))
    locked = os.path.join(folder, "dog.24.jpg")
    make_image(locked, 1)
    real_open = builtins.open

    def no_permission(file, *args, **kwargs):  # Tests run as root, where chmod 000 is moot.
        if str(file) == locked:
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_permission)
    kept, skipped = _kept_and_reasons(folder)
    assert skipped == {
        "cat.20.jpg": "empty file",
        "dog.21.jpg": "not an image",
        "dog.22.jpg": "truncated JPEG (its data ends before the end-of-image marker)",
        "cat.23.jpg": "unreadable (No such file or directory)",
        "dog.24.jpg": "unreadable (Permission denied)",
    }
    assert len(kept) == 4


def test_training_on_a_salted_folder_finishes_and_reports(tmp_path):
    folder = make_kaggle_folder(str(tmp_path / "d"), n_per_class=10, size=(24, 32))
    open(os.path.join(folder, "cat.50.jpg"), "w").close()
    with open(os.path.join(folder, "dog.51.jpg"), "w") as f:
        f.write("text")
    config = smoke("_tiny").replace(
        data=folder,
        image_height=24,
        image_width=32,
        train_size=12,
        val_size=4,
        test_size=4,
        batch_size=4,
        epochs=1,
    )
    result = train_and_evaluate(config, str(tmp_path / "run"), verbose=False)
    assert result["skipped_files"]["count"] == 2
    assert result["skipped_files"]["reasons"] == {"empty file": 1, "not an image": 1}
    assert result["epochs_run"] == 1
