"""Trained models that ship with the package, usable without training.

Each is a finished run directory reduced to what using it needs (:data:`catdog_tf.rundir.
SHIPPED_FILES`: the config with its plan, the result with the validation threshold, the
training and serving models) plus ``shipped.json``: the package version, the command and the CPU
that made it. They live in ``catdog_tf/weights/NAME/`` so that every install of the
package carries them; ``catdog-predict --weights=NAME`` and ``catdog-eval --weights=NAME``
find them by name (:func:`path`), and ``catdog_tf/weights/README.md`` tables what each reached.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from catdog_tf import __version__, rundir
from catdog_tf.errors import ConfigError
from catdog_tf.utils import atomic_write_json

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
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return target
