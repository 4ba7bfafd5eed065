"""Data sources: each lists labelled examples, 1 = dog and 0 = cat (Kaggle's convention).

Every source returns :class:`Examples`: file paths (folders) or encoded image bytes (TFDS and
the synthetic source) with their labels. Decoding happens later, in the tf.data pipeline, so
listing 20,000 files takes milliseconds. One ``--data`` spec string selects the source; see
:func:`load`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import socket
from collections.abc import Mapping

import numpy as np
from absl import logging

from catdog_tf.errors import DataSourceError, first_line

DOG, CAT = 1, 0
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
# Folder names accepted as a class, compared case-insensitively (PetImages uses Cat/ and Dog/).
CLASS_FOLDERS = {"cat": CAT, "cats": CAT, "dog": DOG, "dogs": DOG}
# Folder names accepted as a predefined split of a parent folder.
SPLIT_FOLDERS = {
    "train": "train",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
}
_KAGGLE_NAME = re.compile(r"^(cat|dog)[._-]", re.IGNORECASE)
LAYOUTS_HELP = (
    "accepted layouts: a Kaggle flat folder (cat.1.jpg, dog.1.jpg), a folder with class "
    "subfolders (cats/ + dogs/, cat/ + dog/ or Cat/ + Dog/, any case), a parent with "
    "train/ + val/ (+ test/) holding either, 'tfds:cats_vs_dogs' or 'synthetic'"
)


@dataclasses.dataclass(frozen=True)
class Examples:
    """Labelled examples of one source or split.

    Attributes:
      items: File paths (``str``) when ``encoded`` is False, else encoded image bytes.
      labels: int32 array, 1 = dog, 0 = cat.
      origin: Where the examples came from, for logs and result files.
      encoded: True when ``items`` hold image bytes rather than paths.
      synthetic: True for generated images (never real data).
      orientations: EXIF orientation (1-8, 1 = upright) of each image, or None when not read
        yet (:func:`catdog_tf.data.scan` reads them; the pipeline reads them if missing).
    """

    items: np.ndarray
    labels: np.ndarray
    origin: str
    encoded: bool = False
    synthetic: bool = False
    orientations: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> Examples:
        """The examples at ``indices``, in that order."""
        return dataclasses.replace(
            self,
            items=self.items[indices],
            labels=self.labels[indices],
            orientations=None if self.orientations is None else self.orientations[indices],
        )

    def counts(self) -> dict[str, int]:
        """Number of cats and dogs."""
        return {"cat": int(np.sum(self.labels == CAT)), "dog": int(np.sum(self.labels == DOG))}

    def fingerprint(self) -> str:
        """A hash of which images these are, in order, with their labels.

        Files count by path, size, modification time and inode (a stat each: milliseconds
        for 20,000 files), encoded images by their bytes. A resumed run and a file cache
        compare it, so a folder whose files were added, removed, replaced or rewritten in
        place (even at the same size) is never taken for the one a run started on.
        """
        digest = hashlib.blake2b(digest_size=12)
        for item, label in zip(self.items, self.labels, strict=True):
            if self.encoded:
                digest.update(len(item).to_bytes(8, "little") + bytes(item))
            else:
                digest.update(os.fsencode(item) + b"\0" + _file_identity(item))
            digest.update(b"\1" if label else b"\0")
        return digest.hexdigest()


def _file_identity(path: str) -> bytes:
    """Size, modification time (ns), device and inode of ``path``: what changes with its bytes."""
    try:
        st = os.stat(path)
    except OSError:
        return b"missing"
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_dev}:{st.st_ino}".encode()


def _take_once(candidates: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Each file once: the first path of every image reached by several (links of any kind).

    A file is its device and inode, so symlinks and hard links alike name it again; a path
    that cannot be read keeps its own entry, for the scan to report.

    Raises:
      DataSourceError: One file is listed under both classes.
    """
    first: dict[object, tuple[str, int]] = {}
    for full, label in candidates:
        try:
            stat = os.stat(full)
            identity: object = (stat.st_dev, stat.st_ino)
        except OSError:
            identity = os.path.realpath(full)
        seen = first.setdefault(identity, (full, label))
        if seen[1] != label:
            raise DataSourceError(
                f"{display(full)} and {display(seen[0])} are the same file under both a cat "
                "and a dog name; which is it?"
            )
    return list(first.values())


