r"""catdog-train: train one model and evaluate it; the same command again resumes.

Example::

    catdog-train --preset=full --model=conv3 --data=dogs-vs-cats/train \
        --workdir=runs/conv3
"""

import json

from absl import flags

from catdog_tf.cli import common

common.define_config_flags()
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.", required=True)
_OVERWRITE = flags.DEFINE_bool(
    "overwrite",
    False,
    "Delete the run in --workdir (only the files a run writes) and train from the start; "
    "without it, a run of the same config resumes and one of another is refused.",
)


def main(argv: list[str]) -> None:
    """Parses flags into a config and calls train_and_evaluate."""
    from catdog_tf.train import train_and_evaluate

    if len(argv) > 1:
        raise common.ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    result = train_and_evaluate(
        common.config_from_flags(),
        _WORKDIR.value,
        overwrite=_OVERWRITE.value,
        **common.progress_args(),
    )
    print(json.dumps({"validation": result["validation"], "test": result["test"]}, indent=2))


def run() -> None:
    """Console-script entry point."""
    common.run(main)


if __name__ == "__main__":
    run()
