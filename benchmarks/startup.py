r"""Start-up time of every command, beside the time of importing TensorFlow on this machine.

Each cell is the median wall time of ``--repeats`` whole-process runs, the cells taking
turns so that a machine's drift falls on all of them alike: ``python -c "import tensorflow"``,
then per command ``--help`` and ``--version``, and ``catdog-predict --weights=NAME IMAGE``
for one image. A ratio column divides by the TensorFlow import.

Usage::

    python benchmarks/startup.py --image=dogs-vs-cats/train/cat.1.jpg \
        [--weights=conv5_bn-fast] [--repeats=5] [--json=startup.json]
"""

from __future__ import annotations

# Before TensorFlow: oneDNN as the catdog-* commands decide it, and TensorFlow's start-up
# lines hidden unless asked for (catdog_tf.cli.script).
from catdog_tf.cli import script  # isort: skip

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

from absl import flags

from catdog_tf import machine

COMMANDS = ("train", "eval", "predict", "compare", "data", "inspect", "machine")

_IMAGE = flags.DEFINE_string("image", "dogs-vs-cats/train/cat.1.jpg", "Image to predict.")
_WEIGHTS = flags.DEFINE_string("weights", "conv5_bn-fast", "Shipped model that predicts.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Runs per cell.", lower_bound=1)
_JSON = flags.DEFINE_string("json", None, "Also write the medians here.")


def command(name: str) -> str:
    """The installed console script ``catdog-NAME`` beside this Python."""
    path = os.path.join(os.path.dirname(sys.executable), f"catdog-{name}")
    return path if os.path.exists(path) else shutil.which(f"catdog-{name}") or path


def cells() -> dict[str, list[str]]:
    """Cell name -> the command line it times."""
    table = {"import tensorflow": [sys.executable, "-c", "import tensorflow"]}
    for name in COMMANDS:
        table[f"catdog-{name} --help"] = [command(name), "--help"]
        table[f"catdog-{name} --version"] = [command(name), "--version"]
    table["catdog-predict, one image"] = [
        command("predict"),
        f"--weights={_WEIGHTS.value}",
        _IMAGE.value,
    ]
    return table


def time_once(argv: list[str]) -> float:
    """Wall seconds of one run; a run that fails stops the benchmark with its stderr."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    # absl exits 1 after --help (its documented behaviour); any other failure is a bug.
    if done.returncode not in (0, 1) or (done.returncode == 1 and "--help" not in argv):
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-500:]}")
    return elapsed


def main(argv: list[str]) -> None:
    del argv
    if not os.path.exists(_IMAGE.value):
        raise SystemExit(f"--image: no such file: {_IMAGE.value}")
    table = cells()
    times: dict[str, list[float]] = {name: [] for name in table}
    time_once(table["import tensorflow"])  # Warms the file cache; not counted.
    for _ in range(_REPEATS.value):
        for name, line in table.items():
            times[name].append(time_once(line))
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["import tensorflow"]
    print(f"CPU: {machine.read_cpu().describe()}; Python {platform.python_version()}")
    print(f"medians of {_REPEATS.value} runs each, taking turns\n")
    print("| what | median s | x import tensorflow |\n|---|---|---|")
    for name, seconds in medians.items():
        print(f"| `{name}` | {seconds:.2f} | {seconds / base:.2f} |")
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump({"medians_s": medians, "runs_s": times}, f, indent=2)


if __name__ == "__main__":
    script.run(main)
