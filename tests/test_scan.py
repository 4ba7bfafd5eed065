import os
from pathlib import Path

from conftest import make_image

from catdog_tf import data


def test_scan_skips_bad_files_with_reasons(kaggle_dir):
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
        "dog.90.jpg": "corrupt or truncated image data",
        "cat.91.jpg": "empty file",
        "cat.92.jpg": "not an image",
    }
    assert len(report.kept) == 13
    assert "3 skipped" in report.summary()


def test_prepare_splits_drops_bad_files_before_splitting(kaggle_dir):
    open(os.path.join(kaggle_dir, "cat.99.jpg"), "w").close()
    splits, skipped = data.prepare_splits(kaggle_dir, (8, 2, 2))
    assert len(skipped) == 1
    assert all("cat.99.jpg" not in p for s in splits.values() for p in s.items)
