"""catdog-compare: train models x losses under a preset and write the comparison table.

Examples::

    catdog-compare --preset=article --data=dogs-vs-cats/train --workdir=runs/article
    catdog-compare --preset=full --data=dogs-vs-cats/train --workdir=runs/full
    catdog-compare --preset=smoke --workdir=/tmp/smoke
    catdog-compare --preset=article --seeds=0,1,2 --data=dogs-vs-cats/train \
        --workdir=runs/article-3seeds
"""

from absl import flags

from catdog_tf.cli import common

DEFAULT_MODELS = {
    "article": ["mlp", "conv1", "conv2", "conv2_wide", "conv3"],
    "full": ["conv3", "conv5_bn", "conv4_bn", "sepnet"],
    "fast": ["conv3", "conv5_bn"],
    "smoke": ["mlp", "conv1", "conv2", "conv2_wide", "conv3"],
}
DEFAULT_LOSSES = {
    "article": ["mse"],
    "full": ["cross_entropy"],
    "fast": ["cross_entropy"],
    "smoke": ["mse"],
}

common.define_config_flags(default_preset="article")
_WORKDIR = flags.DEFINE_string("workdir", None, "Comparison directory.", required=True)
_MODELS = flags.DEFINE_list("models", None, "Models (default: the preset's set).")
_LOSSES = flags.DEFINE_list("losses", None, "Losses, e.g. mse,cross_entropy.")
_RERUN = flags.DEFINE_bool("rerun", False, "Retrain runs that already finished.")
_SEEDS = flags.DEFINE_list(
    "seeds",
    None,
    "Seeds to run each model with, e.g. 0,1,2 (each changes the split, shuffles, augmentation "
    "and init); the table gives means, 95% intervals and paired tests. Default: one run.",
)


def main(argv: list[str]) -> None:
    """Builds one config per (model, loss) from the flags and runs the comparison."""
    del argv
    preset = common.FLAGS.preset
    models = _MODELS.value or DEFAULT_MODELS[preset]
    losses = _LOSSES.value or DEFAULT_LOSSES[preset]

    def make_config(model: str, loss: str):
        return common.config_from_flags(model=model).replace(loss=loss)

    try:
        seeds = [int(s) for s in _SEEDS.value] if _SEEDS.value else None
    except ValueError as e:
        raise common.ConfigError(f"--seeds takes integers: {_SEEDS.value}") from e
    if seeds and (
        common.FLAGS.seed is not None or any(s.startswith("seed=") for s in common.FLAGS.set)
    ):
        raise common.ConfigError("--seeds runs each row with every seed it lists: drop --seed")
    from catdog_tf import rundir
    from catdog_tf.compare import compare

    compare(
        make_config,
        models,
        losses,
        _WORKDIR.value,
        seeds=seeds,
        rerun=_RERUN.value,
        **common.progress_args(),
    )
    with open(rundir.path(_WORKDIR.value, rundir.TABLE_MD)) as f:
        print(f.read())


def run() -> None:
    """Console-script entry point."""
    common.run(main)


if __name__ == "__main__":
    run()
