r"""Two catdog-train workers on this machine (127.0.0.1) against one process, same global batch.

On one machine the two workers share its cores: this measures that multi-worker training
runs and what its coordination costs, not a speed-up (README "Scaling out"). Each run is the
real command; the table gives the median epoch time, the images per second and the test
accuracy of each::

    python benchmarks/multi_worker.py --data=dogs-vs-cats/train \
        --workdir=runs/multi_worker
"""

from __future__ import annotations

# Before TensorFlow: oneDNN as the catdog-* commands decide it, and TensorFlow's start-up
# lines hidden unless asked for (catdog_tf.cli.script).
from catdog_tf.cli import script  # isort: skip

import os
import subprocess
import sys

from absl import flags

from catdog_tf import machine, rundir
from catdog_tf.train import distributed

_DATA = flags.DEFINE_string("data", "dogs-vs-cats/train", "Image folder.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/multi_worker", "Where the runs go.")
_MODEL = flags.DEFINE_string("model", "conv5_bn", "Model.")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Epochs.")
_SETS = flags.DEFINE_list(
    "set",
    ["train_size=4096", "val_size=1024", "test_size=1024", "precision=float32", "jit_compile=off"],
    "Config overrides of every run.",
)


def command(workdir: str, strategy: str) -> list[str]:
    return [
        "catdog-train",
        "--preset=full",
        f"--model={_MODEL.value}",
        f"--epochs={_EPOCHS.value}",
        f"--data={_DATA.value}",
        f"--workdir={workdir}",
        f"--set=strategy={strategy}",
        "--progress=none",
        *(f"--set={s}" for s in _SETS.value),
    ]


def main(argv: list[str]) -> None:
    del argv
    os.makedirs(_WORKDIR.value, exist_ok=True)
    single_dir = os.path.join(_WORKDIR.value, "one_process")
    subprocess.run(command(single_dir, "default"), check=True)
    workers_dir = os.path.join(_WORKDIR.value, "two_workers")
    processes = [
        subprocess.Popen(command(workers_dir, "multi_worker"), env={**os.environ, "TF_CONFIG": c})
        for c in distributed.local_cluster(2)
    ]
    if any(p.wait() != 0 for p in processes):
        sys.exit("a worker failed")
    print(f"CPU: {machine.probe().describe()}")
    print("| run | replicas | s/epoch (median) | img/s (median) | test acc@thr | command |")
    print("|---|---|---|---|---|---|")
    for name, folder, strategy in (
        ("one process", single_dir, "default"),
        ("two workers, 127.0.0.1", workers_dir, "multi_worker"),
    ):
        result = rundir.read_result(folder)
        print(
            f"| {name} | {result['replicas']} | {result['seconds_per_epoch']:.0f} | "
            f"{result['train_images_per_second']:.0f} | {result['test']['best_accuracy']:.4f} | "
            f"`{' '.join(command(folder, strategy))}` |"
        )


if __name__ == "__main__":
    script.run(main)
