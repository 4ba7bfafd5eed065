"""Shared fixtures: small generated image folders in every supported layout, and one finished
tiny run that the test files share (read it, or copy it before changing it)."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

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


def make_kaggle_folder(root: str, n_per_class: int = 6, size=(30, 40), first: int = 0) -> str:
    """Kaggle-named images; a different `first` gives other names and other pixels."""
    for i in range(first, first + n_per_class):
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


def import_benchmark(name: str):
    """``benchmarks/NAME.py`` imported as a module, for tests of its functions."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_killed_then_resumed(config, workdir: str) -> dict:
    """``config`` trained in ``workdir``, killed (as by Ctrl-C) right after epoch 1's
    checkpoint, then run again to resume; the resumed run's result."""
    from catdog_tf.train import train_and_evaluate  # Local import: it imports TensorFlow.

    def killed_after_first_epoch(epoch, entry):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(config, workdir, verbose=False, on_epoch_end=killed_after_first_epoch)
    return train_and_evaluate(config, workdir, verbose=False)


@pytest.fixture
def kaggle_dir(tmp_path):
    return make_kaggle_folder(str(tmp_path / "kaggle"))


@pytest.fixture
def class_dir(tmp_path):
    return make_class_folders(str(tmp_path / "classes"))


def tiny_config(data_dir: str, **changes):
    """A conv1 run that trains in seconds: 24x32 images, 2 epochs of batch 4, a 2:1:1 split."""
    from catdog_tf.config import smoke

    values = dict(image_height=24, image_width=32, batch_size=4, epochs=2, train_size=0.5)
    values.update(val_size=0.25, test_size=0.25)
    return smoke("conv1").replace(data=data_dir, **{**values, **changes})


@dataclasses.dataclass(frozen=True)
class FinishedRun:
    """A finished run: its data folder, its run directory and the config it trained."""

    root: str
    workdir: str
    config: object


def _tree_digest(folder: str) -> str:
    digest = hashlib.sha256()
    for parent, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            path = os.path.join(parent, name)
            digest.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """One tiny finished run per test process, shared by every test file that reads one.

    Tests that change a run copy it first (:func:`finished_copy`); the teardown fails the
    suite if any test wrote into the shared one.
    """
    from catdog_tf.train import train_and_evaluate

    tmp = tmp_path_factory.mktemp("finished")
    root = make_kaggle_folder(str(tmp / "d"), n_per_class=8)
    config = tiny_config(root)
    train_and_evaluate(config, str(tmp / "run"), verbose=False)
    run = FinishedRun(root, str(tmp / "run"), config)
    before = _tree_digest(run.workdir), _tree_digest(root)
    yield run
    assert (_tree_digest(run.workdir), _tree_digest(root)) == before, "a test changed the run"


@pytest.fixture
def finished_copy(finished_run, tmp_path) -> str:
    """A copy of the shared finished run, for a test to change."""
    workdir = str(tmp_path / "run")
    shutil.copytree(finished_run.workdir, workdir)
    return workdir
