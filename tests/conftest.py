"""Shared fixtures: small generated image folders in every supported layout."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Calibrations made by the tests go to a folder of its own, never the user's cache.
os.environ["CATDOG_TF_CACHE"] = tempfile.mkdtemp(prefix="catdog-calibration-")

import numpy as np
import pytest
from PIL import Image


def make_image(
    path: str, label: int, size=(30, 40), seed: int = 0, fmt: str = "JPEG", mode: str = "RGB"
) -> str:
    """Writes a learnable image: dogs bright, cats dark, plus noise."""
    rng = np.random.default_rng(seed)
    base = 190 if label == 1 else 60
    pixels = np.clip(rng.normal(base, 25, (*size, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    if mode != "RGB":
        image = image.convert(mode)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, fmt)
    return path


def make_kaggle_folder(root: str, n_per_class: int = 6, size=(30, 40)) -> str:
    for i in range(n_per_class):
        make_image(os.path.join(root, f"cat.{i}.jpg"), 0, size, seed=i)
        make_image(os.path.join(root, f"dog.{i}.jpg"), 1, size, seed=100 + i)
    return root


def make_class_folders(
    root: str, names=("cats", "dogs"), n_per_class: int = 5, size=(30, 40)
) -> str:
    for label, name in enumerate(names):
        for i in range(n_per_class):
            make_image(os.path.join(root, name, f"{i}.jpg"), label, size, seed=label * 50 + i)
    return root


@pytest.fixture
def kaggle_dir(tmp_path):
    return make_kaggle_folder(str(tmp_path / "kaggle"))


@pytest.fixture
def class_dir(tmp_path):
    return make_class_folders(str(tmp_path / "classes"))
