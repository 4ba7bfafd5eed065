"""Trained models that ship with the package, usable without training.

Each is a finished run directory reduced to what using it needs (:data:`catdog_tf.rundir.
SHIPPED_FILES`: the config with its plan, the result with the validation threshold, the
training and serving models, the record of seen images) plus ``shipped.json`` (the package
version, the command and the CPU that made it), ``MODEL_CARD.md`` (:mod:`catdog_tf.card`)
and ``SHA256SUMS`` (the sha256 of each of
those files, checked whenever the model is loaded by :func:`verify`; ``sha256sum -c
SHA256SUMS`` checks it too). They live in ``catdog_tf/weights/NAME/`` so that every install
of the package carries them; ``catdog-predict --weights=NAME`` and ``catdog-eval
--weights=NAME`` find them by name (:func:`path`), and ``catdog_tf/weights/README.md`` tables
what each reached.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from catdog_tf import __version__, card, rundir
from catdog_tf.errors import ConfigError, RunFilesError
from catdog_tf.utils import atomic_write_json, atomic_write_text, read_json, sha256

# The files a checksum covers: everything of a shipped model but the checksums themselves.
COVERED = (*rundir.SHIPPED_FILES, rundir.SHIPPED_MARK, rundir.MODEL_CARD)

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")


def available(folder: str = FOLDER) -> list[str]:
    """Names of the shipped models in ``folder``, sorted."""
    if not os.path.isdir(folder):
        return []
    return sorted(
        name for name in os.listdir(folder) if rundir.is_shipped(os.path.join(folder, name))
    )


def path(name: str, folder: str = FOLDER) -> str:
    """The run directory of shipped model ``name``.

    Raises:
      ConfigError: No shipped model has that name (the message lists those that exist).
    """
    if name in available(folder):
        return os.path.join(folder, name)
    known = ", ".join(available(folder)) or "none"
    raise ConfigError(f"no shipped model named {name!r}; shipped: {known}")


def ship(run_dir: str, name: str, about: dict[str, Any], folder: str = FOLDER) -> str:
    """Copies the files of finished run ``run_dir`` that using it needs to ``folder/name``.

    Args:
      run_dir: A finished run (it has every file of :data:`catdog_tf.rundir.SHIPPED_FILES`).
      name: The shipped model's name (a folder name).
      about: What made it (command, CPU, date, result...), written to ``shipped.json``
        with the package's version.
      folder: Where shipped models live.

    Returns:
      The new run directory.

    Raises:
      ConfigError: ``run_dir`` is not finished, or ``name`` is not a plain folder name.
    """
    if not name or os.sep in name or name.startswith("."):
        raise ConfigError(f"{name!r} is not a plain folder name")
    missing = [f for f in rundir.SHIPPED_FILES if not os.path.exists(rundir.path(run_dir, f))]
    if missing:
        raise ConfigError(f"{run_dir} is not a finished run: it has no {', '.join(missing)}")
    target = os.path.join(folder, name)
    staging = os.path.join(folder, f".{name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    for file in rundir.SHIPPED_FILES:
        shutil.copy2(rundir.path(run_dir, file), rundir.path(staging, file))
    atomic_write_json(
        rundir.path(staging, rundir.SHIPPED_MARK), {"catdog_tf_version": __version__, **about}
    )
    write_card(staging, name)
    write_checksums(staging)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return target


def amend(model_dir: str, **facts: Any) -> None:
    """Adds ``facts`` to shipped model ``model_dir``'s ``shipped.json``; rewrites card and sums.

    For what is learnt of a model after it shipped: its recipe's other seeds (``seeds``: a
    list of ``{"seed", "test", "test_tta"}``), its exports' check (``formats``: the report of
    :func:`catdog_tf.deploy.check_exports`).
    """
    verify(model_dir)
    mark = rundir.path(model_dir, rundir.SHIPPED_MARK)
    atomic_write_json(mark, {**read_json(mark), **facts})
    write_card(model_dir, os.path.basename(os.path.abspath(model_dir)))
    write_checksums(model_dir)


def write_card(model_dir: str, name: str) -> None:
    """Writes ``MODEL_CARD.md`` of shipped model ``name`` from its own files."""
    atomic_write_text(rundir.path(model_dir, rundir.MODEL_CARD), card.model_card(model_dir, name))


def write_checksums(model_dir: str) -> None:
    """Writes ``SHA256SUMS`` for the :data:`COVERED` files of shipped model ``model_dir``."""
    lines = [f"{sha256(rundir.path(model_dir, name))}  {name}\n" for name in COVERED]
    atomic_write_text(rundir.path(model_dir, rundir.CHECKSUMS), "".join(lines))


def verify(model_dir: str) -> None:
    """Checks every file of shipped model ``model_dir`` against its ``SHA256SUMS``.

    Raises:
      RunFilesError: ``SHA256SUMS`` is missing or unreadable, or a file is missing or holds
        other bytes (the message names it): the model would not be the one shipped.
    """
    sums = rundir.path(model_dir, rundir.CHECKSUMS)
    try:
        with open(sums, encoding="utf-8") as f:
            expected = dict(reversed(line.split("  ", 1)) for line in f.read().splitlines())
    except (OSError, ValueError) as e:
        raise RunFilesError(
            f"{sums} cannot be read ({type(e).__name__}): the shipped model cannot be checked; "
            "reinstall catdog_tf"
        ) from e
    for name in COVERED:
        file = rundir.path(model_dir, name)
        if name not in expected:
            raise RunFilesError(f"{sums} has no sha256 of {name}; reinstall catdog_tf")
        if not os.path.exists(file) or sha256(file) != expected[name]:
            raise RunFilesError(
                f"{file} is not the file that shipped (missing, or its sha256 differs from "
                f"{sums}): the model is damaged or edited; reinstall catdog_tf"
            )