def _examples(pairs: list[tuple[str, int]], origin: str) -> Examples:
    pairs.sort()  # A fixed order makes seeded splits independent of os.listdir order.
    items = np.array([p for p, _ in pairs], dtype=object)
    labels = np.array([label for _, label in pairs], dtype=np.int32)
    return Examples(items=items, labels=labels, origin=origin)


# Control characters as \xNN: a name with a newline or tab cannot forge a line or column.
_VISIBLE = {code: f"\\x{code:02x}" for code in (*range(32), 127)}


def display(path: str) -> str:
    r"""``path`` printable as one UTF-8 field.

    A name that is not valid UTF-8 shows U+FFFD; control characters (newline, tab, ...) show
    as ``\xNN``, so a printed name is always one line and one tab-separated field.
    """
    return os.fsencode(path).decode("utf-8", "replace").translate(_VISIBLE)


def item_tensor_values(items: np.ndarray, encoded: bool) -> np.ndarray:
    """Items as a NumPy object array of bytes, the form tf.data takes for any file name.

    Paths go through ``os.fsencode``: a name that is not valid UTF-8 keeps its exact bytes
    (``astype(str)`` would fail on it, ``astype(bytes)`` on any non-ASCII name).
    """
    if len(items) == 0:
        return np.array([], dtype=bytes)  # TensorFlow infers no dtype from an empty object array.
    return np.array([bytes(i) if encoded else os.fsencode(i) for i in items], dtype=object)


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _kaggle_label(name: str) -> int | None:
    match = _KAGGLE_NAME.match(name)
    if not (match and _is_image_name(name)):
        return None
    return DOG if match.group(1).lower() == "dog" else CAT


def list_kaggle_folder(path: str) -> Examples:
    """Lists a Kaggle-style flat folder: ``cat.<id>.jpg`` and ``dog.<id>.jpg``.

    Args:
      path: The folder. Image files whose names start with neither class (``dogs.1.jpg``,
        ``1.jpg``) are left out with a warning that counts them.

    Returns:
      The examples, label from the file-name prefix.
    """
    pairs, ignored = [], []
    for name in sorted(os.listdir(path)):
        label = _kaggle_label(name)
        if label is not None:
            pairs.append((os.path.join(path, name), label))
        elif _is_image_name(name):
            ignored.append(name)
    if ignored:
        logging.warning(
            "%s: %d image files have no cat./dog. name prefix and are left out (e.g. %s)",
            path,
            len(ignored),
            display(sorted(ignored)[0]),
        )
    return _examples(_take_once(pairs), origin=f"kaggle folder {path}")


def _class_subfolders(path: str) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if name.lower() in CLASS_FOLDERS and os.path.isdir(full):
            found.setdefault(CLASS_FOLDERS[name.lower()], []).append(full)
    return found


def list_class_folders(path: str) -> Examples:
    """Lists a folder of class subfolders: ``cats/`` + ``dogs/``, ``Cat/`` + ``Dog/``, ...

    Subfolders are searched recursively, following symlinks, but each real folder and each
    real file is taken once: a symlink loop or a second link to the same image would
    otherwise list it many times, and put copies of one image into both training and test.

    Args:
      path: The parent folder.

    Returns:
      The examples, label from the subfolder name.

    Raises:
      DataSourceError: One real image file is found under both classes.
    """
    candidates = []
    for label, folders in sorted(_class_subfolders(path).items()):
        seen_dirs: set[str] = set()  # Per class: a link from cats/ into dogs/ must conflict.
        for folder in sorted(folders):
            for root, dirs, names in os.walk(folder, followlinks=True):
                real_root = os.path.realpath(root)
                if real_root in seen_dirs:
                    dirs[:] = []  # A loop or a second link to a folder already listed.
                    continue
                seen_dirs.add(real_root)
                dirs.sort()
                candidates += [
                    (os.path.join(root, n), label) for n in sorted(names) if _is_image_name(n)
                ]
    pairs = _take_once(candidates)
    return _examples(pairs, origin=f"class folders {path}")


