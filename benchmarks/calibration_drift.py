"""Per-step speed of a model's calibration probe, XLA off then on, twice: the machine's drift.

Each setting runs 30 train steps (float32, batch 32, random uint8 images at 94x125, the
article preset's optimizer), one setting after the other, in two rounds. Prints the images
per second of every step and the median of steps 10-30. On a shared VM the speed drifts by
tens of percent within seconds, which is why ``catdog_tf.calibration.time_interleaved`` times the
candidates taking turns. Usage::

    python benchmarks/calibration_drift.py [MODEL]      # default conv1
"""

# Before TensorFlow: oneDNN as the catdog-* commands decide it, and TensorFlow's start-up
# lines hidden unless asked for (catdog_tf.cli.script).
from catdog_tf.cli import script  # isort: skip

import dataclasses
import statistics
import time

import numpy as np
import tensorflow as tf

from catdog_tf import plan as plan_lib
from catdog_tf.config import article
from catdog_tf.train.steps import Steps


def main(argv: list[str]) -> None:
    print(script.ONEDNN_DECISION)
    config = article(argv[1] if len(argv) > 1 else "conv1")
    base = plan_lib.resolve(config.replace(precision="float32", jit_compile="off"), 4096)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (32, *config.image_size, 3), dtype=np.uint8))
    labels = tf.constant(rng.integers(0, 2, (32,), dtype=np.int32))
    for round_ in range(2):
        for jit in (False, True):
            steps = Steps(config, dataclasses.replace(base, jit_compile=jit))
            times = []
            for _ in range(30):
                start = time.perf_counter()
                float(steps.train_step(images, labels)[0])  # float() waits for the step.
                times.append(time.perf_counter() - start)
            speeds = " ".join(f"{32 / t:.0f}" for t in times)
            median = 32 / statistics.median(times[10:])
            print(f"round {round_} xla {jit}: {speeds} | median of 10-30: {median:.0f} img/s")


if __name__ == "__main__":
    script.run(main)
