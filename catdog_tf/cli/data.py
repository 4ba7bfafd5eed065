"""catdog-data: summarize a data folder (layout, class counts, unreadable files).

Example::

    catdog-data --data=dogs-vs-cats/train
"""

from absl import flags

from catdog_tf.cli import common

_DATA = flags.DEFINE_string("data", None, "Folder, tfds:cats_vs_dogs or synthetic.", required=True)
_SCAN = flags.DEFINE_bool("scan", True, "Decode every image to find bad files.")


def main(argv: list[str]) -> None:
    """Prints the per-split summary and, with --scan, the bad files."""
    from catdog_tf import data

    del argv
    loaded = data.load(_DATA.value)
    print(data.describe(loaded))
    if _SCAN.value:
        for split, examples in loaded.items():
            report = data.scan(examples)
            print(f"{split}: {report.summary()}")
            for path, reason in report.skipped:
                print(f"  {path}: {reason}")


def run() -> None:
    """Console-script entry point."""
    common.run(main)


if __name__ == "__main__":
    run()