def list_folder(path: str) -> Examples:
    """Lists ``path`` in whichever single-split layout it has (class subfolders or Kaggle).

    Raises:
      DataSourceError: Missing path, empty folder, one class only, unknown layout, or both
        layouts at once; the message names the path and the accepted layouts.
    """
    if not os.path.exists(path):
        raise DataSourceError(f"{path}: no such file or folder; {LAYOUTS_HELP}")
    if not os.path.isdir(path):
        raise DataSourceError(f"{path}: not a folder; {LAYOUTS_HELP}")
    try:
        if _class_subfolders(path):
            flat = [n for n in os.listdir(path) if _kaggle_label(n) is not None]
            if flat:
                raise DataSourceError(
                    f"{path} has class subfolders and also {len(flat)} cat./dog. image files "
                    f"beside them (e.g. {display(sorted(flat)[0])}); use one layout: move "
                    "the files into the class folders, or the folders away"
                )
            examples = list_class_folders(path)
        else:
            examples = list_kaggle_folder(path)
    except PermissionError as e:
        raise DataSourceError(f"{path}: cannot list {e.filename} (permission denied)") from e
    counts = examples.counts()
    if len(examples) == 0:
        raise DataSourceError(f"{path}: no cat or dog images found; {LAYOUTS_HELP}")
    if min(counts.values()) == 0:
        raise DataSourceError(
            f"{path}: only one class found ({counts['cat']} cats, {counts['dog']} dogs); "
            f"both are needed; {LAYOUTS_HELP}"
        )
    return examples


def find_split_folders(path: str) -> dict[str, str]:
    """Maps split names (train/validation/test) to subfolders of ``path``, if it has them."""
    if not os.path.isdir(path):
        return {}
    splits = {}
    for name in sorted(os.listdir(path)):
        if name.lower() in SPLIT_FOLDERS and os.path.isdir(os.path.join(path, name)):
            splits[SPLIT_FOLDERS[name.lower()]] = os.path.join(path, name)
    return splits if "train" in splits else {}


# Where TFDS downloads a dataset from, for a fast reachability check before it starts.
TFDS_DOWNLOAD_HOSTS = {"cats_vs_dogs": "download.microsoft.com"}


def _resolves(host: str) -> bool:
    """Whether ``host`` resolves in DNS (a cheap test for a network)."""
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def load_tfds(
    name: str = "cats_vs_dogs", data_dir: str | None = None, download: bool = True
) -> Examples:
    """Loads a TFDS dataset's encoded images and labels (cats_vs_dogs: 0 = cat, 1 = dog).

    Images are kept encoded (``tfds.decode.SkipDecoding``) so that the package's own decode
    stage handles them like files.

    Args:
      name: TFDS dataset name.
      data_dir: TFDS data folder (TFDS's default when None).
      download: Let TFDS download the data when it is not prepared yet.

    Raises:
      DataSourceError: The dataset could not be downloaded or read, e.g. with no network.
    """
    import tensorflow_datasets as tfds

    hint = (
        "Without a network, download the Kaggle 'Dogs vs. Cats' train.zip or Microsoft's "
        "PetImages elsewhere and point --data at the unpacked folder, e.g. "
        "--data=dogs-vs-cats/train"
    )
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        host = TFDS_DOWNLOAD_HOSTS.get(name)
        if download and not builder.is_prepared() and host and not _resolves(host):
            # Fail in milliseconds: TFDS itself retries a dead download for minutes.
            raise DataSourceError(
                f"TFDS '{name}' is not downloaded yet and {host} cannot be reached (no "
                f"network?). {hint}"
            )
        ds = tfds.load(
            name,
            split="train",
            data_dir=data_dir,
            download=download,
            decoders={"image": tfds.decode.SkipDecoding()},
        )
    except DataSourceError:
        raise
    except Exception as e:  # TFDS raises many types (DownloadError, OSError, ...).
        raise DataSourceError(
            f"could not load TFDS '{name}' ({type(e).__name__}: {first_line(e)}). {hint}"
        ) from e
    items, labels = [], []
    for example in ds.as_numpy_iterator():
        items.append(example["image"])
        labels.append(example["label"])
    return Examples(
        items=np.array(items, dtype=object),
        labels=np.array(labels, np.int32),
        origin=f"tfds:{name}",
        encoded=True,
    )


