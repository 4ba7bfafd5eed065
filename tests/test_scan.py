import os
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image

from catdog_tf import data
from catdog_tf.data import pipeline


@pytest.mark.parametrize("eager_limit", [pipeline.EAGER_LIMIT, 0], ids=["eager", "tf.data"])
def test_scan_skips_bad_files_with_reasons(kaggle_dir, eager_limit, monkeypatch):
    # A few files are checked eagerly, many through tf.data: both must judge alike.
    monkeypatch.setattr(pipeline, "EAGER_LIMIT", eager_limit)
    good = os.path.join(kaggle_dir, "dog.0.jpg")
    raw = Path(good).read_bytes()
    with open(os.path.join(kaggle_dir, "dog.90.jpg"), "wb") as f:
        f.write(raw[: len(raw) // 2])  # Truncated JPEG.
    open(os.path.join(kaggle_dir, "cat.91.jpg"), "w").close()  # Empty.
    with open(os.path.join(kaggle_dir, "cat.92.jpg"), "w") as f:
        f.write("not an image at all")
    make_image(os.path.join(kaggle_dir, "dog.93.jpg"), 1, fmt="PNG")  # Misnamed, fine.
    report = data.scan(data.list_folder(kaggle_dir))
    reasons = {os.path.basename(p): r for p, r in report.skipped}
    assert reasons == {
        "dog.90.jpg": "truncated JPEG (its data ends before the end-of-image marker)",
        "cat.91.jpg": "empty file",
        "cat.92.jpg": "not an image",
    }
    assert len(report.kept) == 13
    assert "3 skipped" in report.summary()


def test_prepare_splits_drops_bad_files_before_splitting(kaggle_dir):
    open(os.path.join(kaggle_dir, "cat.99.jpg"), "w").close()
    splits, skipped, _ = data.prepare_splits(kaggle_dir, (8, 2, 2))
    assert len(skipped) == 1
    assert all("cat.99.jpg" not in p for s in splits.values() for p in s.items)


def test_few_images_decode_eagerly_to_the_pipelines_pixels(tmp_path):
    paths = [
        make_image(str(tmp_path / f"{i}.{fmt.lower()}"), i % 2, size=(37, 52), seed=i, fmt=fmt)
        for i, fmt in enumerate(["JPEG", "PNG", "JPEG", "BMP", "GIF"])
    ]
    examples = data.scan(
        data.Examples(np.array(paths, dtype=object), np.zeros(len(paths), np.int32), "few")
    ).kept
    eager = data.decoded_images(examples, image_size=(20, 24))
    graph = np.stack([image.numpy() for image, _ in data.decoded_dataset(examples, (20, 24))])
    assert eager.dtype == np.uint8 and eager.shape == (5, 20, 24, 3)
    np.testing.assert_array_equal(eager, graph)
