r"""Trains briefly on a copy of real images salted with bad files of every kind.

Copies ``--images`` real images (half cats, half dogs) into a temporary Kaggle-style folder,
adds ``--bad_fraction`` of that many bad or odd files, cycling through every kind below,
trains ``--model`` for one epoch and prints what was found, skipped and trained on.

Bad kinds (must be skipped): zero-byte, truncated JPEG, text named .jpg, broken symlink,
unreadable (permission 000; root reads it anyway, so as root it is expected to load).
Odd kinds (must load): PNG/GIF/WebP named .jpg, grayscale, CMYK, 16-bit PNG, 1x1, 4000x4000,
non-ASCII and space-containing names.

Usage::

    python benchmarks/salted_data.py --data=dogs-vs-cats/train \
        [--images=2000] [--bad_fraction=0.05] [--model=conv3]
"""

from __future__ import annotations

# Before TensorFlow: oneDNN as the catdog-* commands decide it, and TensorFlow's start-up
# lines hidden unless asked for (catdog_tf.cli.script).
from catdog_tf.cli import script  # isort: skip

import collections
import os
import shutil
import tempfile

import numpy as np
from absl import flags
from PIL import Image

from catdog_tf import data
from catdog_tf.config import full
from catdog_tf.train import train_and_evaluate

_DATA = flags.DEFINE_string("data", "dogs-vs-cats/train", "Kaggle folder.")
_IMAGES = flags.DEFINE_integer("images", 2000, "Real images to copy.")
_BAD = flags.DEFINE_float("bad_fraction", 0.05, "Salt files, as a fraction of --images.")
_MODEL = flags.DEFINE_string("model", "conv3", "Model to train for one epoch.")


def _salt(folder: str, source: str, kind: str, i: int) -> tuple[str, bool]:
    """Writes one salt file of ``kind``; returns (name, should_load)."""
    label = ("cat", "dog")[i % 2]
    name = os.path.join(folder, f"{label}.salt{i}.jpg")
    image = Image.open(source).convert("RGB")
    raw = open(source, "rb").read()  # noqa: SIM115
    if kind == "empty":
        open(name, "w").close()  # noqa: SIM115
        return name, False
    if kind == "truncated":
        with open(name, "wb") as f:
            f.write(raw[: len(raw) // 3])
        return name, False
    if kind == "text":
        with open(name, "w") as f:
            f.write("this is not an image\n")
        return name, False
    if kind == "broken_symlink":
        os.symlink(os.path.join(folder, f"missing{i}.jpg"), name)
        return name, False
    if kind == "unreadable":
        shutil.copy(source, name)
        os.chmod(name, 0)
        return name, os.geteuid() == 0  # Root reads a mode-000 file.
    if kind in ("png", "gif", "webp"):
        image.save(name, kind.upper())
    elif kind == "grayscale":
        image.convert("L").save(name, "JPEG")
    elif kind == "cmyk":
        image.convert("CMYK").save(name, "JPEG")
    elif kind == "png16":
        gray = np.asarray(image.convert("L"), np.uint16) * 257
        Image.fromarray(gray).save(name, "PNG")
    elif kind == "tiny":
        image.resize((1, 1)).save(name, "JPEG")
    elif kind == "huge":
        image.resize((4000, 4000)).save(name, "JPEG", quality=70)
    elif kind == "unicode_name":
        name = os.path.join(folder, f"{label}.sälted {i}.jpg")
        shutil.copy(source, name)
    return name, True


KINDS = [
    "empty",
    "truncated",
    "text",
    "broken_symlink",
    "unreadable",
    "png",
    "gif",
    "webp",
    "grayscale",
    "cmyk",
    "png16",
    "tiny",
    "huge",
    "unicode_name",
]


def main(argv):
    del argv
    examples = data.list_folder(_DATA.value)
    chosen = data.split(examples, (_IMAGES.value, 0, 0), seed=0)["train"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "salted")
        os.makedirs(folder)
        for path in chosen.items:
            shutil.copy(path, folder)
        n_salt = int(round(_BAD.value * _IMAGES.value))
        expected = collections.Counter()
        for i in range(n_salt):
            kind = KINDS[i % len(KINDS)]
            _, loads = _salt(folder, chosen.items[i], kind, i)
            expected["loads" if loads else "skipped"] += 1
        config = full(_MODEL.value).replace(
            data=folder, train_size=0.8, val_size=0.1, test_size=0.1, epochs=1
        )
        result = train_and_evaluate(config, os.path.join(tmp, "run"), verbose=False)
    skipped = result["skipped_files"]
    print(
        f"files: {_IMAGES.value} real + {n_salt} salt ({len(KINDS)} kinds, "
        f"{expected['skipped']} expected to be skipped, {expected['loads']} to load)"
    )
    print(f"found and skipped: {skipped['count']} ({skipped['reasons']})")
    print(
        "trained on: {train} train / {validation} validation / {test} test images".format(
            **{k: v["n"] for k, v in result["data"].items()}
        )
    )
    print(
        f"one epoch of {_MODEL.value}: test accuracy at 0.5 "
        f"{result['test']['accuracy_at_0.5']:.3f}, {result['epochs_run']} epoch run"
    )
    if skipped["count"] != expected["skipped"]:
        raise SystemExit(f"expected {expected['skipped']} skipped files, got {skipped['count']}")


if __name__ == "__main__":
    script.run(main)