def synthetic(
    num_examples: int = 512, size: tuple[int, int] = (64, 80), seed: int = 0, noise: float = 40.0
) -> Examples:
    """Generated JPEGs, NOT real data: 'dogs' hold a bright square, 'cats' a dark disc.

    The class is learnable by an MLP or a CNN, so smoke runs and tests can check that
    training actually learns. Half the examples are of each class.

    Args:
      num_examples: How many images.
      size: (height, width) of the generated images.
      seed: Seed of the generator.
      noise: Standard deviation of the Gaussian pixel noise.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width]
    items, labels = [], []
    for i in range(num_examples):
        label = i % 2
        image = rng.normal(128, noise, (height, width, 3))
        r = rng.integers(min(size) // 4, min(size) // 3 + 1)
        cy, cx = rng.integers(r, height - r), rng.integers(r, width - r)
        if label == DOG:
            mask = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r)
            image[mask] = (235, 200, 60)
        else:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            image[mask] = (30, 60, 150)
        pixels = np.clip(image, 0, 255).astype(np.uint8)
        items.append(tf.io.encode_jpeg(pixels, quality=90).numpy())
        labels.append(label)
    return Examples(
        items=np.array(items, dtype=object),
        labels=np.array(labels, np.int32),
        origin="synthetic (generated shapes, not real data)",
        encoded=True,
        synthetic=True,
    )


def load(
    spec: str, *, seed: int = 0, synthetic_size: int = 512, tfds_data_dir: str | None = None
) -> dict[str, Examples]:
    """Resolves a ``--data`` spec into examples.

    Args:
      spec: A folder path, ``tfds:NAME`` or ``synthetic``.
      seed: Seed for the synthetic source.
      synthetic_size: Number of synthetic images.
      tfds_data_dir: TFDS data folder.

    Returns:
      ``{"all": examples}`` for an unsplit source, or ``{"train": ..., "validation": ...,
      "test": ...}`` (test optional) when the folder has predefined split subfolders.
    """
    if spec == "synthetic":
        return {"all": synthetic(synthetic_size, seed=seed)}
    if spec.startswith("tfds:"):
        name = spec.removeprefix("tfds:")
        if name not in TFDS_DOWNLOAD_HOSTS:
            # Another dataset's labels are not cats and dogs; and offline, TFDS would wait on
            # its download for minutes before failing.
            raise DataSourceError(
                f"{spec}: the TFDS dataset of cats and dogs is tfds:cats_vs_dogs; {LAYOUTS_HELP}"
            )
        return {"all": load_tfds(name, data_dir=tfds_data_dir)}
    path = os.path.expanduser(spec)
    splits = find_split_folders(path)
    if splits:
        return {split: list_folder(folder) for split, folder in splits.items()}
    return {"all": list_folder(path)}


def describe(data: Mapping[str, Examples]) -> str:
    """One line per split: origin, image count and class counts."""
    lines = []
    for split, examples in data.items():
        c = examples.counts()
        lines.append(
            f"{split}: {len(examples)} images ({c['cat']} cats, {c['dog']} dogs) "
            f"from {examples.origin}"
        )
    return "\n".join(lines)
