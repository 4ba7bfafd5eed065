r"""Why an export's P(dog) differs from ``catdog-predict``'s: the pixels and the precision.

For each finished run, on its test images (the paths of its ``predictions-test.csv``, read
from the current folder, as the run was trained), three probabilities of each image:

- ``catdog-predict``'s (:func:`catdog_tf.evaluate.predict_files`): the pipeline's pixels
  (decoded with the run's ``dct_method``, resized, rounded to 8 bits), the model in its
  training precision;
- ``serving.keras`` on the same pixels: float32, as every export computes;
- ``serving.keras`` on the image as a deployment loads it (PIL, resized inside the model):
  what ONNX and LiteRT give to float rounding.

Their differences split the drift into the precision's part and the pixels' part. A fourth,
``catdog-predict --float32``'s, should equal the second to float rounding. Usage::

    python benchmarks/export_drift.py --workdir=runs/a,runs/b

Prints one Markdown table, each difference as largest / 99th percentile / mean, and the
accuracy of ``catdog-predict``, ``catdog-predict --float32`` and the deployed export at the
run's validation threshold.
"""

from __future__ import annotations

# Before TensorFlow: oneDNN as the catdog-* commands decide it, and TensorFlow's start-up
# lines hidden unless asked for (catdog_tf.cli.script).
from catdog_tf.cli import script  # isort: skip

import csv

import numpy as np
from absl import flags

from catdog_tf import data, machine, rundir
from catdog_tf.build import load_model_file
from catdog_tf.deploy import served_probabilities
from catdog_tf.evaluate import check_run, predict_files

_WORKDIRS = flags.DEFINE_list("workdir", None, "Finished runs, comma-separated.")
flags.mark_flag_as_required("workdir")


def spread(a: np.ndarray, b: np.ndarray) -> str:
    """``largest / 99th percentile / mean`` of ``|a - b|``."""
    d = np.abs(a - b)
    return f"{d.max():.3f} / {np.percentile(d, 99):.3f} / {d.mean():.4f}"


def drift_row(workdir: str) -> str:
    """One table row: the run's three probabilities of its test images, compared."""
    config, result = rundir.read_config(workdir)[0], rundir.read_result(workdir)
    with open(rundir.path(workdir, rundir.SPLIT_OUTPUTS[0].format(split="test"))) as f:
        rows = list(csv.DictReader(f))
    paths = [row["path"] for row in rows]
    labels = np.array([int(row["label"]) for row in rows])
    serving_file = rundir.path(workdir, rundir.SERVING)
    serving = load_model_file(serving_file, workdir)
    predicted = np.array([p for _, p in predict_files(workdir, paths)])
    in_float32 = np.array([p for _, p in predict_files(workdir, paths, float32=True)])
    examples = data.Examples(np.array(paths, dtype=object), labels, origin="test")
    decoded = data.decoded_dataset(
        examples, config.image_size, cache="", dct_method=config.dct_method
    )
    pixels = np.concatenate([images for images, _ in data.eval_batches(decoded, 100)])
    same_pixels = serving.predict(pixels.astype(np.float32), batch_size=100, verbose=0).reshape(-1)
    deployed = served_probabilities(serving_file, workdir, paths)
    threshold = result["validation"]["best_threshold"]
    accuracy = [np.mean((p >= threshold) == labels) for p in (predicted, in_float32, deployed)]
    return (
        f"| {workdir} | {config.dct_method} | {spread(predicted, same_pixels)} | "
        f"{np.abs(in_float32 - same_pixels).max():.1e} | {spread(same_pixels, deployed)} | "
        f"{spread(predicted, deployed)} | {' / '.join(f'{100 * a:.2f}' for a in accuracy)} |"
    )


def main(argv: list[str]) -> None:
    del argv
    for workdir in _WORKDIRS.value:  # Every run checked before the first is worked on.
        check_run(workdir)
    print(machine.probe().describe())
    print(
        "\n| run | dct_method | precision: predict vs serving, same pixels | largest: predict "
        "--float32 vs serving, same pixels | pixels: serving, pipeline vs PIL | total: predict "
        "vs serving on PIL | accuracy: predict / predict --float32 / serving on PIL |\n"
        "|---|---|---|---|---|---|---|"
    )
    for workdir in _WORKDIRS.value:
        print(drift_row(workdir), flush=True)


if __name__ == "__main__":
    script.run(main)
